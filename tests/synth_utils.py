"""A tiny StyleGAN2 checkpoint for the synthesis tests (built, not trained: seconds, not minutes)."""

from pathlib import Path

import torch

from lightning_gans.checkpoint import atomic_save
from lightning_gans.modules.stylegan2 import StyleGAN2Module

TINY = dict(resolution=32, z_dim=128, w_dim=128, mapping_layers=2, channel_base=1024, channel_max=32, name="tiny")


def make_checkpoint(path: Path, kind: str = "stylegan2", noise_strength: float = 0.2) -> Path:
    """A checkpoint with the keys `lightning-gans train` writes. G_ema gets a non-zero w_avg and
    noise strengths (a fresh module has zeros), so truncation and noise modes change images."""
    torch.manual_seed(1)
    m = StyleGAN2Module(**TINY)
    with torch.no_grad():
        m.G_ema.mapping.w_avg.copy_(m.G_ema.mapping(torch.randn(256, 128), None, update_w_avg=False)[:, 0].mean(0))
        for name, p in m.G_ema.named_parameters():
            if name.endswith("noise_strength"):
                p.fill_(noise_strength)
    config = m.model_config()
    config["kind"] = kind
    return atomic_save({"state_dict": m.state_dict(), "hyper_parameters": dict(m.hparams),
                        "model_config": config, "global_step": 0}, path)
