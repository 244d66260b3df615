"""`lightning-gans summary model=NAME [overrides]`: build the networks, count their parameters.

Prints a table, the compute precision of networks that have one (StyleGAN2: the float16
resolutions of G and D and conv_clamp) and, as its last line, a JSON object of both.
"""

from __future__ import annotations

import argparse
import json

from hydra import compose, initialize_config_dir
from hydra.errors import HydraException
from hydra.utils import instantiate
from omegaconf.errors import OmegaConfBaseException

from .config import config_dir, register_resolvers
from .errors import ConfigError, one_line
from .nn.layers import count_params


def count_networks(module) -> dict[str, int]:
    """Parameter counts of a GAN module's trained networks and their main parts (no EMA copies)."""
    counts: dict[str, int] = {}
    for name, net in module.networks().items():
        counts[name] = count_params(net)
        for part in ("mapping", "synthesis"):
            if hasattr(net, part):
                counts[f"{name}.{part}"] = count_params(getattr(net, part))
    counts["total"] = sum(count_params(n) for n in module.networks().values())
    return counts


def precision_info(module) -> dict:
    """num_fp16_res, conv_clamp and the float16 block resolutions of each network that has them
    (StyleGAN2's mixed precision; see nn/precision.py); {} for networks without."""
    per_net: dict[str, list[int]] = {}
    for name, net in module.networks().items():
        holder = getattr(net, "synthesis", net)
        if hasattr(holder, "fp16_resolutions"):
            per_net[name] = list(holder.fp16_resolutions)
    if not per_net:
        return {}
    hp = getattr(module, "hparams", {})
    return {"num_fp16_res": hp.get("num_fp16_res", 0), "conv_clamp": hp.get("conv_clamp"),
            "fp16_on_cpu": bool(hp.get("fp16_on_cpu", False)), "fp16_resolutions": per_net}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="lightning-gans summary", description=__doc__)
    parser.add_argument("overrides", nargs="*", help="Hydra overrides, e.g. model=stylegan2 model.resolution=256")
    args = parser.parse_args(argv)
    register_resolvers()
    try:
        with initialize_config_dir(version_base="1.3", config_dir=str(config_dir()), job_name="summary"):
            cfg = compose(config_name="train", overrides=args.overrides)
        module = instantiate(cfg.model, _convert_="all")
    except (HydraException, OmegaConfBaseException) as e:
        raise ConfigError(one_line(e)) from None
    counts = count_networks(module)
    precision = precision_info(module)
    print(f"model: {cfg.model.get('name', cfg.model._target_)} at {cfg.model.resolution} px")
    for name, n in counts.items():
        print(f"  {name:16s} {n:>14,d}")
    if precision:
        where = ", ".join(f"{k} {v or 'none'}" for k, v in precision["fp16_resolutions"].items())
        cpu = "float16 there too (fp16_on_cpu)" if precision["fp16_on_cpu"] else "float32 there"
        print(f"precision: num_fp16_res={precision['num_fp16_res']} (float16 blocks: {where}), "
              f"conv_clamp={precision['conv_clamp']}; on the CPU {cpu}")
    print(json.dumps({"model": cfg.model.get("name"), "resolution": cfg.model.resolution, **counts,
                      **precision}))
    return 0
