"""Slurm auto-requeue at a step boundary that all ranks agree on.

Lightning (2.6) saves the hpc checkpoint inside its SIGUSR1 handler, so each rank saves wherever
the signal happens to find it. With several ranks that is a deadlock: one rank enters the
checkpoint's collectives (the RNG-state gather, the save barrier) while another waits in a
gradient all_reduce of the step -- seen here in 1 of 5 `scancel --signal=USR1` of a 2-rank job,
which then hangs until the time limit kills it without the checkpoint. Even with one rank the
save can fall between the G and the D step, and the resume would not be exact.

This callback leaves Lightning's handler in charge but only records the signal; after each
training batch the ranks agree (one scalar all-reduce) whether any got it, and all of them run
Lightning's handler there together: hpc_ckpt_<N>.ckpt in the run dir, then `scontrol requeue`
on rank 0. Training goes on until Slurm's SIGTERM ends it, so if the requeue fails the job still
runs to its time limit rather than stopping early as if finished.
"""

from __future__ import annotations

import logging
import signal
from pathlib import Path

import pytorch_lightning as pl
from pytorch_lightning.utilities import rank_zero_info
from pytorch_lightning.utilities.exceptions import SIGTERMException

log = logging.getLogger(__name__)
SIGTERM_EXIT = 128 + signal.SIGTERM  # what a shell reports for a process ended by SIGTERM


class SyncedRequeue(pl.Callback):
    """Defer whatever handles `signum` at train start (Lightning's SLURM auto-requeue handler)
    to the next end of a training batch, on all ranks at once. Does nothing when no handler is
    installed (not a Slurm job, or SLURMEnvironment(auto_requeue=False))."""

    def __init__(self, signum: int = signal.SIGUSR1):
        self.signum = signal.Signals(signum)
        self._handler = None  # the handler that was installed, run at the next batch end
        self._received = False

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        # Lightning installs its handlers in Trainer._run, just before the loop that calls this.
        handler = signal.getsignal(self.signum)
        if callable(handler) and handler != self._note:  # bound methods: equal, never identical
            self._handler = handler
            self._received = False
            signal.signal(self.signum, self._note)

    def _note(self, signum, frame) -> None:
        # Runs between two bytecodes of whatever the main thread is doing: only set a flag.
        self._received = True

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module, outputs, batch, batch_idx) -> None:
        if self._handler is None:
            return
        # any(): the signal may reach the ranks on either side of this point.
        if trainer.strategy.reduce_boolean_decision(self._received, all=False):
            self._received = False
            rank_zero_info(f"{self.signum.name} received: checkpoint and requeue after step {trainer.global_step}")
            self._handler(self.signum, None)

    def on_exception(self, trainer: pl.Trainer, pl_module, exception: BaseException) -> None:
        """SIGTERM (Slurm's end of job, `kill`, a preemption): Lightning stops at the next step
        boundary with SIGTERMException, a SystemExit of status 0, and saves nothing. Save as on
        SIGUSR1 (last.ckpt of the checkpoint callback, else the hpc checkpoint), say so, and exit
        with 143 so schedulers and scripts see the run did not finish."""
        if not isinstance(exception, SIGTERMException):
            return
        path = None
        ckpt = trainer.checkpoint_callback
        if isinstance(ckpt, pl.callbacks.ModelCheckpoint) and ckpt.dirpath:
            path = Path(ckpt.dirpath) / f"{ckpt.CHECKPOINT_NAME_LAST}{ckpt.FILE_EXTENSION}"
            # Recorded as the callback's own last checkpoint (its state goes into this file):
            # resumed from it, the callback overwrites last.ckpt instead of taking the name for a
            # file of someone else's and writing last-v1.ckpt, leaving last.ckpt (what
            # ckpt_path=last reads) at this step.
            ckpt.last_model_path = str(path)
        elif trainer.default_root_dir:
            path = Path(trainer._checkpoint_connector.hpc_save_path(trainer.default_root_dir))
        step = trainer.global_step
        try:
            if path is not None:
                trainer.save_checkpoint(path)
        except Exception as e:  # noqa: BLE001 - say why, still exit non-zero
            log.error("SIGTERM received at step %d; saving %s failed (%s)", step, path, e)
        else:
            if trainer.is_global_zero:
                where = f"saved {path}; resume with ckpt_path={path}" if path else "nothing saved"
                log.warning("SIGTERM received: stopped after step %d, %s; exiting with status %d",
                            step, where, SIGTERM_EXIT)
        exception.code = SIGTERM_EXIT

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        # A signal after the last batch has no step boundary left to run at; Lightning's own
        # teardown puts the original handlers back.
        self._handler = None
