"""`lightning-gans train`: compose the Hydra config, instantiate everything, fit.

Also runnable as `python -m lightning_gans.train OVERRIDES`, which is how Lightning starts the
other local DDP processes (imports are absolute for that reason).

Only composition lives here (the lightning-hydra-template way); models, data and callbacks
come from their config groups through hydra.utils.instantiate.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import hydra
import pytorch_lightning as pl
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from lightning_gans.callbacks.requeue import SyncedRequeue
from lightning_gans.checkpoint import safe_load
from lightning_gans.config import config_dir, register_resolvers, slurm_job_key
from lightning_gans.errors import find_user_error

register_resolvers()


def _loggers(cfg: DictConfig, wandb_id: str | None) -> list:
    loggers = []
    for lcfg in (cfg.get("logger") or {}).values():
        if lcfg is None:
            continue
        extra = {}
        if "WandbLogger" in str(lcfg.get("_target_", "")):
            os.environ.setdefault("WANDB_SILENT", "true")
            if wandb_id:  # a resumed run continues the same W&B run
                extra = {"id": wandb_id, "resume": "allow"}
        loggers.append(instantiate(lcfg, **extra))
    return loggers


def _with_data_labels(cfg: DictConfig, datamodule) -> dict:
    """Model overrides that come from the data (label count)."""
    if cfg.data.get("use_labels"):
        return {"c_dim": int(datamodule.c_dim)}
    return {}


def _resume_path(cfg: DictConfig, run_dir: Path) -> str | None:
    """The checkpoint this run continues from.

    A Slurm job that starts again (SLURM_RESTART_COUNT > 0: requeued by Lightning on SIGUSR1,
    after a node failure, by an admin) continues from the newest checkpoint its earlier starts
    left in its run dir: Lightning's hpc_ckpt_<N>.ckpt, or a periodic one when that is newer or
    there is no hpc checkpoint. Otherwise cfg.ckpt_path, which is where the job first started.
    Lightning alone would pick an hpc checkpoint only without a ckpt_path (a job started with
    ckpt_path=X would start over from X), even when older than the periodic ones, and never a
    periodic one; and the W&B run id in the checkpoint is needed before the loggers exist.
    """
    if slurm_job_key() is not None and int(os.environ.get("SLURM_RESTART_COUNT") or 0) > 0:
        # Written atomically (checkpoint_io.py): every *.ckpt is whole; mtime = when it was saved.
        ckpts = [p for p in run_dir.rglob("*.ckpt") if p.is_file()]
        if ckpts:
            return str(max(ckpts, key=lambda p: p.stat().st_mtime))
    return cfg.get("ckpt_path")


def fit(cfg: DictConfig, extra_callbacks: list | None = None) -> dict:
    """Run one training job; returns where its outputs are (run_dir, checkpoint, samples, ...)."""
    if cfg.get("threads"):
        torch.set_num_threads(int(cfg.threads))
    pl.seed_everything(int(cfg.seed), workers=False, verbose=False)
    run_dir = Path(cfg.run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)

    ckpt_path = _resume_path(cfg, run_dir)
    wandb_id = None
    if ckpt_path:
        wandb_id = safe_load(ckpt_path).get("wandb_run_id")  # also validates the file early

    datamodule = instantiate(cfg.data, _convert_="all")
    model = instantiate(cfg.model, _convert_="all", **_with_data_labels(cfg, datamodule))
    if cfg.get("init_from") and not ckpt_path:  # a resumed run already has its own weights
        from lightning_gans.modules.init_from import load_initial_weights

        load_initial_weights(model, cfg.init_from)
    loggers = _loggers(cfg, wandb_id)
    callbacks = [instantiate(c, _convert_="all") for c in (cfg.get("callbacks") or {}).values() if c]
    callbacks += extra_callbacks or []
    callbacks.append(SyncedRequeue())  # Slurm's SIGUSR1 -> hpc checkpoint + requeue, at a step boundary

    from lightning_gans.modules.checkpoint_io import AtomicCheckpointIO

    trainer: pl.Trainer = instantiate(
        cfg.trainer, logger=loggers or False, callbacks=callbacks, plugins=[AtomicCheckpointIO()]
    )
    resolved = OmegaConf.to_container(cfg, resolve=True)
    if trainer.is_global_zero:
        OmegaConf.save(OmegaConf.create(resolved), run_dir / "config.yaml")
    for logger in loggers:
        logger.log_hyperparams(resolved)

    trainer.fit(model, datamodule=datamodule, ckpt_path=ckpt_path)
    return _report(trainer, run_dir, callbacks, loggers)


def _report(trainer: pl.Trainer, run_dir: Path, callbacks: list, loggers: list) -> dict:
    out = {"run_dir": str(run_dir), "global_step": trainer.global_step}
    for cb in callbacks:
        if isinstance(cb, pl.callbacks.ModelCheckpoint):
            out["checkpoint"] = cb.last_model_path or cb.best_model_path
        if getattr(cb, "last_path", None):
            out["samples"] = str(cb.last_path)
    for logger in loggers:
        # Only rank 0 has a W&B run; the other DDP ranks hold a dummy whose `.dir` is a method.
        if type(logger).__name__ == "WandbLogger" and trainer.is_global_zero:
            out["wandb_dir"] = str(Path(logger.experiment.dir).parent)
            logger.experiment.finish()  # so a next run in this process (sweeps, tests) starts its own
    if trainer.is_global_zero:
        print("\nrun finished:", file=sys.stderr)
        for k, v in out.items():
            print(f"  {k:12s} {v}", file=sys.stderr)
        if "wandb_dir" in out:
            print(f"  upload the W&B run later with: wandb sync {out['wandb_dir']}", file=sys.stderr)
    return out


@hydra.main(version_base="1.3", config_path=str(config_dir()), config_name="train")
def train_app(cfg: DictConfig) -> dict:
    # The report is each job's return value, which a multirun's launcher collects (the result of
    # a submitit job on Slurm).
    try:
        return fit(cfg)
    except Exception as e:  # a user error deep inside instantiate arrives wrapped
        user_error = find_user_error(e)
        if user_error is None:
            raise
        print(f"error: {user_error}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    train_app()
