"""Where the Hydra configs live, and the resolvers they use (auto hyperparameters, demo data,
the run dir of a Slurm job)."""

from __future__ import annotations

import os
from pathlib import Path

from omegaconf import OmegaConf

from .errors import ConfigError


def config_dir() -> Path:
    """$LG_CONFIG_DIR, else lightning_gans/conf of an installed wheel (the build copies the
    repository's conf/ there), else the checkout's top-level conf/ (source tree, editable install)."""
    env = os.environ.get("LG_CONFIG_DIR")
    candidates = [Path(env)] if env else []
    package = Path(__file__).resolve().parent
    candidates += [package / "conf", package.parent / "conf"]
    for path in candidates:
        if (path / "train.yaml").is_file():
            return path
    raise ConfigError(
        f"no Hydra configs found (looked in {', '.join(map(str, candidates))}); reinstall the "
        "package (its wheel carries them), `pip install -e .` a checkout, or set LG_CONFIG_DIR to a conf/"
    )


def hydra_train_main():
    """hydra.main of the train app: train.train_app, and commands/train's config-only app for
    completion, --cfg and --help."""
    import hydra

    return hydra.main(version_base="1.3", config_path=str(config_dir()), config_name="train")


def _world(devices, num_nodes) -> int:
    try:
        d = int(devices)
    except (TypeError, ValueError):
        d = 1  # "auto" and device lists: count one process per node for the recipe
    return max(d, 1) * max(int(num_nodes), 1)


def auto_hparams(resolution: int, gpus: int) -> dict:
    """StyleGAN2-ADA's "auto" config: settings that scale with resolution and GPU count."""
    res = int(resolution)
    mb = max(min(gpus * min(4096 // res, 32), 64), gpus)
    return {
        "batch_size": mb,
        "mbstd_group_size": min(mb // gpus, 4),
        "channel_base": int((1 if res >= 512 else 0.5) * 32768),
        "lr": 0.002 if res >= 1024 else 0.0025,
        "r1_gamma": 0.0002 * res**2 / mb,
        "ema_kimg": mb * 10 / 32,
    }


def _lg_auto(key: str, resolution, devices, num_nodes):
    values = auto_hparams(int(resolution), _world(devices, num_nodes))
    if key not in values:
        raise ConfigError(f"lg_auto: unknown key {key!r}; known: {sorted(values)}")
    return values[key]


def _lg_demo_data(resolution, count) -> str:
    from .data.demo import ensure_demo_data

    return str(ensure_demo_data(resolution=int(resolution), count=int(count)))


def slurm_job_key() -> str | None:
    """`<job id>`, or `<array job id>_<task id>` for an array task, of the Slurm batch job this
    process runs in; None outside Slurm and in interactive allocations.

    The same for every srun task of the job and for the job again after a requeue (Slurm keeps
    the id), which is what lets them share one run dir. Job names "bash" and "interactive" mark
    an interactive shell, as in Lightning's SLURMEnvironment: there one allocation runs many
    unrelated commands, so each keeps its own time-stamped dir.
    """
    if os.environ.get("SLURM_JOB_NAME") in ("bash", "interactive"):
        return None
    array_job, array_task = os.environ.get("SLURM_ARRAY_JOB_ID"), os.environ.get("SLURM_ARRAY_TASK_ID")
    if array_job and array_task:
        return f"{array_job}_{array_task}"
    return os.environ.get("SLURM_JOB_ID") or None


def _lg_run_dir(slurm_root: str, local_dir: str) -> str:
    """hydra.run.dir: `<slurm_root>/<job key>` inside a Slurm job, else `local_dir`."""
    key = slurm_job_key()
    return f"{slurm_root}/{key}" if key else str(local_dir)


def _lg_restart_version() -> str:
    """CSV logger version: "" for a first start, "restart<N>" after the N-th Slurm requeue, so a
    requeued job (same run dir) does not overwrite the metrics.csv of its earlier starts."""
    count = os.environ.get("SLURM_RESTART_COUNT", "0") or "0"
    return "" if count == "0" else f"restart{count}"


def register_resolvers() -> None:
    """Idempotent: Hydra apps and tests may call it more than once."""
    resolvers = {"lg_auto": _lg_auto, "lg_demo_data": _lg_demo_data, "lg_run_dir": _lg_run_dir,
                 "lg_restart_version": _lg_restart_version}
    for name, fn in resolvers.items():
        if not OmegaConf.has_resolver(name):
            OmegaConf.register_new_resolver(name, fn)
