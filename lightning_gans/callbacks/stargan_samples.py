"""StarGAN v2 (Choi et al., CVPR 2020) sample grids from the EMA nets: latent- and reference-guided.

Latent-guided, one grid per psi: the first row holds the sources, then one row per (target
domain, latent); styles are lerp(mean style of the domain, F_ema(z, domain), psi) as in the
official `translate_using_latent`. Reference-guided: a sources x references table; the first
row the sources, then per reference the reference itself followed by the sources in its style.
Sources and references are the first images of the first training batch, kept for the run.
With high-pass skips (w_hpf > 0) the sources' face masks come from the module's FAN.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pytorch_lightning as pl
import torch

from ..models.latents import seeds_to_z
from ..synthesis.images import make_grid, provenance, save_png
from .samples import GridSchedule, log_grid


def _masks(pl_module, x: torch.Tensor):
    """The generator's FAN masks of x (w_hpf > 0), else None."""
    fan_masks = getattr(pl_module, "fan_masks", None)
    return fan_masks(x) if fan_masks is not None else None


class StarGANSampleGrid(GridSchedule, pl.Callback):
    """Every `every_n_steps` iterations (and at the end): latent grids at each psi and one
    reference grid, as PNG under <run dir>/<dirname> and W&B images. Rank 0 only."""

    def __init__(
        self,
        every_n_steps: int = 500,
        num_sources: int = 4,
        num_references: int = 4,
        num_latents: int = 2,              # latents per target domain (seeds first_seed...)
        psis: Sequence[float] = (0.5, 0.7, 1.0),
        num_mean_samples: int = 10000,     # z per domain for the mean style (official: 10000)
        first_seed: int = 0,
        dirname: str = "samples",
    ) -> None:
        self.every_n_steps = every_n_steps
        self.num_sources, self.num_references, self.num_latents = num_sources, num_references, num_latents
        self.psis = [float(p) for p in psis]
        self.num_mean_samples = num_mean_samples
        self.seeds = list(range(first_seed, first_seed + num_latents))
        self.dirname = dirname
        self.fixed: dict[str, torch.Tensor] | None = None
        self.last_path: Path | None = None

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self.log_reals_once(trainer, batch["x_src"], self.num_sources)
        if self.fixed is None:
            self.fixed = {
                "x_src": batch["x_src"][: self.num_sources].detach().cpu(),
                "x_ref": batch["x_ref"][: self.num_references].detach().cpu(),
                "y_ref": batch["y_ref"][: self.num_references].detach().cpu(),
            }

    @torch.no_grad()
    def latent_grid(self, pl_module, x_src: torch.Tensor, psi: float,
                    mean_styles: torch.Tensor) -> torch.Tensor:
        """[(1 + D*L) * S, 3, R, R]: sources, then each domain's latents (rows of S images)."""
        G, F = pl_module.G_ema, pl_module.F_ema
        dev = mean_styles.device
        x_src = x_src.to(dev)
        s = x_src.shape[0]
        masks = _masks(pl_module, x_src)
        z = seeds_to_z(self.seeds, pl_module.hparams.latent_dim).to(dev)
        rows = [x_src]
        for d in range(pl_module.hparams.num_domains):
            y = torch.full((len(self.seeds),), d, dtype=torch.int64, device=dev)
            styles = torch.lerp(mean_styles[d].expand(len(self.seeds), -1), F(z, y), psi)
            for style in styles:
                rows.append(G(x_src, style.expand(s, -1), masks=masks))
        return torch.cat(rows).cpu()

    @torch.no_grad()
    def reference_grid(self, pl_module, x_src: torch.Tensor, x_ref: torch.Tensor,
                       y_ref: torch.Tensor) -> torch.Tensor:
        """[(1 + K) * (1 + S), 3, R, R]: a blank corner and the sources, then per reference
        the reference and the sources translated to its style and domain."""
        G, E = pl_module.G_ema, pl_module.E_ema
        dev = pl_module.device
        x_src, x_ref, y_ref = x_src.to(dev), x_ref.to(dev), y_ref.to(dev)
        s = x_src.shape[0]
        masks = _masks(pl_module, x_src)
        styles = E(x_ref, y_ref)
        rows = [torch.cat([torch.ones_like(x_src[:1]), x_src])]
        for k in range(x_ref.shape[0]):
            rows.append(torch.cat([x_ref[k : k + 1], G(x_src, styles[k].expand(s, -1), masks=masks)]))
        return torch.cat(rows).cpu()

    def _emit(self, trainer: pl.Trainer, pl_module) -> None:
        if not trainer.is_global_zero or self.fixed is None:
            return
        step = trainer.global_step
        root = Path(trainer.default_root_dir) / self.dirname
        mean_styles = pl_module.mean_styles(self.num_mean_samples)
        x_src = self.fixed["x_src"]
        grids: dict[str, tuple] = {}
        for psi in self.psis:
            imgs = self.latent_grid(pl_module, x_src, psi, mean_styles)
            grids[f"latent_psi{psi:g}"] = (make_grid(imgs, cols=x_src.shape[0]), psi)
        imgs = self.reference_grid(pl_module, x_src, self.fixed["x_ref"], self.fixed["y_ref"])
        grids["reference"] = (make_grid(imgs, cols=x_src.shape[0] + 1), None)
        for key, (grid, psi) in grids.items():
            meta = provenance(model=pl_module.kind, step=step, grid=key, truncation=psi,
                              seeds=f"{self.seeds[0]}-{self.seeds[-1]}" if psi is not None else None)
            self.last_path = save_png(grid, root / f"{key}-step{step:07d}.png", meta)
            log_grid(trainer, f"samples/{key}", grid, step)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if self.every_n_steps > 0 and trainer.global_step % self.every_n_steps == 0 and self.should_emit(trainer):
            self._emit(trainer, pl_module)

    def on_train_end(self, trainer, pl_module) -> None:
        if self.should_emit(trainer):
            self._emit(trainer, pl_module)
