"""StyleGAN2 training (Karras et al., CVPR 2020) as a LightningModule with manual optimization.

One iteration = the phases of the official StyleGAN2-ADA loop (training_loop.py), in its order:
Gmain, [Greg every pl_interval], Dmain, [Dreg every r1_interval] -- or the fused Gboth / Dboth
when an interval is None (non-lazy regularization) -- then the G_ema update and, every
ada_interval iterations, the ADA adjustment. Each phase draws its own latents and, for a
conditional model, its own labels from the dataset's label distribution. Schedules (EMA, lazy
regularization) run on images seen (nimg), so they do not depend on how many processes share
the global batch.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence

import torch
from pytorch_lightning.utilities import rank_zero_info

from ..augment import AdaController, AugmentPipe, freeze_discriminator
from ..losses.stylegan2 import StyleGAN2Loss, lazy_adam_kwargs
from ..models.stylegan2 import Generator, check_resolution
from ..models.stylegan2_discriminator import Discriminator
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
        num_fp16_res: int = 0,  # float16 in the N highest resolutions of G and D (official presets: 4)
        fp16_on_cpu: bool = False,  # run those float16 blocks on the CPU too (else float32 there)
        mbstd_group_size: int = 4,
        mbstd_num_channels: int = 1,
        d_architecture: str = "resnet",  # 'orig': D without residual skips (the official cifar preset)
        batch_size: int = 32,  # global: images per iteration over all processes
        lr: float = 0.002,
        betas: Sequence[float] = (0.0, 0.99),
        eps: float = 1e-8,
        r1_gamma: float = 10.0,
        r1_interval: int | None = 16,  # None: R1 in the D main step (the official 'Dboth')
        pl_weight: float = 2.0,
        pl_interval: int | None = 4,  # None: path length in the G main step ('Gboth')
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
            num_fp16_res=num_fp16_res, fp16_on_cpu=fp16_on_cpu,
        )
        self.D_kwargs = dict(
            c_dim=c_dim, img_resolution=resolution, img_channels=img_channels,
            channel_base=channel_base, channel_max=channel_max, conv_clamp=conv_clamp,
            mbstd_group_size=mbstd_group_size, mbstd_num_channels=mbstd_num_channels,
            num_fp16_res=num_fp16_res, fp16_on_cpu=fp16_on_cpu,
        )
        if d_architecture != "resnet":  # checkpoints of resnet Ds keep their model_config as before
            self.D_kwargs["architecture"] = d_architecture
        self.G = Generator(**self.G_kwargs)
        self.D = Discriminator(**self.D_kwargs)
        self.frozen_d = freeze_discriminator(self.D, freeze_d)
        use_aug = ada_target is not None or ada_p > 0
        self.augment_pipe = AugmentPipe(**(augment_kwargs or {}), p=ada_p) if use_aug else None
        self.ada = AdaController(ada_target, ada_interval, ada_kimg) if ada_target is not None else None
        self.G_ema = copy.deepcopy(self.G).eval()
        set_requires_grad(self.G_ema, False)
        self.register_buffer("pl_mean", torch.zeros([]))
        # Conditional models: class probabilities of the training set, for gen_c (see on_fit_start).
        self.register_buffer("label_probs", torch.zeros([c_dim]), persistent=False)
        self.register_buffer("nimg", torch.zeros([], dtype=torch.int64))
        self.loss = StyleGAN2Loss(
            self.G, self.D, augment=self.augment_pipe, r1_gamma=r1_gamma, style_mixing_prob=style_mixing_prob,
            pl_weight=pl_weight, pl_batch_shrink=pl_batch_shrink, pl_decay=pl_decay, pl_mean=self.pl_mean,
        )

    def _apply(self, fn, *args, **kwargs):
        # .to()/.cuda() replace buffers with new tensors: the loss must hold the current pl_mean.
        out = super()._apply(fn, *args, **kwargs)
        self.loss.pl_mean = self.pl_mean
        return out

    # ---- configuration -------------------------------------------------------------------
    def configure_optimizers(self):
        h = self.hparams
        # As the official loop: the lazy-regularization scaling follows the interval alone (a zero
        # pl_weight / r1_gamma keeps it); interval None = one fused phase with the plain settings.
        opt_g = adam(self.G.parameters(), eps=h.eps, **lazy_adam_kwargs(h.lr, h.betas, h.pl_interval))
        opt_d = adam(self.D.parameters(), eps=h.eps, **lazy_adam_kwargs(h.lr, h.betas, h.r1_interval))
        return [opt_g, opt_d]

    def phases(self, iteration: int) -> list[tuple[str, int]]:
        """(phase name, gain) run at `iteration`, in the official order; gain = the interval."""
        h = self.hparams
        out: list[tuple[str, int]] = []
        for net, interval, weight in (("G", h.pl_interval, h.pl_weight), ("D", h.r1_interval, h.r1_gamma)):
            if interval is None:
                out.append((net + "both", 1))
                continue
            out.append((net + "main", 1))
            if iteration % interval == 0 and weight != 0:  # a zero weight: the official phase does nothing
                out.append((net + "reg", interval))
        return out

    def apply_resume_settings(self) -> list[str]:
        """What the official train.py does for a --resume run (init_from=): ADA reacts faster
        (ada_kimg 100) and the EMA has no ramp-up. Returns the settings changed, for the log."""
        changed = []
        if self.ada is not None and self.ada.kimg != 100:
            self.ada.kimg = 100.0
            self.hparams.ada_kimg = 100
            changed.append("model.ada_kimg=100")
        if self.hparams.ema_rampup is not None:
            self.hparams.ema_rampup = None
            changed.append("model.ema_rampup=null")
        return changed

    def on_fit_start(self) -> None:
        super().on_fit_start()
        h = self.hparams
        if self.trainer.is_global_zero:
            if self.ada is not None:
                rank_zero_info(f"ADA on: target {self.ada.target}, p {float(self.augment_pipe.p):g}, adjusted every "
                               f"{self.ada.interval} iterations by batch*{self.ada.interval}/({self.ada.kimg:g}*1000) "
                               "(model.ada_target=null turns it off)")
            elif self.augment_pipe is not None:
                rank_zero_info(f"ADA off, fixed augmentation p {float(self.augment_pipe.p):g}")
            else:
                rank_zero_info("ADA off (model.ada_target=null); model.ada_target=0.6 turns it on")
        if h.c_dim > 0 and float(self.label_probs.sum()) == 0:
            probs = dataset_label_probs(getattr(self.trainer, "datamodule", None), h.c_dim)
            if probs is not None:
                self.label_probs.copy_(probs)

    def gen_c(self, real_c: torch.Tensor | None, n: int) -> torch.Tensor | None:
        """Labels for one phase's generated images: n draws from the dataset's label distribution
        (the official draws the labels of random dataset images); without one (no manifest
        counts), n draws with replacement from the real batch's labels."""
        if real_c is None:
            return None
        if float(self.label_probs.sum()) > 0:
            idx = torch.multinomial(self.label_probs.float(), n, replacement=True)
            return torch.nn.functional.one_hot(idx, self.hparams.c_dim).to(real_c)
        return real_c[torch.randint(real_c.shape[0], [n], device=real_c.device)]

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
        stats: dict[str, torch.Tensor] = {}
        for name, gain in self.phases(it):
            is_d = name.startswith("D")
            net, opt = (self.D, opt_d) if is_d else (self.G, opt_g)
            set_requires_grad(self.G, not is_d)
            set_requires_grad(self.D, is_d)
            z = torch.randn([n, h.z_dim], device=self.device)
            loss, s = self.loss.phase(name, real, c, z, self.gen_c(c, n), gain=gain)
            self.optimizer_step_(opt, net, loss, counted=name in ("Dmain", "Dboth"))
            for k, v in s.items():  # a statistic reported by several phases: the mean of all, as official
                stats[k] = torch.cat([stats[k].flatten(), v.flatten()]) if k in stats else v
            if self.ada is not None and "signs/real" in s:  # the official collects Dmain's and Dreg's
                self.ada.accumulate(s["signs/real"])
        set_requires_grad(self.D, False)

        # Running statistics are updated from each rank's own samples: keep ranks identical.
        average_tensor_(self.G.mapping.w_avg)
        average_tensor_(self.pl_mean)
        ema_update(self.G_ema, self.G, ema_beta(global_batch, int(self.nimg), h.ema_kimg, h.ema_rampup))
        self.nimg += global_batch
        if self.ada is not None:
            self.ada.update(self.augment_pipe.p, it, global_batch, reduce=average_tensor_)
        stats = {k: v.float().mean() for k, v in stats.items()}
        if self.augment_pipe is not None:
            stats["ada/p"] = self.augment_pipe.p.detach().clone()
        self._log_step(stats, batch, n, global_batch, it)

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        super().on_save_checkpoint(checkpoint)
        # init_from's resume settings change hyper-parameters after construction: keep them.
        checkpoint["schedule"] = {"ada_kimg": self.ada.kimg if self.ada is not None else None,
                                  "ema_rampup": self.hparams.ema_rampup}

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        super().on_load_checkpoint(checkpoint)
        schedule = checkpoint.get("schedule") or {}
        if self.ada is not None and schedule.get("ada_kimg") is not None:
            self.ada.kimg = float(schedule["ada_kimg"])
            self.hparams.ada_kimg = schedule["ada_kimg"]
        if "ema_rampup" in schedule:
            self.hparams.ema_rampup = schedule["ema_rampup"]

    def _log_step(self, stats: dict, batch: dict, n: int, global_batch: int, it: int) -> None:
        stats.update(self.progress_stats(batch, global_batch))
        # Lazy-regularization terms exist only on their iterations; self.log would repeat the
        # last value on every row, so they go straight to the loggers, at their own step.
        sparse = {k: float(v) for k, v in stats.items() if k.startswith("reg/")}
        if sparse:
            for logger in self.loggers:
                logger.log_metrics(sparse, step=it)
        dense = {k: v.float() for k, v in stats.items() if k not in sparse}
        self.log_dict(dense, on_step=True, batch_size=n)
        self.log("kimg", self.nimg.float() / 1000, on_step=True, prog_bar=True, batch_size=n)


def dataset_label_probs(datamodule, c_dim: int) -> torch.Tensor | None:
    """Class probabilities of a datamodule's training set from its manifest's label counts
    (in label-index order); None when it does not record them."""
    manifest = getattr(datamodule, "manifest", None) or {}
    counts, names = manifest.get("label_counts"), list(getattr(datamodule, "label_names", []) or [])
    if not counts or len(names) != c_dim:
        return None
    probs = torch.tensor([float(counts.get(name, 0)) for name in names], dtype=torch.float64)
    return probs / probs.sum() if probs.sum() > 0 else None
