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


def make_stargan_checkpoint(path: Path, resolution: int = 32, w_hpf: float = 0, **kwargs) -> Path:
    """A tiny StarGAN v2 checkpoint (2 domains) as `lightning-gans train` writes it. The EMA nets
    get the trained nets' weights: fresh EMA copies start at default init, and outputs should
    depend on the style."""
    from lightning_gans.modules.stargan_v2 import StarGANv2Module

    torch.manual_seed(0)
    hp = dict(resolution=resolution, base_dim=16, max_conv_dim=32, num_domains=2, w_hpf=w_hpf,
              latent_dim=16, style_dim=16) | kwargs
    m = StarGANv2Module(**hp)
    for ema, net in ((m.G_ema, m.G), (m.F_ema, m.F), (m.E_ema, m.E)):
        ema.load_state_dict(net.state_dict())
    return atomic_save({"state_dict": m.state_dict(), "hyper_parameters": dict(m.hparams),
                        "model_config": m.model_config()}, path)
