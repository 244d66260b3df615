"""slurm/train.sbatch on the real local Slurm: 2 srun tasks -> Lightning's SLURMEnvironment -> 2-rank
gloo DDP of the demo StyleGAN2, in the job's own run dir."""

from __future__ import annotations

import json
import time

from lightning_gans.checkpoint import safe_load


def test_two_task_ddp_job(slurm, train_jobs, tmp_path):
    steps = 6
    t0 = time.monotonic()
    job = train_jobs.submit(
        "logger=csv", f"trainer.max_steps={steps}", "model.r1_interval=2", "model.pl_interval=2",
        "+callbacks.probe._target_=ddp_probe.RecordBatches", f"+callbacks.probe.out_dir={tmp_path}/probe",
        name="ddp")
    fields = slurm.wait_done(job, timeout=180)
    print(f"2-rank demo job ({steps} steps): {time.monotonic() - t0:.1f} s from sbatch to done")
    assert fields["JobState"] == "COMPLETED" and fields["ExitCode"] == "0:0", slurm.diagnose(job)
    assert fields["NumTasks"] == "2", fields

    # Lightning took rank and world size from srun (SLURMEnvironment), not from its own launcher.
    log = slurm.output(job)
    assert "GLOBAL_RANK: 0, MEMBER: 1/2" in log and "GLOBAL_RANK: 1, MEMBER: 2/2" in log, log[-3000:]
    assert "distributed_backend=gloo" in log
    assert log.count("SLURM auto-requeueing enabled") == 2, "each rank installs the requeue handler"

    r0, r1 = (json.loads((tmp_path / "probe" / f"rank{i}.json").read_text()) for i in (0, 1))
    assert r0["world"] == r1["world"] == 2
    # The global batch of 8 split over the ranks, and each rank drew its own images.
    assert r0["batch_sizes"] == r1["batch_sizes"] == [4] * steps
    assert not set(r0["samples"]) & set(r1["samples"])
    # Averaged gradients: both ranks end with the same networks; schedules count global images.
    assert r0["G_checksum"] == r1["G_checksum"] and r0["D_checksum"] == r1["D_checksum"]
    assert r0["nimg"] == r1["nimg"] == steps * 8

    # Both ranks used the one run dir keyed on the job id; rank 0 alone wrote into it.
    run = train_jobs.run_dir(job)
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["last.ckpt"], slurm.diagnose(job)
    ckpt = safe_load(run / "checkpoints" / "last.ckpt")
    assert ckpt["global_step"] == steps
    assert len(ckpt["rng"]) == 2, "the checkpoint holds both ranks' RNG states (gathered to rank 0)"
    assert not list(run.glob("hpc_ckpt_*")), "no SIGUSR1 was sent: no hpc checkpoint"
    assert (run / "config.yaml").is_file() and (run / "csv" / "metrics.csv").is_file()
    assert not list(tmp_path.glob("outputs/20*")), "a rank fell back to a time-stamped run dir"
