"""StyleGAN2 training (Karras et al., CVPR 2020) as a LightningModule with manual optimization.

One iteration = G main step, [path-length step every pl_interval], D main step, [R1 step every
r1_interval], then the G_ema update -- the phase order of the official StyleGAN2-ADA loop.
Schedules (EMA, lazy regularization) run on images seen (nimg), so they do not depend on how
many processes share the global batch.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence

import torch

from ..augment import AdaController, AugmentPipe, freeze_discriminator
from ..losses.stylegan2 import StyleGAN2Loss, lazy_adam_kwargs
from ..models.stylegan2 import Discriminator, Generator, check_resolution
from .base import GANModule
from .common import adam, ema_beta, ema_update, set_requires_grad
from .strategy import average_tensor_


class StyleGAN2Module(GANModule):
    """Owns G, D, G_ema, their optimizers and the training schedule."""

    kind = "stylegan2"
    ema_attributes = ("G_ema",)

    def __init__(
        self,
        resolution: int = 1024,
        z_dim: int = 512,
        w_dim: int = 512,
        c_dim: int = 0,  # label size; set from the data when data.use_labels is on
        img_channels: int = 3,
        mapping_layers: int = 8,
        mapping_lr_multiplier: float = 0.01,
        w_avg_beta: float = 0.995,
        channel_base: int = 32768,  # channels(res) = min(channel_base // res, channel_max)
        channel_max: int = 512,
        conv_clamp: float | None = 256,
        mbstd_group_size: int = 4,
        mbstd_num_channels: int = 1,
        batch_size: int = 32,  # global: images per iteration over all processes
        lr: float = 0.002,
        betas: Sequence[float] = (0.0, 0.99),
        eps: float = 1e-8,
        r1_gamma: float = 10.0,
        r1_interval: int = 16,
        pl_weight: float = 2.0,
        pl_interval: int = 4,
        pl_batch_shrink: int = 2,
        pl_decay: float = 0.01,
        style_mixing_prob: float = 0.9,
        ema_kimg: float = 10.0,  # G_ema half-life in thousands of images
        ema_rampup: float | None = None,  # cap the half-life at nimg * ema_rampup early on
        ada_target: float | None = None,  # ADA: E[sign(D(real))] to steer p to (0.6); None = fixed p
        ada_p: float = 0.0,  # initial augmentation probability
        ada_interval: int = 4,  # iterations between p adjustments
        ada_kimg: float = 500,  # kimg for p to move by 1 (100 when fine-tuning)
        augment_kwargs: dict | None = None,  # AugmentPipe multipliers/strengths (default: bgc)
        freeze_d: int = 0,  # freeze-D: number of D layers frozen, from the highest resolution
        name: str = "stylegan2",  # the config this came from (logged, stored in checkpoints)
    ):
        super().__init__()
        self.save_hyperparameters()
        check_resolution(resolution)
        self.G_kwargs = dict(
            z_dim=z_dim, c_dim=c_dim, w_dim=w_dim, img_resolution=resolution, img_channels=img_channels,
            mapping_kwargs=dict(num_layers=mapping_layers, lr_multiplier=mapping_lr_multiplier,
                                w_avg_beta=w_avg_beta),
            channel_base=channel_base, channel_max=channel_max, conv_clamp=conv_clamp,
        )
        self.D_kwargs = dict(
            c_dim=c_dim, img_resolution=resolution, img_channels=img_channels,
            channel_base=channel_base, channel_max=channel_max, conv_clamp=conv_clamp,
            mbstd_group_size=mbstd_group_size, mbstd_num_channels=mbstd_num_channels,
        )
        self.G = Generator(**self.G_kwargs)
        self.D = Discriminator(**self.D_kwargs)
        self.frozen_d = freeze_discriminator(self.D, freeze_d)
        use_aug = ada_target is not None or ada_p > 0
        self.augment_pipe = AugmentPipe(**(augment_kwargs or {}), p=ada_p) if use_aug else None
        self.ada = AdaController(ada_target, ada_interval, ada_kimg) if ada_target is not None else None
        self.G_ema = copy.deepcopy(self.G).eval()
        set_requires_grad(self.G_ema, False)
        self.register_buffer("pl_mean", torch.zeros([]))
        self.register_buffer("nimg", torch.zeros([], dtype=torch.int64))
        self.loss = StyleGAN2Loss(
            self.G, self.D, augment=self.augment_pipe, r1_gamma=r1_gamma, style_mixing_prob=style_mixing_prob,
            pl_weight=pl_weight, pl_batch_shrink=pl_batch_shrink, pl_decay=pl_decay,
        )

    def _apply(self, fn, *args, **kwargs):
        # .to()/.cuda() replace buffers with new tensors: the loss must hold the current pl_mean.
        out = super()._apply(fn, *args, **kwargs)
        self.loss.pl_mean = self.pl_mean
        return out

    # ---- configuration -------------------------------------------------------------------
    def configure_optimizers(self):
        h = self.hparams
        g_reg = h.pl_interval if h.pl_weight > 0 else None
        d_reg = h.r1_interval if h.r1_gamma > 0 else None
        opt_g = adam(self.G.parameters(), eps=h.eps, **lazy_adam_kwargs(h.lr, h.betas, g_reg))
        opt_d = adam(self.D.parameters(), eps=h.eps, **lazy_adam_kwargs(h.lr, h.betas, d_reg))
        return [opt_g, opt_d]

    # ---- training --------------------------------------------------------------------------
    def training_step(self, batch: dict, batch_idx: int) -> None:
        self.restore_rng_if_resumed()
        h = self.hparams
        real = batch["img"]
        R = h.resolution
        if real.shape[1:] != (h.img_channels, R, R):
            raise ValueError(f"batch images are {tuple(real.shape[1:])}, the model expects {(h.img_channels, R, R)}")
        c = batch["c"] if h.c_dim > 0 else None
        n = real.shape[0]
        global_batch = n * self.trainer.world_size
        it = self.global_step
        opt_g, opt_d = self.optimizers()
        gen_c = c[torch.randperm(n, device=c.device)] if c is not None else None
        z = lambda: torch.randn([n, h.z_dim], device=self.device)  # noqa: E731
        stats: dict[str, torch.Tensor] = {}

        set_requires_grad(self.G, True)
        set_requires_grad(self.D, False)
        loss, s = self.loss.g_main(z(), gen_c)
        self.optimizer_step_(opt_g, self.G, loss, counted=False)
        stats.update(s)
        if h.pl_weight > 0 and it % h.pl_interval == 0:
            loss, s = self.loss.g_pl(z(), gen_c, gain=h.pl_interval)
            self.optimizer_step_(opt_g, self.G, loss, counted=False)
            stats.update(s)

        set_requires_grad(self.G, False)
        set_requires_grad(self.D, True)
        loss, s = self.loss.d_main(real, c, z(), gen_c)
        self.optimizer_step_(opt_d, self.D, loss, counted=True)
        stats.update(s)
        if self.ada is not None:
            self.ada.accumulate(s["signs/real"])
        if h.r1_gamma > 0 and it % h.r1_interval == 0:
            loss, s = self.loss.d_r1(real, c, gain=h.r1_interval)
            self.optimizer_step_(opt_d, self.D, loss, counted=False)
            stats.update(s)
        set_requires_grad(self.D, False)

        # Running statistics are updated from each rank's own samples: keep ranks identical.
        average_tensor_(self.G.mapping.w_avg)
        average_tensor_(self.pl_mean)
        ema_update(self.G_ema, self.G, ema_beta(global_batch, int(self.nimg), h.ema_kimg, h.ema_rampup))
        self.nimg += global_batch
        if self.ada is not None:
            self.ada.update(self.augment_pipe.p, it, global_batch, reduce=average_tensor_)
        if self.augment_pipe is not None:
            stats["ada/p"] = self.augment_pipe.p.detach().clone()
        self._log_step(stats, batch, n, global_batch, it)

    def _log_step(self, stats: dict, batch: dict, n: int, global_batch: int, it: int) -> None:
        stats.update(self.progress_stats(batch, global_batch))
        # Lazy-regularization terms exist only on their iterations; self.log would repeat the
        # last value on every row, so they go straight to the loggers, at their own step.
        sparse = {k: float(v) for k, v in stats.items() if k.startswith("reg/") or k == "loss/D_r1"}
        if sparse:
            for logger in self.loggers:
                logger.log_metrics(sparse, step=it)
        dense = {k: v.float() for k, v in stats.items() if k not in sparse}
        self.log_dict(dense, on_step=True, batch_size=n)
        self.log("kimg", self.nimg.float() / 1000, on_step=True, prog_bar=True, batch_size=n)
