"""`lightning-gans summary [overrides]`: build a training config's networks, count their parameters.

Takes the same key=value overrides as `train` (model=..., model.resolution=...). Prints a table,
the compute precision of networks that have one (StyleGAN2: the float16 resolutions of G and D
and conv_clamp) and, as its last line, a JSON object of both.
"""

from __future__ import annotations

import json

from ..errors import ConfigError, one_line
from ..summary import count_networks, precision_info
from . import _hydra

EXAMPLE = "lightning-gans summary model=stylegan2 model.resolution=256"


def main(argv: list[str] | None = None) -> int:
    argv = list(argv or [])
    if _hydra.wants_help(argv):
        print(f"{__doc__.strip()}\n\nmodel configs: conf/model/*.yaml (see `lightning-gans train --help`)\n\n"
              f"example:\n  {EXAMPLE}")
        return 0
    cfg = _hydra.compose("train", argv, "summary")
    from hydra.errors import HydraException
    from hydra.utils import instantiate
    from omegaconf.errors import OmegaConfBaseException

    try:
        module = instantiate(cfg.model, _convert_="all")
    except (HydraException, OmegaConfBaseException) as e:
        raise ConfigError(one_line(e)) from None
    counts, precision = count_networks(module), precision_info(module)
    print(f"model: {cfg.model.get('name', cfg.model._target_)} at {cfg.model.resolution} px")
    for name, n in counts.items():
        print(f"  {name:16s} {n:>14,d}")
    if precision:
        where = ", ".join(f"{k} {v or 'none'}" for k, v in precision["fp16_resolutions"].items())
        cpu = "float16 there too (fp16_on_cpu)" if precision["fp16_on_cpu"] else "float32 there"
        print(f"precision: num_fp16_res={precision['num_fp16_res']} (float16 blocks: {where}), "
              f"conv_clamp={precision['conv_clamp']}; on the CPU {cpu}")
    print(json.dumps({"model": cfg.model.get("name"), "resolution": cfg.model.resolution, **counts, **precision}))
    return 0
