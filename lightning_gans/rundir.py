"""One live training run per run dir, and a resumed run that keeps its earlier metrics.

`RunDirLock`: `<run dir>/.lg-run.lock` names its holder (pid, host, Slurm job); a second run
started in the same dir while the holder lives is refused with one line. A lock left by a killed
run is recovered: its process is gone (same host), nobody refreshed it for LOCK_STALE_S (another
host of a shared file system), or it belongs to an earlier start of the same Slurm job (a
requeue). Built on the kernel-build lock (ops/_lock.py).

`keep_csv_rows`: Lightning's CSVLogger deletes an existing metrics.csv when it starts; a resumed
run appends to it instead.
"""

from __future__ import annotations

import csv
import json
import math
import os
import socket
from pathlib import Path

from .errors import ConfigError
from .ops._lock import LOCK_STALE_S, BuildLock

LOCK_NAME = ".lg-run.lock"


class RunDirBusy(ConfigError):
    """Another live run holds the run dir."""


def _slurm() -> tuple[str | None, int]:
    from .config import slurm_job_key

    return slurm_job_key(), int(os.environ.get("SLURM_RESTART_COUNT") or 0)


def launch_rank() -> int:
    """This process's global rank as the launcher set it (0 outside DDP), before a Trainer exists."""
    for var in ("RANK", "SLURM_PROCID", "LOCAL_RANK"):
        if os.environ.get(var, "").isdigit():
            return int(os.environ[var])
    return 0


class RunDirLock(BuildLock):
    """Non-blocking exclusive lock of a run dir (see the module docstring)."""

    def __init__(self, run_dir: str | os.PathLike, stale_after: float = LOCK_STALE_S):
        self.run_dir = Path(run_dir)
        super().__init__(self.run_dir / LOCK_NAME, timeout=0.0, stale_after=stale_after)

    def acquire(self) -> None:
        job, restart = _slurm()
        info = {"pid": os.getpid(), "host": socket.gethostname(), "token": self.token,
                "slurm_job": job, "slurm_restart": restart}
        for _ in range(3):  # a lock judged stale and removed: try again
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                if self._remove_if_stale() or self._earlier_start_of_this_job(job, restart):
                    continue
                holder = self._read().strip() or "another process"
                raise RunDirBusy(
                    f"run dir {self.run_dir} is in use by another live run ({holder}); wait for it to "
                    f"end or give another dir (hydra.run.dir=...); if no run is using it, delete "
                    f"{self.path}") from None
            except PermissionError:
                raise ConfigError(f"run dir {self.run_dir} is not writable; give a writable "
                                  "hydra.run.dir=... (or fix its permissions)") from None
            self._hold(fd, info)
            return
        raise RunDirBusy(f"could not take the lock {self.path}; delete it if no run uses {self.run_dir}")

    def _earlier_start_of_this_job(self, job: str | None, restart: int) -> bool:
        """The holder is an earlier start of this Slurm job (it was requeued): take the lock over."""
        if job is None:
            return False
        try:
            holder = json.loads(self._read())
        except ValueError:
            return False
        if not isinstance(holder, dict) or holder.get("slurm_job") != job:
            return False
        if int(holder.get("slurm_restart") or 0) >= restart:
            return False  # the same start: another rank's lock, or a genuinely live run
        self.path.unlink(missing_ok=True)
        return True


def keep_csv_rows(logger) -> bool:
    """Make a CSVLogger append to an existing metrics.csv (a resumed run) instead of deleting it.
    Call before anything logs. True when there were rows to keep."""
    from lightning_fabric.loggers.csv_logs import _ExperimentWriter

    path = Path(logger.log_dir) / _ExperimentWriter.NAME_METRICS_FILE
    if not path.is_file():
        return False
    with open(path, newline="") as f:
        header = next(csv.reader(f), None)
    if not header:
        return False
    check = _ExperimentWriter._check_log_dir_exists
    _ExperimentWriter._check_log_dir_exists = lambda self: None  # the one that deletes the file
    try:
        experiment = logger.experiment
    finally:
        _ExperimentWriter._check_log_dir_exists = check
    # Lightning writes the header sorted; keeping it means rows append under it, and a new key
    # makes Lightning rewrite the file (old rows included) with the wider header.
    experiment.metrics_keys = list(header)
    return True


def make_run_dir(run_dir: str | os.PathLike) -> Path:
    """Create the run dir; one line when it cannot be (not writable, a file in the way)."""
    path = Path(run_dir)
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe = path / f".lg-write-test{os.getpid()}"
        probe.touch()
        probe.unlink()
    except PermissionError:
        raise ConfigError(f"run dir {path} is not writable: give a writable hydra.run.dir=... "
                          "(or fix the folder's permissions)") from None
    except (FileExistsError, NotADirectoryError):
        raise ConfigError(f"run dir {path}: it or a parent is a file; give a folder path as "
                          "hydra.run.dir=...") from None
    except OSError as e:
        raise ConfigError(f"run dir {path} cannot be created ({e.strerror}): give another "
                          "hydra.run.dir=...") from None
    return path


def _get(cfg, key: str):
    """cfg value at dotted `key` (None when absent); a resolution failure is a ConfigError."""
    from omegaconf import OmegaConf

    try:
        return OmegaConf.select(cfg, key, default=None, throw_on_missing=True)
    except Exception as e:  # noqa: BLE001 - interpolation of a wrong-typed value, missing value
        from .errors import one_line

        if type(e).__name__ == "MissingMandatoryValue":
            raise ConfigError(f"{key} is not set: give {key}=... on the command line") from None
        raise ConfigError(f"{key}: {one_line(e, 1)}; check the values it is computed from") from None


def _number(cfg, key: str, kind: type, *, minimum=None, allow=(), what: str = "") -> None:
    value = _get(cfg, key)
    if value is None or value in allow:
        return
    ok = isinstance(value, (int, float)) and not isinstance(value, bool)
    if ok and kind is int:
        ok = float(value).is_integer()
    if ok:
        x = float(value)
        ok = math.isfinite(x) and (minimum is None or x >= minimum)
    if not ok:
        need = what or (f"{'an integer' if kind is int else 'a number'}"
                        + (f" >= {minimum}" if minimum is not None else ""))
        raise ConfigError(f"{key}={value!r} is not valid: give {need}")


def check_train_config(cfg) -> None:
    """Wrong-typed or impossible values of the common keys, each as one line naming the key,
    before anything is built (so e.g. no demo data is made for a resolution no model has)."""
    from .errors import check_env

    check_env()
    res = _get(cfg, "model.resolution")
    if res is not None:
        if isinstance(res, bool) or not isinstance(res, int) or res < 4 or res & (res - 1):
            raise ConfigError(f"model.resolution={res!r} is not valid: give a power of two >= 4 "
                              "(e.g. 32, 256, 1024)")
    _number(cfg, "model.batch_size", int, minimum=1)
    _number(cfg, "model.lr", float, what="a positive number (e.g. 0.002)")
    lr = _get(cfg, "model.lr")
    if isinstance(lr, (int, float)) and not isinstance(lr, bool) and not lr > 0:
        raise ConfigError(f"model.lr={lr!r} is not valid: give a positive number (e.g. 0.002)")
    _number(cfg, "model.mbstd_group_size", int, minimum=0)
    _number(cfg, "data.num_workers", int, minimum=0)
    _number(cfg, "data.batch_size", int, minimum=1)
    steps = _get(cfg, "trainer.max_steps")
    _number(cfg, "trainer.max_steps", int, minimum=-1)
    if steps == 0:
        raise ConfigError("trainer.max_steps=0 trains nothing (and saves nothing): give a positive "
                          "number of steps, or -1 to stop by trainer.max_epochs")
    if cfg.get("data") is not None:
        from omegaconf import OmegaConf

        # the raw value: resolving it (even `in`) would build the demo data (${lg_demo_data:...})
        if OmegaConf.to_container(cfg.data, resolve=False).get("shards") == "???":
            raise ConfigError("data=shards needs data.shards=DIR: give a folder from `lightning-gans shards`, "
                              "a list of .tar files or a brace pattern")
    w_hpf = _get(cfg, "model.w_hpf")
    if isinstance(w_hpf, (int, float)) and not isinstance(w_hpf, bool) and w_hpf > 0:
        # the module loads the FAN at its first step; a sweep over models learns it here, before any job
        from .pretrained.weights import training_fan_weights

        training_fan_weights(_get(cfg, "model.fan_weights"), _get(cfg, "model.name"), w_hpf)
    group, batch = _get(cfg, "model.mbstd_group_size"), _get(cfg, "model.batch_size")
    if isinstance(group, int) and isinstance(batch, int) and group > 1:
        devices, nodes = _get(cfg, "trainer.devices"), _get(cfg, "trainer.num_nodes") or 1
        world = (int(devices) if isinstance(devices, int) and devices > 0 else 1) * int(nodes)
        per_rank = batch // world if batch % world == 0 else batch
        g = min(group, per_rank)
        if per_rank % g:
            raise ConfigError(
                f"model.mbstd_group_size={group} does not divide the per-GPU batch {per_rank} "
                f"(model.batch_size={batch} over {world} processes): use a divisor of {per_rank}, "
                "e.g. model.mbstd_group_size=" + str(max(d for d in range(1, g + 1) if per_rank % d == 0)))


def precheck_hydra_run_dir(argv: list[str]) -> None:
    """Hydra creates the run dir before the job starts and reports a failure there as a
    traceback: check a `hydra.run.dir=` override (or, without one, the current folder, where the
    default outputs/ goes) first, for one line instead."""
    if any(a in ("-m", "--multirun") for a in argv) or any(a in ("--cfg", "-c", "--help", "-h") for a in argv):
        return
    given = [a.split("=", 1)[1] for a in argv if a.startswith(("hydra.run.dir=", "++hydra.run.dir="))]
    if given and "${" not in given[-1]:
        make_run_dir(given[-1])
    elif not given and not os.access(os.getcwd(), os.W_OK):
        raise ConfigError(f"the current folder {os.getcwd()} is not writable (runs go to outputs/ "
                          "there): give hydra.run.dir=A_WRITABLE_DIR or run from another folder")
