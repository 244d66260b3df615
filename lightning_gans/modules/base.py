"""GANModule: what every GAN LightningModule here shares.

Manual optimization with several optimizer steps per iteration, of which exactly one advances
trainer.global_step (so trainer.max_steps counts iterations); gradients averaged over DDP ranks
and cleaned of NaN/inf; per-rank RNG streams saved in checkpoints so a resume continues
exactly; the W&B run id and a self-describing model_config in every checkpoint; EMA copies
kept in eval mode.
"""

from __future__ import annotations

import time

import pytorch_lightning as pl
import torch
from pytorch_lightning.utilities import rank_zero_warn
from torch import nn

from ..errors import ConfigError
from .common import capture_rng, clean_grads, restore_rng, seed_all
from .strategy import average_grads, gather_objects

# Progress-bar entries: bar label -> the logged keys it shows, first present wins (StyleGAN and
# StyleGAN2 log G_main/D_main; StarGAN v2 its reference-guided and latent-guided branches).
PROG_BAR: dict[str, tuple[str, ...]] = {
    "G": ("loss/G_main", "loss/G_ref", "loss/G_latent"),
    "D": ("loss/D_main", "loss/D_ref", "loss/D_latent"),
    "sec/kimg": ("progress/sec_per_kimg",),
    "p": ("ada/p",),
}


class GANModule(pl.LightningModule):
    """Subclasses set `kind`, build their networks and implement `training_step`; those that
    are not a G/D pair with G_kwargs/D_kwargs also override `networks()` and `model_config()`."""

    kind = "gan"
    ema_attributes: tuple[str, ...] = ()  # names of EMA copies, kept in eval mode

    def __init__(self) -> None:
        super().__init__()
        self.automatic_optimization = False
        self._pending_rng: dict | None = None  # this rank's RNG state from a checkpoint
        self._nonfinite = 0  # non-finite gradient entries replaced so far
        self._last_time: float | None = None  # for sec/kimg

    # ---- to implement ------------------------------------------------------------------------
    def networks(self) -> dict[str, nn.Module]:
        """The trained networks (EMA copies excluded); default: a G/D pair."""
        return {"G": self.G, "D": self.D}

    def model_config(self) -> dict:
        """Self-describing architecture record stored in every checkpoint; default: G/D kwargs."""
        return {"kind": self.kind, "name": self.hparams.name, "G_kwargs": self.G_kwargs,
                "D_kwargs": self.D_kwargs}

    # ---- shared ------------------------------------------------------------------------------
    def train(self, mode: bool = True):
        super().train(mode)
        for name in self.ema_attributes:
            getattr(self, name).eval()  # EMA copies only run inference
        return self

    def optimizer_step_(self, opt, net: nn.Module, loss: torch.Tensor, counted: bool = False) -> None:
        """zero_grad, backward, average over ranks, clean non-finite grads, step.

        Exactly one call per iteration should pass counted=True: it goes through Lightning's
        optimizer wrapper and advances global_step; the others step the torch optimizer.
        """
        opt.zero_grad(set_to_none=True)
        self.manual_backward(loss)
        average_grads(net)
        self._nonfinite += clean_grads(net.parameters())
        if counted:
            opt.step()
        else:
            opt.optimizer.step()

    def progress_stats(self, batch: dict | None, global_batch: int) -> dict[str, torch.Tensor]:
        """What every GAN logs each iteration: sec/kimg since the last call, the non-finite
        gradient entries replaced so far, and the samples the data pipeline skipped."""
        stats = {}
        now = time.perf_counter()
        if self._last_time is not None:
            stats["progress/sec_per_kimg"] = torch.tensor((now - self._last_time) / (global_batch / 1000))
        self._last_time = now
        stats["grad/nonfinite"] = torch.tensor(float(self._nonfinite))
        datamodule = getattr(self._trainer, "datamodule", None) if self._trainer is not None else None
        if hasattr(datamodule, "skipped_samples"):  # summed over this rank's workers
            stats["data/skipped"] = torch.tensor(float(datamodule.skipped_samples))
        elif batch is not None and "skipped" in batch:
            stats["data/skipped"] = batch["skipped"].float().max()
        return stats

    def log_dict(self, dictionary, *args, **kwargs) -> None:
        """Lightning's log_dict, plus the PROG_BAR entries on the progress bar (under their short
        labels, bar only: the loggers get each value once, under its full key)."""
        super().log_dict(dictionary, *args, **kwargs)
        if not kwargs.get("on_step", True):
            return
        batch_size = kwargs.get("batch_size")
        for label, keys in PROG_BAR.items():
            key = next((k for k in keys if k in dictionary), None)
            if key is not None:
                value = dictionary[key]
                value = value.detach().float() if torch.is_tensor(value) else torch.tensor(float(value))
                self.log(label, value, on_step=True, prog_bar=True, logger=False, batch_size=batch_size)
        if not hasattr(self, "nimg") and "progress/sec_per_kimg" in dictionary and batch_size:
            # modules without an image counter (StarGAN v2): kimg from the step and global batch
            kimg = self.trainer.global_step * batch_size * self.trainer.world_size / 1000
            self.log("kimg", torch.tensor(float(kimg)), on_step=True, prog_bar=True, logger=False,
                     batch_size=batch_size)

    def optimizer_settings(self) -> dict:
        """What the optimizers actually run with (lazy regularization rescales the learning rate
        and betas) and the regularization intervals, for the loggers' config."""
        names = list(self.networks())
        optimizers = self.trainer.optimizers if self._trainer is not None else []
        out: dict = {}
        for i, opt in enumerate(optimizers):
            name = names[i] if len(names) == len(optimizers) else f"opt{i}"
            group = opt.param_groups[0]
            out[name] = {"lr": float(group["lr"])}
            if "betas" in group:
                out[name]["betas"] = [float(b) for b in group["betas"]]
        intervals = {k: int(v) for k, v in self.hparams.items()
                     if k.endswith("_interval") and isinstance(v, int) and not isinstance(v, bool)}
        return {"optim": out, "reg_intervals": intervals}

    def on_train_start(self) -> None:
        if self.trainer.is_global_zero:
            settings = self.optimizer_settings()
            for logger in self.loggers:
                logger.log_hyperparams(settings)

    def restore_rng_if_resumed(self) -> None:
        """Call first in training_step: continues the saved random streams after a resume."""
        if self._pending_rng is not None:
            restore_rng(self._pending_rng)
            self._pending_rng = None

    def on_fit_start(self) -> None:
        if isinstance(self.trainer.strategy.model, torch.nn.parallel.DistributedDataParallel):
            raise ConfigError(
                "trainer.strategy wraps the GAN in DistributedDataParallel, which cannot run the "
                "several backward passes of a GAN iteration; use trainer=ddp (GANDDPStrategy)"
            )
        if self._pending_rng is None and self.trainer.world_size > 1:
            # Same weights on every rank (the strategy broadcasts them), own latents per rank.
            seed_all(torch.initial_seed() * self.trainer.world_size + self.trainer.global_rank)

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        checkpoint["rng"] = gather_objects(capture_rng())  # one entry per rank
        checkpoint["model_config"] = self.model_config()
        checkpoint["nonfinite_grads"] = self._nonfinite
        run_id = wandb_run_id(self._trainer)
        if run_id is not None:
            checkpoint["wandb_run_id"] = run_id

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        states = checkpoint.get("rng") or []
        if isinstance(states, dict):
            states = [states]
        attached = self._trainer is not None
        rank = self.trainer.global_rank if attached else 0
        world = self.trainer.world_size if attached else 1
        if len(states) == world:
            self._pending_rng = states[rank]
        elif states:  # resumed with another process count: the streams cannot continue exactly
            self._pending_rng = None
            rank_zero_warn(
                f"checkpoint holds RNG states of {len(states)} processes, this run has {world}: "
                "random streams restart from new seeds"
            )
            seed_all(torch.initial_seed() + int(checkpoint.get("global_step", 0)) * 1000 + rank)
        self._nonfinite = int(checkpoint.get("nonfinite_grads", 0))


def wandb_run_id(trainer: pl.Trainer | None) -> str | None:
    """The id of the trainer's W&B run (None without a WandbLogger)."""
    if trainer is None:
        return None
    for logger in trainer.loggers:
        if type(logger).__name__ == "WandbLogger":
            return str(logger.version) if logger.version else None
    return None
