"""Without a job, the rules the job tests rely on, for cases they do not reach: the run dir of a
Slurm job (array tasks, interactive allocations), the checkpoint a restarted job resumes from
(started with ckpt_path=, a periodic checkpoint newer than the hpc one), and SIGUSR1 deferred to
the end of the batch."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from lightning_gans.callbacks.requeue import SyncedRequeue
from lightning_gans.config import register_resolvers
from lightning_gans.train import _resume_path

SLURM_VARS = ("SLURM_JOB_ID", "SLURM_ARRAY_JOB_ID", "SLURM_ARRAY_TASK_ID", "SLURM_JOB_NAME", "SLURM_RESTART_COUNT")


@pytest.fixture
def no_slurm(monkeypatch):
    for var in SLURM_VARS:
        monkeypatch.delenv(var, raising=False)
    return monkeypatch


def run_dir() -> str:
    register_resolvers()
    return OmegaConf.create({"d": "${lg_run_dir:outputs/slurm,outputs/local}"}).d


@pytest.mark.parametrize("env, expected", [
    ({}, "outputs/local"),
    ({"SLURM_JOB_ID": "42", "SLURM_JOB_NAME": "lg-train"}, "outputs/slurm/42"),
    # An array task has its own job id, but <array>_<task> is what squeue and the logs show.
    ({"SLURM_JOB_ID": "45", "SLURM_ARRAY_JOB_ID": "43", "SLURM_ARRAY_TASK_ID": "2"}, "outputs/slurm/43_2"),
    # `salloc` / `srun --pty bash`: many runs in one allocation, each its own dir (as Lightning,
    # which does not auto-requeue these either).
    ({"SLURM_JOB_ID": "44", "SLURM_JOB_NAME": "bash"}, "outputs/local"),
    ({"SLURM_JOB_ID": "44", "SLURM_JOB_NAME": "interactive"}, "outputs/local"),
])
def test_run_dir_keyed_on_the_job(no_slurm, env, expected):
    for k, v in env.items():
        no_slurm.setenv(k, v)
    assert run_dir() == expected


def test_restarted_job_resumes_from_its_newest_checkpoint(no_slurm, tmp_path):
    started = tmp_path / "where_the_job_started.ckpt"  # train.py refuses a ckpt_path that is no file
    started.write_bytes(b"")
    os.utime(started, (500, 500))
    cfg = OmegaConf.create({"ckpt_path": str(started)})
    assert _resume_path(cfg, tmp_path) == cfg.ckpt_path
    (tmp_path / "checkpoints").mkdir()
    for i, name in enumerate(["checkpoints/step0000020.ckpt", "hpc_ckpt_1.ckpt", "hpc_ckpt_2.ckpt",
                              "checkpoints/last.ckpt"]):
        (tmp_path / name).write_bytes(b"")
        os.utime(tmp_path / name, (1000 + i, 1000 + i))
    # Outside Slurm, and in a job's first start, the files are not this start's to resume
    # from (an earlier run that reused the dir, a job id the cluster handed out again).
    assert _resume_path(cfg, tmp_path) == cfg.ckpt_path
    no_slurm.setenv("SLURM_JOB_ID", "42")
    assert _resume_path(cfg, tmp_path) == cfg.ckpt_path
    no_slurm.setenv("SLURM_RESTART_COUNT", "0")
    assert _resume_path(cfg, tmp_path) == cfg.ckpt_path
    # A restart: the newest checkpoint wins over ckpt_path (only where the job first started),
    # whether it is a periodic one (a node failure after an earlier USR1 requeue) ...
    no_slurm.setenv("SLURM_RESTART_COUNT", "2")
    assert _resume_path(cfg, tmp_path) == str(tmp_path / "checkpoints" / "last.ckpt")
    # ... or the hpc checkpoint of the last USR1.
    os.utime(tmp_path / "hpc_ckpt_2.ckpt", (2000, 2000))
    assert _resume_path(OmegaConf.create({"ckpt_path": None}), tmp_path) == str(tmp_path / "hpc_ckpt_2.ckpt")


class _Strategy:
    def __init__(self):
        self.decisions = []

    def reduce_boolean_decision(self, decision: bool, all: bool = True) -> bool:
        self.decisions.append((decision, all))
        return decision  # one process: any() of one decision


class _Trainer:
    global_step = 7

    def __init__(self):
        self.strategy = _Strategy()


def test_usr1_runs_the_requeue_handler_at_the_next_batch_end():
    calls = []
    previous = signal.signal(signal.SIGUSR1, lambda signum, frame: calls.append(signum))  # "Lightning's"
    try:
        trainer, cb = _Trainer(), SyncedRequeue()
        cb.on_train_start(trainer, None)
        cb.on_train_start(trainer, None)  # twice (a second fit): still defers to Lightning's, not to itself
        os.kill(os.getpid(), signal.SIGUSR1)
        assert calls == [], "the handler must not run where the signal finds the process"
        cb.on_train_batch_end(trainer, None, None, None, 0)
        assert calls == [signal.SIGUSR1]
        # every batch end asks all ranks (any()), so they run the handler at the same step
        cb.on_train_batch_end(trainer, None, None, None, 1)
        assert calls == [signal.SIGUSR1] and trainer.strategy.decisions == [(True, False), (False, False)]
        cb.on_train_end(trainer, None)
        cb.on_train_batch_end(trainer, None, None, None, 2)
        assert len(trainer.strategy.decisions) == 2, "nothing to agree on after training"
    finally:
        signal.signal(signal.SIGUSR1, previous)


def test_no_requeue_handler_no_deferral():
    previous = signal.signal(signal.SIGUSR1, signal.SIG_DFL)  # not a Slurm job: Lightning installs none
    try:
        trainer, cb = _Trainer(), SyncedRequeue()
        cb.on_train_start(trainer, None)
        assert signal.getsignal(signal.SIGUSR1) == signal.SIG_DFL
        cb.on_train_batch_end(trainer, None, None, None, 0)
        assert trainer.strategy.decisions == [], "no collective per step outside Slurm"
    finally:
        signal.signal(signal.SIGUSR1, previous)


def test_process_group_timeout_setting():
    """trainer.strategy.timeout_s -> the process group's timeout (test_two_nodes.py's node-death
    test sees gloo give up after it); the default bounds a lost node's hang well below torch's
    30 min; nonsense is a ConfigError naming the key."""
    from datetime import timedelta

    from lightning_gans.errors import ConfigError
    from lightning_gans.modules.strategy import DEFAULT_TIMEOUT_S, GANDDPStrategy

    cfg = OmegaConf.load(Path(__file__).resolve().parents[2] / "conf" / "trainer" / "ddp.yaml")
    assert cfg.strategy.timeout_s == DEFAULT_TIMEOUT_S < 1800
    assert GANDDPStrategy()._timeout == timedelta(seconds=DEFAULT_TIMEOUT_S)
    assert GANDDPStrategy(timeout_s=20)._timeout == timedelta(seconds=20)
    for bad in (0, -5, "soon", float("inf")):
        with pytest.raises(ConfigError, match="trainer.strategy.timeout_s"):
            GANDDPStrategy(timeout_s=bad)
