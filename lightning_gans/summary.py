"""`lightning-gans summary model=NAME [overrides]`: build the networks, count their parameters.

Prints a table and, as its last line, a JSON object of the counts.
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
    print(f"model: {cfg.model.get('name', cfg.model._target_)} at {cfg.model.resolution} px")
    for name, n in counts.items():
        print(f"  {name:16s} {n:>14,d}")
    print(json.dumps({"model": cfg.model.get("name"), "resolution": cfg.model.resolution, **counts}))
    return 0
