"""StarGAN v2 training (Choi et al., CVPR 2020) as a LightningModule with manual optimization.

One iteration in the official clovaai/stargan-v2 order: D latent-guided, D reference-guided,
G latent-guided (steps G, F, E), G reference-guided (steps G; see the quirk flag), then the
EMA of G, F, E (beta 0.999, parameters lerped). lambda_ds decays linearly to 0 over ds_iter
iterations, computed from the iteration count so a resumed run continues the schedule.

With high-pass skips (w_hpf > 0) the generator needs face masks: a frozen face-landmark network
(models/fan.py, weights from model.fan_weights or $LG_FAN_WEIGHTS) makes them from the real
sources once per iteration for the D and G steps, and from the translated image for the cycle
reconstruction, as the official solver does. The FAN is kept outside the module tree: it is not
trained, not in the EMA, not in the checkpoint's state dict; its file path and sha256 are
recorded in the checkpoint's hyper_parameters (fan_weights, fan_sha256).
"""

from __future__ import annotations

import copy
from collections.abc import Sequence

import torch
from pytorch_lightning.utilities import rank_zero_warn
from torch import nn

from ..checkpoint import file_sha256
from ..interop.stargan_v2 import load_fan
from ..losses.stargan_v2 import discriminator_loss, ds_weight, generator_loss, generator_step_networks
from ..models.fan import FAN
from ..models.stargan_v2 import NETWORK_NAMES, build_networks, he_init_
from ..pretrained.weights import training_fan_weights
from .base import GANModule
from .common import adam, clean_grads, ema_update, set_requires_grad
from .strategy import average_grads

EMA_NAMES = ("generator", "mapping_network", "style_encoder")  # D has no EMA copy


class StarGANv2Module(GANModule):
    """Owns G, F (mapping), E (style encoder), D, their EMA copies and four Adam optimizers.

    Batches are `DomainDataModule` dicts: x_src [N,3,R,R], y_src [N], x_ref, x_ref2 [N,3,R,R]
    (two images of domain y_ref [N]); the translation target of both branches is y_ref.
    """

    kind = "stargan_v2"
    ema_attributes = ("G_ema", "F_ema", "E_ema")

    def __init__(
        self,
        resolution: int = 256,        # img_size: images are R x R
        num_domains: int = 2,
        latent_dim: int = 16,         # z size of the mapping network
        style_dim: int = 64,
        max_conv_dim: int = 512,      # channel cap of G, E, D
        base_dim: int | None = None,  # channels of the first conv; None = 2**14 // resolution (published)
        w_hpf: float = 1.0,           # high-pass skip strength (> 0 needs FAN masks)
        batch_size: int = 8,          # global: source images per iteration over all processes
        lr: float = 1e-4,             # G, E, D
        f_lr: float = 1e-6,           # mapping network
        betas: Sequence[float] = (0.0, 0.99),
        weight_decay: float = 1e-4,   # Adam's L2 term, as officially (not AdamW)
        lambda_reg: float = 1.0,      # R1 on reals
        lambda_sty: float = 1.0,      # style reconstruction
        lambda_ds: float = 1.0,       # diversity sensitive, initial value
        ds_iter: int = 100000,        # iterations over which lambda_ds decays to 0
        lambda_cyc: float = 1.0,      # cycle consistency
        ema_beta: float = 0.999,      # per-iteration decay of G_ema, F_ema, E_ema
        # The official solver does not step the style encoder after the reference-guided G
        # loss although it gets gradients there; False reproduces the published training.
        style_encoder_in_reference_branch: bool = False,
        name: str = "stargan_v2",     # the config this came from (logged, stored in checkpoints)
        # w_hpf > 0 only: the FAN weights file (official wing.ckpt); None = $LG_FAN_WEIGHTS.
        # Once loaded, fan_weights holds the resolved path and fan_sha256 the file's hash.
        fan_weights: str | None = None,
        fan_sha256: str | None = None,
    ):
        super().__init__()
        self.save_hyperparameters()
        self.net_kwargs = dict(img_size=resolution, style_dim=style_dim, latent_dim=latent_dim,
                               num_domains=num_domains, w_hpf=w_hpf, max_conv_dim=max_conv_dim,
                               dim_in=base_dim)
        nets = build_networks(**self.net_kwargs, he_init=False)
        # The official trainer copies the EMA nets before its He init: they start from
        # PyTorch's default init and drift towards the trained nets at beta 0.999.
        ema = {k: copy.deepcopy(nets[k]) for k in EMA_NAMES}
        for net in nets.values():
            he_init_(net)
        self.G, self.F, self.E, self.D = (nets[k] for k in NETWORK_NAMES)
        self.G_ema, self.F_ema, self.E_ema = (ema[k].eval() for k in EMA_NAMES)
        for net in (self.G_ema, self.F_ema, self.E_ema):
            set_requires_grad(net, False)
        # Plain attribute, not a submodule: no parameters, state dict, DDP wrapping or train().
        object.__setattr__(self, "_fan", None)
        self._resumed_fan_sha256: str | None = None

    # ---- configuration -------------------------------------------------------------------
    def networks(self) -> dict[str, nn.Module]:
        """The trained networks under their official checkpoint names (no EMA copies)."""
        return dict(zip(NETWORK_NAMES, (self.G, self.F, self.E, self.D), strict=True))

    def ema_networks(self) -> dict[str, nn.Module]:
        """G_ema, F_ema, E_ema under their official names (what sampling and evaluation use)."""
        return dict(zip(EMA_NAMES, (self.G_ema, self.F_ema, self.E_ema), strict=True))

    def model_config(self) -> dict:
        """Self-describing architecture record stored in every checkpoint."""
        return {"kind": self.kind, "name": self.hparams.name, "net_kwargs": dict(self.net_kwargs)}

    def configure_optimizers(self):
        h = self.hparams
        return [
            adam(net.parameters(), lr=h.f_lr if name == "mapping_network" else h.lr,
                             betas=tuple(h.betas), weight_decay=h.weight_decay)
            for name, net in self.networks().items()
        ]

    def on_fit_start(self) -> None:
        super().on_fit_start()
        self.fan()  # w_hpf > 0: load the FAN now, so a missing file fails before training

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        super().on_load_checkpoint(checkpoint)
        self._resumed_fan_sha256 = (checkpoint.get("hyper_parameters") or {}).get("fan_sha256")
        self._check_fan_sha256()

    # ---- face masks (w_hpf > 0) --------------------------------------------------------------
    def fan(self) -> FAN | None:
        """The frozen face-landmark network (loaded on first use), or None when w_hpf == 0."""
        h = self.hparams
        if h.w_hpf <= 0:
            return None
        if self._fan is None:
            path = training_fan_weights(h.fan_weights, h.name, h.w_hpf)
            fan = load_fan(path)
            object.__setattr__(self, "_fan", fan)
            h.fan_weights, h.fan_sha256 = str(path.resolve()), file_sha256(path)
            self._check_fan_sha256()
        return self._fan

    def _check_fan_sha256(self) -> None:
        recorded, current = self._resumed_fan_sha256, self.hparams.get("fan_sha256")
        if self._fan is not None and recorded and current and recorded != current:
            rank_zero_warn(f"FAN weights {self.hparams.fan_weights} (sha256 {current[:12]}...) differ from those "
                           f"the resumed checkpoint was trained with (sha256 {recorded[:12]}...); its masks change")

    def fan_masks(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor] | None:
        """The generator's masks for images x [N,3,R,R] (no gradients), or None when w_hpf == 0."""
        fan = self.fan()
        if fan is None:
            return None
        if fan.l0.weight.device != x.device:
            fan.to(x.device)
        return fan.masks(x.detach())

    # ---- training --------------------------------------------------------------------------
    def _step(self, loss: torch.Tensor, names: Sequence[str], counted: bool = False) -> None:
        """One backward, then step the optimizers of `names` (all grads are cleared first, as
        the official _reset_grad). With counted, the last step advances global_step."""
        opts = dict(zip(NETWORK_NAMES, self.optimizers(), strict=True))
        nets = self.networks()
        for opt in opts.values():
            opt.zero_grad(set_to_none=True)
        self.manual_backward(loss)
        for name in names:
            average_grads(nets[name])
            self._nonfinite += clean_grads(nets[name].parameters())
        for i, name in enumerate(names):
            if counted and i == len(names) - 1:
                opts[name].step()
            else:
                opts[name].optimizer.step()

    def training_step(self, batch: dict, batch_idx: int) -> None:
        self.restore_rng_if_resumed()
        h = self.hparams
        x_real, y_org = batch["x_src"], batch["y_src"]
        x_ref, x_ref2, y_trg = batch["x_ref"], batch["x_ref2"], batch["y_ref"]
        if x_real.shape[1:] != (3, h.resolution, h.resolution):
            raise ValueError(f"batch images are {tuple(x_real.shape[1:])}, the model expects "
                             f"{(3, h.resolution, h.resolution)}")
        n = x_real.shape[0]
        z_trg = torch.randn(n, h.latent_dim, device=self.device)
        z_trg2 = torch.randn(n, h.latent_dim, device=self.device)
        lambda_ds = ds_weight(self.global_step, h.lambda_ds, h.ds_iter)
        nets = self.networks()
        stats: dict[str, float] = {"schedule/lambda_ds": lambda_ds}
        masks = self.fan_masks(x_real)  # None without high-pass skips

        set_requires_grad(self.D, True)
        for branch, kw in (("latent", {"z_trg": z_trg}), ("ref", {"x_ref": x_ref})):
            loss, terms = discriminator_loss(nets, x_real, y_org, y_trg, lambda_reg=h.lambda_reg,
                                             masks=masks, **kw)
            self._step(loss, ("discriminator",))
            stats.update({f"loss/D_{branch}_{k}": v for k, v in terms.items()})
            stats[f"loss/D_{branch}"] = loss.item()

        # D only passes gradients to the fakes here; its own would be discarded anyway.
        set_requires_grad(self.D, False)
        g_kwargs = dict(lambda_sty=h.lambda_sty, lambda_ds=lambda_ds, lambda_cyc=h.lambda_cyc,
                        masks=masks, heatmap_fn=self.fan_masks if masks is not None else None)
        loss, terms = generator_loss(nets, x_real, y_org, y_trg, z_trgs=(z_trg, z_trg2), **g_kwargs)
        self._step(loss, generator_step_networks("latent"))
        stats.update({f"loss/G_latent_{k}": v for k, v in terms.items()})
        stats["loss/G_latent"] = loss.item()

        loss, terms = generator_loss(nets, x_real, y_org, y_trg, x_refs=(x_ref, x_ref2), **g_kwargs)
        ref_nets = generator_step_networks(
            "reference", style_encoder_in_reference_branch=h.style_encoder_in_reference_branch)
        self._step(loss, ref_nets, counted=True)
        stats.update({f"loss/G_ref_{k}": v for k, v in terms.items()})
        stats["loss/G_ref"] = loss.item()
        set_requires_grad(self.D, True)

        for name, ema in self.ema_networks().items():
            ema_update(ema, nets[name], h.ema_beta)
        stats.update({k: float(v) for k, v in self.progress_stats(batch, n * self.trainer.world_size).items()})
        self.log_dict({k: torch.tensor(float(v)) for k, v in stats.items()}, on_step=True,
                      batch_size=n)

    # ---- inference ---------------------------------------------------------------------------
    @torch.no_grad()
    def mean_styles(self, num_samples: int = 10000, seed: int = 0) -> torch.Tensor:
        """Per-domain mean style of F_ema over num_samples seeded z: [num_domains, style_dim]
        (the centre that latent-guided truncation pulls towards)."""
        h = self.hparams
        gen = torch.Generator().manual_seed(seed)
        z = torch.randn(num_samples, h.latent_dim, generator=gen).to(self.device)
        return torch.stack([
            self.F_ema(z, torch.full((num_samples,), d, dtype=torch.int64, device=self.device)).mean(0)
            for d in range(h.num_domains)
        ])
