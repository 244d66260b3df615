"""StyleGAN (v1) training with progressive growing (Karras, Laine, Aila, CVPR 2019) as a
LightningModule, after the official training_loop.py and loss.py (G_logistic_nonsaturating,
D_logistic_simplegp) at its FFHQ settings.

One iteration: read the schedule at the images seen so far (resolution R, fade-in alpha, global
batch, lr); reset both Adam states when the phase changed (official reset_opt_for_new_lod);
D step (logistic loss + R1 on the reals as D sees them, every step); G step (non-saturating,
style mixing with crossover in [1, num_ws_at(R))); G_ema update. The progress lives in buffers
(nimg, phase, resolution, alpha), so a checkpoint resumes at the same point of a fade-in.

Batches: the loader serves the largest per-process batch of the whole schedule at the shard
resolution (this module sets the datamodule's batch_size to it in `setup`); each step takes
the first B(R) images and 2x2-average-pools them down to R (the official TFRecords hold each
lod made the same way). One loader batch per step keeps the stream's resume exact.
"""

from __future__ import annotations

import copy
import logging
import math
from collections.abc import Mapping, Sequence
from typing import Literal

import torch

from ..errors import ConfigError
from ..losses.stylegan2 import d_logistic, g_nonsaturating, r1_penalty
from ..models.stylegan import Discriminator, Generator, fade_in_reals, mix_styles, num_ws_at
from ..nn.adain import downscale2d
from .base import GANModule
from .common import adam, ema_beta, ema_update, set_requires_grad
from .progressive import FFHQ_LR, FFHQ_MINIBATCH, Progress, ProgressiveSchedule
from .strategy import average_tensor_

log = logging.getLogger(__name__)


class StyleGANModule(GANModule):
    """Owns G, D, G_ema, their Adam optimizers and the progressive schedule."""

    kind = "stylegan"
    ema_attributes = ("G_ema",)

    def __init__(
        self,
        resolution: int = 1024,  # final resolution (the shards' resolution)
        z_dim: int = 512,
        w_dim: int = 512,
        img_channels: int = 3,
        mapping_layers: int = 8,
        mapping_lr_multiplier: float = 0.01,
        w_avg_beta: float = 0.995,
        fmap_base: int = 8192,  # maps at 2^r = min(fmap_base / 2^((r-1) fmap_decay), fmap_max)
        fmap_decay: float = 1.0,
        fmap_max: int = 512,
        fused_scale: bool | Literal["auto"] = "auto",
        use_noise: bool = True,
        mbstd_group_size: int = 4,
        mbstd_num_channels: int = 1,
        start_resolution: int = 8,  # official FFHQ lod_initial_resolution
        stable_kimg: float = 600.0,  # per resolution, then the next one fades in over fade_kimg
        fade_kimg: float = 600.0,
        minibatch_dict: Mapping[int, int] | None = None,  # global batch per resolution (None: FFHQ)
        minibatch_base: int = 32,
        minibatch_gpus: int = 8,  # processes minibatch_dict is written for; scaled to the world
        lr_dict: Mapping[int, float] | None = None,  # Adam lr per resolution (None: FFHQ)
        lr_base: float = 0.001,
        betas: Sequence[float] = (0.0, 0.99),
        eps: float = 1e-8,
        r1_gamma: float = 10.0,  # every step, on the faded reals
        style_mixing_prob: float = 0.9,
        ema_kimg: float = 10.0,  # G_ema half-life in thousands of images
        batch_size: int | None = None,  # unused by the module: the data config reads it
        name: str = "stylegan",  # the config this came from (logged, stored in checkpoints)
    ):
        super().__init__()
        self.save_hyperparameters()
        self.schedule = ProgressiveSchedule(
            max_resolution=resolution, start_resolution=start_resolution,
            stable_kimg=stable_kimg, fade_kimg=fade_kimg,
            minibatch_dict={int(k): int(v) for k, v in (minibatch_dict or FFHQ_MINIBATCH).items()},
            minibatch_base=minibatch_base, minibatch_gpus=minibatch_gpus,
            lr_dict={int(k): float(v) for k, v in (lr_dict or FFHQ_LR).items()}, lr_base=lr_base,
        )
        synthesis = dict(fmap_base=fmap_base, fmap_decay=fmap_decay, fmap_max=fmap_max)
        self.G_kwargs = dict(
            z_dim=z_dim, w_dim=w_dim, img_resolution=resolution, img_channels=img_channels,
            mapping_layers=mapping_layers, mapping_lr_multiplier=mapping_lr_multiplier,
            w_avg_beta=w_avg_beta, fused_scale=fused_scale, use_noise=use_noise, **synthesis,
        )
        self.D_kwargs = dict(
            img_resolution=resolution, img_channels=img_channels, mbstd_group_size=mbstd_group_size,
            mbstd_num_channels=mbstd_num_channels, **synthesis,
        )
        self.G = Generator(**self.G_kwargs)
        self.D = Discriminator(**self.D_kwargs)
        self.G_ema = copy.deepcopy(self.G).eval()
        set_requires_grad(self.G_ema, False)
        # Progress: nimg drives the schedule; the rest record what the last step trained
        # (phase detects Adam resets across a resume; resolution/alpha for samples and readers).
        self.register_buffer("nimg", torch.zeros([], dtype=torch.int64))
        self.register_buffer("phase", torch.zeros([], dtype=torch.int64))
        self.register_buffer("resolution", torch.tensor(start_resolution, dtype=torch.int64))
        self.register_buffer("alpha", torch.ones([], dtype=torch.float64))

    # ---- configuration -------------------------------------------------------------------
    def configure_optimizers(self):
        h = self.hparams
        lr = self.schedule.lr(self.schedule.at(0).resolution)  # set again every step
        opt_g = adam(self.G.parameters(), lr=lr, betas=tuple(h.betas), eps=h.eps)
        opt_d = adam(self.D.parameters(), lr=lr, betas=tuple(h.betas), eps=h.eps)
        return [opt_g, opt_d]

    def synthesis_kwargs(self) -> dict:
        """G keyword arguments that render at the current progress (for sample grids)."""
        return {"resolution": int(self.resolution), "alpha": float(self.alpha)}

    def setup(self, stage: str) -> None:
        """Let the loader serve the largest per-process batch the schedule will ask for."""
        trainer = self._trainer
        dm = getattr(trainer, "datamodule", None) if trainer is not None else None
        if dm is None or not hasattr(dm, "batch_size"):
            return
        need = self.schedule.max_batch(trainer.world_size)
        if dm.batch_size != need:
            log.info("data.batch_size %s -> %d: the largest global batch of the progressive "
                     "schedule at %d processes", dm.batch_size, need, trainer.world_size)
            dm.batch_size = need
        res = getattr(dm, "resolution", self.hparams.resolution)
        if res != self.hparams.resolution:
            raise ConfigError(f"data.resolution={res} but model.resolution={self.hparams.resolution}: "
                              "the shards must be at the final resolution")

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        super().on_save_checkpoint(checkpoint)
        p = self.schedule.at(int(self.nimg))  # where the next step continues
        checkpoint["progress"] = {"kimg": p.kimg, "lod": p.lod, "resolution": p.resolution,
                                  "alpha": p.alpha, "phase": p.phase}

    # ---- training --------------------------------------------------------------------------
    def reals_at(self, img: torch.Tensor, p: Progress) -> torch.Tensor:
        """Shard-resolution reals [N, C, R_final, R_final] -> as D sees them at progress p."""
        if img.shape[2] != self.hparams.resolution:
            raise ValueError(f"batch images are {img.shape[2]} px, the shards must be at the "
                             f"final resolution {self.hparams.resolution}")
        for _ in range(int(math.log2(img.shape[2] // p.resolution))):
            img = downscale2d(img)
        return fade_in_reals(img, p.alpha)

    def run_G(self, z: torch.Tensor, p: Progress, update_w_avg: bool = True) -> torch.Tensor:
        ws = self.G.mapping(z, None, update_w_avg=update_w_avg)
        # Official: crossover from [1, ws in use at R) with probability style_mixing_prob.
        if self.hparams.style_mixing_prob > 0 and torch.rand([]).item() < self.hparams.style_mixing_prob:
            crossover = int(torch.randint(1, num_ws_at(p.resolution), []).item())
            ws2 = self.G.mapping(torch.randn_like(z), None, update_w_avg=False)
            ws = mix_styles(ws, ws2, crossover)
        return self.G.synthesis(ws, resolution=p.resolution, alpha=p.alpha)

    def training_step(self, batch: dict, batch_idx: int) -> None:
        self.restore_rng_if_resumed()
        h = self.hparams
        world = self.trainer.world_size
        p = self.schedule.at(int(self.nimg))
        n = self.schedule.per_process_batch(p.resolution)
        if batch["img"].shape[0] < n:
            raise ConfigError(f"the loader serves {batch['img'].shape[0]} images per process, the "
                              f"schedule needs {n} at {p.resolution} px: set data.batch_size to "
                              f"{self.schedule.max_batch(world)}")
        real = self.reals_at(batch["img"][:n], p)
        global_batch = n * world
        opt_g, opt_d = self.optimizers()
        lr = self.schedule.lr(p.resolution)
        for opt in (opt_g, opt_d):
            if p.phase != int(self.phase):  # a new resolution fades in, or its fade-in ended
                opt.optimizer.state.clear()
            for group in opt.optimizer.param_groups:
                group["lr"] = lr
        self.phase.fill_(p.phase)
        self.resolution.fill_(p.resolution)
        self.alpha.fill_(p.alpha)
        stats: dict[str, torch.Tensor] = {}

        # D: logistic loss + gamma/2 * R1 on the same real logits (official D_logistic_simplegp).
        set_requires_grad(self.G, False)
        set_requires_grad(self.D, True)
        with torch.no_grad():
            fake = self.run_G(torch.randn([n, h.z_dim], device=self.device), p)
        real = real.detach().requires_grad_(h.r1_gamma > 0)
        real_logits = self.D(real, alpha=p.alpha)
        fake_logits = self.D(fake, alpha=p.alpha)
        loss_real, loss_fake = d_logistic(real_logits, fake_logits)
        loss_d = loss_real.mean() + loss_fake.mean()
        stats.update({"loss/D_real": loss_real.detach().mean(), "loss/D_fake": loss_fake.detach().mean(),
                      "scores/real": real_logits.detach().mean(), "scores/fake": fake_logits.detach().mean()})
        if h.r1_gamma > 0:
            penalty = r1_penalty(real, real_logits)
            loss_d = loss_d + (penalty * (h.r1_gamma / 2)).mean()
            stats["reg/r1_penalty"] = penalty.detach().mean()
        stats["loss/D_main"] = loss_d.detach()
        self.optimizer_step_(opt_d, self.D, loss_d, counted=False)

        # G: non-saturating loss.
        set_requires_grad(self.G, True)
        set_requires_grad(self.D, False)
        fake_logits = self.D(self.run_G(torch.randn([n, h.z_dim], device=self.device), p), alpha=p.alpha)
        loss_g = g_nonsaturating(fake_logits).mean()
        stats["loss/G_main"] = loss_g.detach()
        self.optimizer_step_(opt_g, self.G, loss_g, counted=True)
        set_requires_grad(self.G, False)

        average_tensor_(self.G.mapping.w_avg)  # updated from each rank's own latents
        ema_update(self.G_ema, self.G, ema_beta(global_batch, int(self.nimg), h.ema_kimg, None))
        self.nimg += global_batch
        self._log_step(stats, p, n, global_batch, lr)

    def _log_step(self, stats: dict, p: Progress, n: int, global_batch: int, lr: float) -> None:
        stats.update(self.progress_stats(None, global_batch))
        stats.update({
            "progress/resolution": torch.tensor(float(p.resolution)),
            "progress/alpha": torch.tensor(p.alpha),
            "progress/phase": torch.tensor(float(p.phase)),
            "progress/lod": torch.tensor(p.lod),
            "progress/batch": torch.tensor(float(global_batch)),
            "progress/lr": torch.tensor(lr),
        })
        self.log_dict({k: v.float() for k, v in stats.items()}, on_step=True, batch_size=n)
        self.log("kimg", self.nimg.float() / 1000, on_step=True, prog_bar=True, batch_size=n)
