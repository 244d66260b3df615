"""Where the Hydra configs live, and the resolvers they use (auto hyperparameters, demo data)."""

from __future__ import annotations

import os
from pathlib import Path

from omegaconf import OmegaConf

from .errors import ConfigError


def config_dir() -> Path:
    """conf/ of the source tree (editable install), or $LG_CONFIG_DIR."""
    env = os.environ.get("LG_CONFIG_DIR")
    candidates = [Path(env)] if env else []
    candidates.append(Path(__file__).resolve().parent.parent / "conf")
    for path in candidates:
        if (path / "train.yaml").is_file():
            return path
    raise ConfigError(
        f"no Hydra configs found (looked in {', '.join(map(str, candidates))}); install the "
        "project with `pip install -e .` from its source tree or set LG_CONFIG_DIR to its conf/"
    )


def _world(devices, num_nodes) -> int:
    try:
        d = int(devices)
    except (TypeError, ValueError):
        d = 1  # "auto" and device lists: count one process per node for the recipe
    return max(d, 1) * max(int(num_nodes), 1)


def auto_hparams(resolution: int, gpus: int) -> dict:
    """StyleGAN2-ADA's "auto" config: settings that scale with resolution and GPU count."""
    res = int(resolution)
    mb = max(min(gpus * min(4096 // res, 32), 64), gpus)
    return {
        "batch_size": mb,
        "mbstd_group_size": min(mb // gpus, 4),
        "channel_base": int((1 if res >= 512 else 0.5) * 32768),
        "lr": 0.002 if res >= 1024 else 0.0025,
        "r1_gamma": 0.0002 * res**2 / mb,
        "ema_kimg": mb * 10 / 32,
    }


def _lg_auto(key: str, resolution, devices, num_nodes):
    values = auto_hparams(int(resolution), _world(devices, num_nodes))
    if key not in values:
        raise ConfigError(f"lg_auto: unknown key {key!r}; known: {sorted(values)}")
    return values[key]


def _lg_demo_data(resolution, count) -> str:
    from .data.demo import ensure_demo_data

    return str(ensure_demo_data(resolution=int(resolution), count=int(count)))


def register_resolvers() -> None:
    """Idempotent: Hydra apps and tests may call it more than once."""
    for name, fn in {"lg_auto": _lg_auto, "lg_demo_data": _lg_demo_data}.items():
        if not OmegaConf.has_resolver(name):
            OmegaConf.register_new_resolver(name, fn)
