"""A Hydra multirun through conf/hydra/launcher/slurm.yaml (hydra-submitit-launcher) on the real
local Slurm: one job per sweep point, each in its own run dir with its own config, and the
submitting process collects every job's result."""

from __future__ import annotations

import pickle
import subprocess
import sys
import time
from pathlib import Path

from omegaconf import OmegaConf

from lightning_gans.checkpoint import safe_load


def test_multirun_submits_one_job_per_point(slurm, train_jobs, tmp_path):
    sweep = tmp_path / "sweep"
    gammas = (1.0, 10.0)
    # trainer=ddp: 2 ranks per point, as srun tasks of the point's job (tasks_per_node = trainer.devices).
    cmd = [str(Path(sys.executable).parent / "lightning-gans"), "train", "-m", "hydra/launcher=slurm", *train_jobs.demo,
           "trainer=ddp", "logger=csv", "trainer.max_steps=3", f"model.r1_gamma={','.join(map(str, gammas))}",
           f"hydra.sweep.dir={sweep}", "hydra.launcher.timeout_min=10"]
    t0 = time.monotonic()
    # The launcher waits for the jobs; it learns their states from sacct (slurm/local/README.md).
    out = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    print(f"2-point sweep: {time.monotonic() - t0:.1f} s from `-m` to results")
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-4000:]

    # One array job, one array task per point (submitit's folder per job: <array id>_<task>).
    job_dirs = sorted(p for p in (sweep / ".submitit").iterdir() if p.is_dir() and "_" in p.name)
    assert [p.name.split("_")[1] for p in job_dirs] == ["0", "1"], job_dirs
    array_id = job_dirs[0].name.split("_")[0]
    submission = (sweep / ".submitit" / array_id / f"{array_id}_submission.sh").read_text()
    # Requeue has one owner, Lightning: USR1 to the tasks, requeueable, no submitit USR2.
    assert "#SBATCH --signal=USR1@90" in submission and "#SBATCH --requeue" in submission
    assert "USR2" not in submission
    assert "#SBATCH --ntasks-per-node=2" in submission, "tasks_per_node follows trainer.devices"
    assert "export SLURM_KILL_BAD_EXIT=1" in submission

    slurm_ids = set()
    for num, gamma in enumerate(gammas):
        # The launcher returns once each job's rank 0 has pickled its result; Slurm may still
        # be ending the job.
        fields = slurm.wait_done(f"{array_id}_{num}", timeout=60)
        assert fields["JobState"] == "COMPLETED", slurm.diagnose(f"{array_id}_{num}")
        slurm_ids.add(fields["JobId"])
        # The launcher's collected result: the job's return value (train_app's report).
        status, ret = pickle.loads((job_dirs[num] / f"{job_dirs[num].name}_0_result.pkl").read_bytes())
        assert status == "success", ret
        assert f"model.r1_gamma={gamma}" in ret.overrides
        run = sweep / str(num)
        assert ret.return_value["run_dir"] == str(run) and ret.return_value["global_step"] == 3
        # Its own run dir, config and training.
        cfg = OmegaConf.load(run / "config.yaml")
        assert cfg.model.r1_gamma == gamma and cfg.run_dir == str(run)
        ckpt = safe_load(run / "checkpoints" / "last.ckpt")
        assert ckpt["global_step"] == 3 and ckpt["hyper_parameters"]["r1_gamma"] == gamma
        assert len(ckpt["rng"]) == 2, "2 ranks trained this point"
    assert len(slurm_ids) == 2, "one Slurm job per point"
