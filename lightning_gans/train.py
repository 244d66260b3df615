"""`lightning-gans train`: compose the Hydra config, instantiate everything, fit.

Also runnable as `python -m lightning_gans.train OVERRIDES`, which is how Lightning starts the
other local DDP processes (imports are absolute for that reason).

Only composition lives here (the lightning-hydra-template way); models, data and callbacks
come from their config groups through hydra.utils.instantiate.
"""

from __future__ import annotations

import logging
import os
import warnings
from pathlib import Path

import pytorch_lightning as pl
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from lightning_gans.callbacks.requeue import SyncedRequeue
from lightning_gans.checkpoint import safe_load
from lightning_gans.config import hydra_train_main, register_resolvers, slurm_job_key
from lightning_gans.errors import ConfigError, UserExit, find_user_error

register_resolvers()
log = logging.getLogger("lightning_gans.train")


def _hydra_job() -> dict:
    """The Hydra runtime facts W&B names runs after: the chosen config groups, the task's
    overrides, and (in a multirun) the sweep dir and job number. Empty outside a Hydra app."""
    from hydra.core.hydra_config import HydraConfig

    if not HydraConfig.initialized():
        return {}
    hc = HydraConfig.get()
    multirun = str(hc.mode) == "RunMode.MULTIRUN"
    return {"choices": dict(hc.runtime.choices), "overrides": list(hc.overrides.task),
            "sweep_dir": str(hc.sweep.dir) if multirun else None, "num": hc.job.num if multirun else None,
            "swept": _swept_keys(Path(hc.sweep.dir)) if multirun else None}


def _swept_keys(sweep_dir: Path) -> set[str] | None:
    """The keys the multirun sweeps over (`a=1,2`, `range(...)`, ...), from the command line
    Hydra keeps in <sweep dir>/multirun.yaml (written before any job starts, also on Slurm);
    None if it cannot be read."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    try:
        task = OmegaConf.load(sweep_dir / "multirun.yaml").hydra.overrides.task
        parsed = OverridesParser.create().parse_overrides([str(o) for o in task])
    except Exception:  # a damaged or foreign file: name the run after all its overrides
        return None
    return {o.key_or_group for o in parsed if o.is_sweep_override()}


def wandb_run_fields(cfg: DictConfig, job: dict) -> dict:
    """name / group / tags / job_type of the W&B run, where the logger config leaves them null.

    name: the experiment (else the model config) and, in a sweep, the point's overrides; group:
    one per Hydra multirun (its sweep dir), so a sweep's runs show together; tags: the chosen
    model / data / experiment configs; job_type: train, finetune (init_from) or resume.
    """
    choices = job.get("choices") or {}
    experiment = choices.get("experiment")
    model = choices.get("model") or cfg.model.get("name") or "gan"
    base = experiment if experiment and experiment != "None" else model
    fields: dict = {"name": base}
    if job.get("sweep_dir") is not None:
        swept = job.get("swept")
        point = [o for o in job["overrides"] if not o.startswith(("experiment=", "hydra.", "run_dir="))
                 and (swept is None or o.split("=", 1)[0].lstrip("+~") in swept)]
        fields["name"] = f"{base}-{job['num']}" + (f" {','.join(point)}" if point else "")
        fields["group"] = job["sweep_dir"]
    fields["tags"] = [f"{g}:{choices[g]}" for g in ("model", "data", "experiment")
                      if choices.get(g) not in (None, "None")] or [f"model:{model}"]
    fields["job_type"] = "resume" if cfg.get("ckpt_path") else "finetune" if cfg.get("init_from") else "train"
    return fields


def _loggers(cfg: DictConfig, wandb_id: str | None) -> list:
    loggers = []
    for lcfg in (cfg.get("logger") or {}).values():
        if lcfg is None:
            continue
        extra: dict = {}
        log_model = False
        if "WandbLogger" in str(lcfg.get("_target_", "")):
            os.environ.setdefault("WANDB_SILENT", "true")
            extra = {k: v for k, v in wandb_run_fields(cfg, _hydra_job()).items() if lcfg.get(k) is None}
            if wandb_id:  # a resumed run continues the same W&B run
                extra.update(id=wandb_id, resume="allow")
            log_model = lcfg.get("log_model", False)
            if lcfg.get("offline") and log_model:
                # Lightning refuses log_model offline, yet an offline run records artifacts like
                # any other data and `wandb sync` uploads them: set the flag after construction.
                extra["log_model"] = False
            else:
                log_model = False
        logger = instantiate(lcfg, **extra)
        if getattr(logger, "_wandb_init", {}).get("anonymous", 0) is None:
            # Lightning passes anonymous=None to wandb.init, which warns about the (deprecated)
            # setting whenever the key is present: leave it out unless it was set.
            del logger._wandb_init["anonymous"]
        if log_model:
            logger._log_model = log_model  # WandbLogger's own switch: after_save_checkpoint logs artifacts
        loggers.append(logger)
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
        newest = _newest_checkpoint(run_dir)
        if newest:
            return newest
    path = cfg.get("ckpt_path")
    if path == "last":  # Lightning's meaning: the run dir's last checkpoint, else a fresh start
        ckpt_cfg = (cfg.get("callbacks") or {}).get("checkpoint") or {}
        last = Path(ckpt_cfg.get("dirpath") or run_dir / "checkpoints") / "last.ckpt"
        found = str(last) if last.is_file() else _newest_checkpoint(run_dir)
        if found is None:
            log.warning("ckpt_path=last: no checkpoint in %s yet, starting from scratch (set "
                        "hydra.run.dir to the run dir to continue)", run_dir)
        return found
    if path and not Path(path).is_file():
        raise ConfigError(f"ckpt_path={path}: no such checkpoint file (or use ckpt_path=last)")
    return path


def _newest_checkpoint(run_dir: Path) -> str | None:
    # Written atomically (checkpoint_io.py): every *.ckpt is whole; mtime = when it was saved.
    ckpts = [p for p in run_dir.rglob("*.ckpt") if p.is_file()]
    return str(max(ckpts, key=lambda p: p.stat().st_mtime)) if ckpts else None


# Lightning warnings that say nothing about a run of ours, each silenced here and why:
_QUIET = (
    # The EMA copies (GANModule.ema_attributes) and frozen helpers are in eval mode on purpose.
    r"Found \d+ module\(s\) in eval mode",
    # Our training_step runs the whole iteration; a checkpoint after it is what resumes exactly.
    r"Using ModelCheckpoint with manual optimization",
    # torch's pytree deprecation inside Lightning's own code (pytorch_lightning/utilities/_pytree.py).
    r"`isinstance\(treespec, LeafSpec\)` is deprecated",
)


def quiet_lightning() -> None:
    for message in _QUIET:
        warnings.filterwarnings("ignore", message=message)
    # The srun hint comes from two call sites (Trainer and strategy setup): show it once.
    warnings.filterwarnings("once", message=r"The `srun` command is available")
    for name in ("pytorch_lightning.utilities.rank_zero", "lightning_fabric.utilities.rank_zero",
                 "lightning_utilities.core.rank_zero"):
        logger = logging.getLogger(name)
        if not any(isinstance(f, _NoAdverts) for f in logger.filters):
            logger.addFilter(_NoAdverts())


class _NoAdverts(logging.Filter):
    """Drops Lightning's "💡 Tip: ... try installing litlogger/litmodels" lines (adverts for its
    hosted platform, printed on every start; nothing about the run)."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("💡 Tip:")


def fit(cfg: DictConfig, extra_callbacks: list | None = None) -> dict:
    """Run one training job; returns where its outputs are (run_dir, checkpoint, samples, ...)."""
    # issue 19: one live run per run dir (rank 0 holds <run dir>/.lg-run.lock; stale ones recovered)
    from lightning_gans.rundir import RunDirLock, check_train_config, launch_rank, make_run_dir

    check_train_config(cfg)
    lock = RunDirLock(make_run_dir(cfg.run_dir)) if launch_rank() == 0 else None
    if lock is not None:
        lock.acquire()
    try:
        return _fit(cfg, extra_callbacks)
    finally:
        if lock is not None:
            lock.release()


def _fit(cfg: DictConfig, extra_callbacks: list | None = None) -> dict:
    quiet_lightning()
    if cfg.get("threads"):
        torch.set_num_threads(int(cfg.threads))
    pl.seed_everything(int(cfg.seed), workers=False, verbose=False)
    run_dir = Path(cfg.run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)

    ckpt_path = _resume_path(cfg, run_dir)
    wandb_id = None
    if ckpt_path:
        resume_ckpt = safe_load(ckpt_path)  # also validates the file early
        wandb_id = resume_ckpt.get("wandb_run_id")

    datamodule = instantiate(cfg.data, _convert_="all")
    model = instantiate(cfg.model, _convert_="all", **_with_data_labels(cfg, datamodule))
    if ckpt_path:  # issue 19: another model/resolution is one line, not every key name
        from lightning_gans.checkpoint import check_resume

        check_resume(model, resume_ckpt, ckpt_path)
        del resume_ckpt
    if cfg.get("init_from") and not ckpt_path:  # a resumed run already has its own weights
        from lightning_gans.modules.init_from import load_initial_weights

        load_initial_weights(model, cfg.init_from)
    loggers = _loggers(cfg, wandb_id)
    if ckpt_path:  # issue 19: a resumed run appends to csv/metrics.csv instead of deleting it
        from lightning_gans.rundir import keep_csv_rows, launch_rank

        for logger in loggers:  # rank 0 only: other ranks must not make a writer of their own
            if isinstance(logger, pl.loggers.CSVLogger) and launch_rank() == 0:
                keep_csv_rows(logger)
    callbacks = [instantiate(c, _convert_="all") for c in (cfg.get("callbacks") or {}).values() if c]
    callbacks += extra_callbacks or []
    callbacks.append(SyncedRequeue())  # Slurm's SIGUSR1 -> hpc checkpoint + requeue, at a step boundary

    from lightning_gans.modules.checkpoint_io import AtomicCheckpointIO

    trainer: pl.Trainer = instantiate(
        cfg.trainer, logger=loggers or False, callbacks=callbacks, plugins=[AtomicCheckpointIO()]
    )
    if str(trainer.precision) == "bf16-mixed" and trainer.strategy.root_device.type == "cpu" and trainer.is_global_zero:
        from lightning_gans.nn.precision import cpu_bf16_slow_note

        if note := cpu_bf16_slow_note():
            log.warning(note)
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
            if not getattr(logger, "service_lost", False):  # gone: nothing to close (callbacks/wandb_logger.py)
                logger.experiment.finish()  # so a next run in this process (sweeps, tests) starts its own
    if trainer.is_global_zero:  # through logging: also in Hydra's <run dir>/train.log
        lines = ["run finished:", *(f"  {k:12s} {v}" for k, v in out.items())]
        if "wandb_dir" in out:
            lines.append(f"  upload the W&B run later with: wandb sync {out['wandb_dir']}")
        log.info("\n".join(lines))
    return out


def _route_lightning_logs() -> None:
    """Lightning gives its logger a stderr handler of its own and stops propagation when it is
    imported before logging is configured (always, here): hand its lines to the root logger,
    which Hydra sends to the console and to <run dir>/train.log."""
    for name in ("pytorch_lightning", "lightning.pytorch", "lightning.fabric"):
        lg = logging.getLogger(name)
        lg.handlers.clear()
        lg.propagate = True


@hydra_train_main()
def train_app(cfg: DictConfig) -> dict:
    # The report is each job's return value, which a multirun's launcher collects (the result of
    # a submitit job on Slurm).
    _route_lightning_logs()
    try:
        return fit(cfg)
    except Exception as e:  # a user error deep inside instantiate arrives wrapped
        user_error = find_user_error(e)
        if user_error is None:
            raise
        raise UserExit(user_error) from None
