"""Lightning's WandbLogger, made unable to end a training run.

W&B runs its service (wandb-core) as a child process of rank 0. Whatever signals the whole job
step -- Slurm's SIGTERM on a requeue, a preemption, `scancel`, the time limit -- ends that service
too, and from then on each W&B call raises ConnectionResetError ("Connection lost"). Raised in the
middle of a step, that used to crash rank 0 before the step boundary where the SIGTERM checkpoint
is written (callbacks/requeue.py), so the steps since the last checkpoint were lost; the other
ranks then failed in their next collective ("Connection closed by peer"). Seen on the local Slurm
in 2 of the 3 USR1 requeues whose logs were read. Here a lost service ends W&B logging for the
run with one warning; training, the CSV log and the checkpoints go on.
"""

from __future__ import annotations

import functools
import logging
from typing import Any

from pytorch_lightning.loggers import WandbLogger as _LightningWandbLogger

log = logging.getLogger(__name__)


def _guarded(method):
    """`method`, doing nothing once the W&B service is gone; the first ConnectionError says so."""

    @functools.wraps(method)
    def call(self: WandbLogger, *args: Any, **kwargs: Any) -> Any:
        if self.service_lost:
            return None
        try:
            return method(self, *args, **kwargs)
        except ConnectionError as e:  # ConnectionResetError, BrokenPipeError: wandb-core has exited
            self.service_lost = True
            log.warning("W&B logging stops for this run: its service process is gone (%s: %s; a SIGTERM to "
                        "the job ends it too); training, checkpoints and the CSV log go on, and the offline "
                        "run so far can still be synced", type(e).__name__, e)
            return None

    return call


class WandbLogger(_LightningWandbLogger):
    """pytorch_lightning.loggers.WandbLogger whose logging calls cannot raise once the W&B service
    process has exited (see the module docstring). Same arguments."""

    service_lost = False

    log_metrics = _guarded(_LightningWandbLogger.log_metrics)
    log_hyperparams = _guarded(_LightningWandbLogger.log_hyperparams)
    log_image = _guarded(_LightningWandbLogger.log_image)
    log_table = _guarded(_LightningWandbLogger.log_table)
    log_text = _guarded(_LightningWandbLogger.log_text)
    after_save_checkpoint = _guarded(_LightningWandbLogger.after_save_checkpoint)
    finalize = _guarded(_LightningWandbLogger.finalize)
