"""A rank killed with SIGKILL on the real local Slurm: the job fails at once (srun
--kill-on-bad-exit in slurm/train.sbatch; no rank left waiting in a collective), its last
checkpoint is intact, and a new job given ckpt_path= resumes from it."""

from __future__ import annotations

import json
import os
import signal
import time

from lightning_gans.checkpoint import safe_load


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"  # a zombie is dead (slow reaper here)
    except FileNotFoundError:
        return False


def test_killed_rank_fails_job_and_resubmission_resumes(slurm, train_jobs, tmp_path):
    probe = tmp_path / "probe"
    common = ("logger=csv", "callbacks.checkpoint.every_n_train_steps=5", "+callbacks.probe._target_=train_probe.Probe")
    job = train_jobs.submit(*common, "trainer.max_steps=1000", f"+callbacks.probe.out_dir={probe}", name="kill")
    run = train_jobs.run_dir(job)
    ranks = [json.loads(slurm.wait_file(probe / f"start0_rank{r}.json", job, timeout=120)) for r in (0, 1)]
    slurm.wait_path(run / "checkpoints" / "step0000005.ckpt", job, timeout=60)
    # last.ckpt is written right after the step checkpoint: kill only once both exist, so the
    # assertion below is about the atomic writer, not about the gap between the two writes.
    slurm.wait_path(run / "checkpoints" / "last.ckpt", job, timeout=60)
    assert "resumed_from" not in ranks[0], "a fresh job in a fresh run dir starts from scratch"

    os.kill(ranks[1]["pid"], signal.SIGKILL)
    t_kill = time.monotonic()
    fields = slurm.wait_done(job, timeout=90)
    took = time.monotonic() - t_kill
    print(f"kill -9 of rank 1 -> job {fields['JobState']} in {took:.1f} s")
    assert fields["JobState"] == "FAILED" and fields["ExitCode"] != "0:0", slurm.diagnose(job)
    assert fields["Restarts"] == "0", "a crash is not a preemption: no requeue"
    # Gloo's default process-group timeout is 30 min; srun ends the job long before.
    assert took < 30, f"job took {took:.0f} s to fail after a rank died\n{slurm.diagnose(job)}"
    assert not _alive(ranks[0]["pid"]), "rank 0 outlived the job"
    # srun's --kill-on-bad-exit ended the step when rank 1 died; without it the log says
    # "task 0: Exited with exit code 1" and no "Terminating". (Here gloo also sees the reset
    # connection and rank 0 fails by itself; NCCL ranks usually wait in their collective for
    # the process-group timeout instead, 30 min by default.)
    assert f"Terminating StepId={job}.0" in slurm.output(job), slurm.diagnose(job)
    assert not list(run.glob("hpc_ckpt_*")), "a crash must not write an hpc checkpoint"

    # Whatever moment the kill hit, the atomic writer left a whole last checkpoint.
    last = run / "checkpoints" / "last.ckpt"
    ckpt = safe_load(last)
    step = ckpt["global_step"]
    assert step >= 5 and step % 5 == 0, step

    probe2 = tmp_path / "probe2"
    job2 = train_jobs.submit(*common, f"trainer.max_steps={step + 3}", f"ckpt_path={last}",
                             f"+callbacks.probe.out_dir={probe2}", name="resume")
    fields2 = slurm.wait_done(job2, timeout=180)
    assert fields2["JobState"] == "COMPLETED" and fields2["ExitCode"] == "0:0", slurm.diagnose(job2)
    for r in (0, 1):
        rec = json.loads((probe2 / f"start0_rank{r}.json").read_text())
        assert rec["job_id"] == job2 and rec["world"] == 2
        # Exactly the checkpoint's weights and optimizer state, then the next steps.
        assert rec["resumed_from"] == str(last) and rec["state_mismatch"] is None, rec
        assert rec["start_step"] == step and rec["steps"] == [step, step + 1, step + 2], rec["steps"]
        assert rec["end_step"] == step + 3
    # The resubmission is a new job with its own run dir; the failed job's dir is left as it was.
    run2 = train_jobs.run_dir(job2)
    assert safe_load(run2 / "checkpoints" / "last.ckpt")["global_step"] == step + 3
    assert safe_load(last)["global_step"] == step
