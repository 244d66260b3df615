"""Stop a diverged run: non-finite losses or weights said on the console when they happen, the
run stopped after `max_nonfinite_steps` such iterations in a row with the last good checkpoint
named (exit status 2 through the CLI), and no checkpoint with non-finite weights written
(AtomicCheckpointIO skips those, so a good last.ckpt is never replaced by a diverged one).
"""

from __future__ import annotations

import logging
import math

import pytorch_lightning as pl
import torch

from ..checkpoint import nonfinite_tensors
from ..errors import LGError

log = logging.getLogger(__name__)


class TrainingDiverged(LGError):
    """Losses or weights stayed non-finite for max_nonfinite_steps iterations."""


def nonfinite_losses(metrics: dict) -> list[str]:
    """Keys of logged loss values (loss/*) that are NaN or inf."""
    bad = []
    for k, v in metrics.items():
        if not str(k).startswith("loss/"):
            continue
        value = float(v.detach().float().reshape(-1)[0]) if torch.is_tensor(v) else float(v)
        if not math.isfinite(value):
            bad.append(str(k))
    return sorted(bad)


class DivergenceGuard(pl.Callback):
    """After each training iteration, check the logged losses (loss/*) and the module's weights.

    The first non-finite iteration of a streak is reported on the console (which losses /
    tensors); after `max_nonfinite_steps` in a row training stops with TrainingDiverged naming the
    last checkpoint that was written with finite weights. 0 disables the stop (still reported).
    `check_weights_every`: how often (iterations) to scan all weights; losses are checked every time.
    """

    def __init__(self, max_nonfinite_steps: int = 10, check_weights_every: int = 1) -> None:
        if int(max_nonfinite_steps) < 0:
            raise LGError(f"callbacks.divergence.max_nonfinite_steps={max_nonfinite_steps} must be >= 0 "
                          "(0: never stop)")
        self.max_nonfinite_steps = int(max_nonfinite_steps)
        self.check_weights_every = max(1, int(check_weights_every))
        self.streak = 0
        self.total = 0
        self._batches = 0

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module, outputs, batch, batch_idx) -> None:
        self._batches += 1
        bad = nonfinite_losses(trainer.callback_metrics)
        if self._batches % self.check_weights_every == 0 or bad or self.streak:
            bad += [f"weights {n}" for n in nonfinite_tensors(pl_module.named_parameters())[:3]]
        # all ranks agree (one scalar all-reduce), so they stop together instead of one waiting
        if trainer.world_size > 1 and trainer.strategy.reduce_boolean_decision(bool(bad), all=False):
            bad = bad or ["losses on another rank"]
        if not bad:
            if self.streak:
                log.warning("training is finite again at step %d after %d non-finite iterations",
                            trainer.global_step, self.streak)
            self.streak = 0
            return
        self.streak += 1
        self.total += 1
        step = trainer.global_step
        if self.streak == 1 and trainer.is_global_zero:
            log.warning("non-finite values at step %d: %s (a diverged run: lower model.lr, check the "
                        "data); %s", step, ", ".join(bad[:6]),
                        f"stopping after {self.max_nonfinite_steps} such iterations in a row"
                        if self.max_nonfinite_steps else "not stopping (max_nonfinite_steps=0)")
        if self.max_nonfinite_steps and self.streak >= self.max_nonfinite_steps:
            good = last_good_checkpoint(trainer)
            raise TrainingDiverged(
                f"training diverged: {self.streak} iterations in a row with non-finite values "
                f"(up to step {step}: {', '.join(bad[:3])}); last good checkpoint: "
                f"{good or 'none written'}; resume from it with a lower model.lr "
                f"(or set callbacks.divergence.max_nonfinite_steps)")


def last_good_checkpoint(trainer: pl.Trainer) -> str | None:
    """The newest checkpoint this process wrote with finite weights, else the one it resumed from."""
    io = getattr(trainer.strategy, "checkpoint_io", None)
    written = getattr(io, "last_written", None)
    return str(written) if written else (str(trainer.ckpt_path) if trainer.ckpt_path else None)
