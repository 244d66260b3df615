"""Preemption on the real local Slurm: SIGUSR1 to a running 2-rank training job -> hpc checkpoint
at a step boundary -> `scontrol requeue` -> the same job starts again, in the same run dir, and
resumes from the newest checkpoint (step, weights, optimizers, W&B run) and runs to the end: the
hpc one, or the one the requeue's SIGTERM wrote at the next step boundary. A restart
without a signal resumes from the newest checkpoint: the rule in test_train_rules.py, on Slurm in
test_train_kill.py and test_two_nodes.py (resubmissions); the 2-node USR1 case in test_two_nodes.py."""

from __future__ import annotations

import json
import re
import time

from lightning_gans.checkpoint import safe_load


def test_usr1_checkpoints_requeues_and_resumes(slurm, train_jobs, tmp_path):
    steps, every = 20, 20  # the periodic checkpoint is the last one: none is written between USR1 and restart
    probe = tmp_path / "probe"
    # The default logger: W&B offline + CSV, so the W&B run id goes through the checkpoints.
    job = train_jobs.submit(
        f"trainer.max_steps={steps}", f"callbacks.checkpoint.every_n_train_steps={every}",
        "+callbacks.probe._target_=train_probe.Probe", f"+callbacks.probe.out_dir={probe}", name="preempt")
    run = train_jobs.run_dir(job)
    t0 = time.monotonic()

    def start(n: int, rank: int) -> dict:
        return json.loads(slurm.wait_file(probe / f"start{n}_rank{rank}.json", job, timeout=120))

    # Step 3 reached on both ranks: training is under way, Lightning's handler installed (a
    # USR1 before that kills the processes: SIGUSR1's default action).
    for r in (0, 1):
        slurm.wait_path(probe / f"start0_rank{r}.running", job, timeout=120)
    # To the job steps -- the srun'd ranks, where the handler is. `--batch` would signal only
    # the batch shell (tests/slurm/test_cluster.py::test_usr1_reaches_batch_shell_or_steps).
    slurm.scancel(job, "--signal=USR1")
    t_signal = time.monotonic()
    hpc = run / "hpc_ckpt_1.ckpt"
    slurm.wait_path(hpc, job, timeout=30)
    t_hpc = time.monotonic()
    ckpt = safe_load(hpc)
    k = ckpt["global_step"]
    assert 3 <= k < every, k

    # --- second start: from the newest checkpoint ----------------------------------------------
    first = {r: start(0, r) for r in (0, 1)}
    second = {r: start(1, r) for r in (0, 1)}
    t_restart = time.monotonic()
    log = slurm.output(job)
    assert f"SIGUSR1 received: checkpoint and requeue after step {k}" in log, log[-3000:]
    # The requeue's SIGTERM reaches both ranks (and W&B's service, which must not take rank 0
    # down with it: callbacks/wandb_logger.py); they stop at the next step boundary and write
    # last.ckpt, newer than the hpc checkpoint, so nothing after it is lost.
    before = log.split(f"job {job} restart 1:")[0]
    saved = re.search(r"SIGTERM received: stopped after step (\d+), saved (\S+);", before)
    assert saved, before[-3000:]
    at, newest = int(saved[1]), saved[2]
    assert k <= at < steps and newest == str(run / "checkpoints" / "last.ckpt"), (k, at, newest)
    assert "Error executing job" not in before, before[-3000:]
    for r in (0, 1):
        assert first[r]["job_id"] == second[r]["job_id"] == job and first[r]["start_step"] == 0
        assert first[r]["world"] == second[r]["world"] == 2
        # The same job id, hence the same run dir, hence its checkpoints: weights and optimizer
        # state exactly as saved, and training goes on at the saved step.
        assert second[r].get("resumed_from") == newest, second[r]
        assert second[r]["state_mismatch"] is None, second[r]
        assert second[r]["start_step"] == at and second[r]["start_nimg"] == at * 8, second[r]

    fields = slurm.wait_state(job, {"COMPLETED"}, timeout=240)
    t_done = time.monotonic()
    print(f"preemption: sbatch -> USR1 {t_signal - t0:.1f} s, USR1 -> hpc checkpoint {t_hpc - t_signal:.1f} s, "
          f"-> second start {t_restart - t_hpc:.1f} s, -> done {t_done - t_restart:.1f} s")
    assert fields["Restarts"] == "1" and fields["ExitCode"] == "0:0", slurm.diagnose(job)
    for r in (0, 1):  # ... and it went on with the next step, to the end
        done = json.loads((probe / f"start1_rank{r}.json").read_text())
        assert done["steps"] == list(range(at, steps)) and done["end_step"] == steps, done
        assert done["end_nimg"] == steps * 8, done
    assert sorted(p.name for p in run.glob("hpc_ckpt_*")) == ["hpc_ckpt_1.ckpt"]

    # --open-mode=append: every start of the job is in its one log.
    log = slurm.output(job)
    assert all(f"job {job} restart {n}:" in log for n in (0, 1)), log[-3000:]
    # One W&B run across the requeues: the id the first start made, stored in the checkpoints,
    # taken up by each later start (offline: one offline-run dir per start, all with that id).
    wandb_id = first[0]["wandb_id"]
    assert wandb_id and ckpt["wandb_run_id"] == wandb_id
    assert second[0]["wandb_id"] == wandb_id
    offline = sorted(p.name for p in (run / "wandb").glob("offline-run-*"))
    assert len(offline) == 2 and all(name.endswith(f"-{wandb_id}") for name in offline), offline
    assert safe_load(run / "checkpoints" / "last.ckpt")["global_step"] == steps
