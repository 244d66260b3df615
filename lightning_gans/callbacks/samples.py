"""Fixed-seed sample grids from G_ema: PNG files in the run dir and images in W&B."""

from __future__ import annotations

from pathlib import Path

import pytorch_lightning as pl
import torch
from PIL import Image

from ..models.latents import seeds_to_z
from ..synthesis.images import make_grid, provenance, save_png


def log_grid(trainer: pl.Trainer, key: str, grid, step: int) -> None:
    """One image to every logger that takes images (W&B)."""
    for logger in trainer.loggers:
        if hasattr(logger, "log_image"):
            logger.log_image(key=key, images=[Image.fromarray(grid)], step=step)


class GridSchedule:
    """What both sample callbacks share: the training images as one grid, once, at the first
    batch (from that batch: drawing one of our own would advance the data's random streams and
    change what a resumed run sees), and each sample grid once (on_train_end at a step that
    just had its grid emits nothing)."""

    reals_logged = False
    emitted_step: int | None = None

    def log_reals_once(self, trainer: pl.Trainer, imgs: torch.Tensor, num: int) -> None:
        if self.reals_logged or not trainer.is_global_zero:
            return
        self.reals_logged = True
        log_grid(trainer, "samples/reals", make_grid(imgs[:num].detach().float().cpu()), trainer.global_step)

    def should_emit(self, trainer: pl.Trainer) -> bool:
        if self.emitted_step == trainer.global_step:
            return False
        self.emitted_step = trainer.global_step
        return True


class SampleGrid(GridSchedule, pl.Callback):
    """Every `every_n_steps` iterations (and at the end), render the same seeds with G_ema.

    The same seeds, const noise and truncation at every step make grids comparable over time.
    Rank 0 only.
    """

    def __init__(
        self,
        every_n_steps: int = 500,
        num_images: int = 16,
        first_seed: int = 0,
        truncation_psi: float = 1.0,
        noise_mode: str = "const",
        batch_size: int = 16,
        dirname: str = "samples",
    ):
        self.every_n_steps = every_n_steps
        self.seeds = list(range(first_seed, first_seed + num_images))
        self.truncation_psi = truncation_psi
        self.noise_mode = noise_mode
        self.batch_size = batch_size
        self.dirname = dirname
        self.last_path: Path | None = None

    @torch.no_grad()
    def render(self, pl_module: pl.LightningModule) -> torch.Tensor:
        G = pl_module.G_ema
        # progressive models render at their current resolution and fade-in alpha
        extra = pl_module.synthesis_kwargs() if hasattr(pl_module, "synthesis_kwargs") else {}
        z_all = seeds_to_z(self.seeds, G.z_dim).to(pl_module.device)
        imgs = []
        for i in range(0, len(self.seeds), self.batch_size):
            z = z_all[i : i + self.batch_size]
            c = None
            if G.c_dim > 0:  # cycle through the classes so every class shows up
                idx = torch.arange(i, i + z.shape[0], device=z.device) % G.c_dim
                c = torch.nn.functional.one_hot(idx, G.c_dim).float()
            imgs.append(G(z, c, truncation_psi=self.truncation_psi, noise_mode=self.noise_mode, **extra).cpu())
        return torch.cat(imgs)

    def _emit(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not trainer.is_global_zero:
            return
        step = trainer.global_step
        grid = make_grid(self.render(pl_module))
        out = Path(trainer.default_root_dir) / self.dirname / f"fakes-step{step:07d}.png"
        meta = provenance(
            model=getattr(pl_module, "kind", type(pl_module).__name__), step=step,
            kimg=f"{float(getattr(pl_module, 'nimg', 0)) / 1000:.3f}",
            seeds=f"{self.seeds[0]}-{self.seeds[-1]}", truncation=self.truncation_psi,
            noise_mode=self.noise_mode,
        )
        self.last_path = save_png(grid, out, meta)
        log_grid(trainer, "samples/fakes", grid, step)

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if isinstance(batch, dict) and "img" in batch:
            self.log_reals_once(trainer, batch["img"], len(self.seeds))

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if self.every_n_steps > 0 and trainer.global_step % self.every_n_steps == 0 and self.should_emit(trainer):
            self._emit(trainer, pl_module)

    def on_train_end(self, trainer, pl_module) -> None:
        if self.should_emit(trainer):
            self._emit(trainer, pl_module)
