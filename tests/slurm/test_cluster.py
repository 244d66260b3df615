"""The Slurm primitives the distributed training relies on, checked on the real local cluster:
ranks from srun, signal delivery (batch shell vs job steps), requeue with a restart count,
and a failed job visible to what submitit polls (sacct). No training here: if these fail,
the DDP, sweep and preemption tests cannot pass, and the reason is in the cluster."""

from __future__ import annotations

import json
import time

RANK_PY = """\
import json, os, sys
keys = ("SLURM_PROCID", "SLURM_NTASKS", "SLURM_LOCALID", "SLURM_NODEID", "SLURM_JOB_ID",
        "SLURM_STEP_ID")
info = {k: os.environ.get(k) for k in keys}
info["pid"] = os.getpid()
print(f"rank {info['SLURM_PROCID']} of {info['SLURM_NTASKS']}", flush=True)
with open(os.path.join(sys.argv[1], f"rank{info['SLURM_PROCID']}.json"), "w") as f:
    json.dump(info, f)
"""


def test_two_tasks_get_distinct_ranks(slurm, tmp_path):
    """sbatch --ntasks-per-node=2 + srun: two processes, ranks 0 and 1 of 2, same job."""
    (tmp_path / "rank.py").write_text(RANK_PY)
    (tmp_path / "ranks").mkdir()
    script = f"""#!/bin/bash
set -euo pipefail
srun {slurm.python} -u rank.py ranks
"""
    t0 = time.monotonic()
    job = slurm.sbatch(script, "--nodes=1", "--ntasks-per-node=2", "--cpus-per-task=1",
                       "--time=2", name="ranks")
    fields = slurm.wait_done(job, timeout=60)
    print(f"2-task job: {time.monotonic() - t0:.1f} s from sbatch to done")
    assert fields["JobState"] == "COMPLETED", slurm.diagnose(job)
    assert fields["ExitCode"] == "0:0"

    infos = {p.name: json.loads(p.read_text()) for p in (tmp_path / "ranks").iterdir()}
    assert sorted(infos) == ["rank0.json", "rank1.json"], slurm.diagnose(job)
    assert {i["SLURM_PROCID"] for i in infos.values()} == {"0", "1"}
    assert {i["SLURM_LOCALID"] for i in infos.values()} == {"0", "1"}
    assert all(i["SLURM_NTASKS"] == "2" for i in infos.values())
    assert all(i["SLURM_JOB_ID"] == job and i["SLURM_STEP_ID"] == "0" for i in infos.values())
    assert len({i["pid"] for i in infos.values()}) == 2, "one process per rank"
    out = slurm.output(job)
    assert "rank 0 of 2" in out and "rank 1 of 2" in out, out


def test_failed_job_is_reported(slurm):
    """A job that dies is FAILED with its exit code, in slurmctld and (when configured) in
    sacct -- sacct is how submitit's launcher notices a job that died without a result."""
    job = slurm.sbatch("#!/bin/bash\nexit 3\n", "--ntasks=1", "--time=1", name="fails")
    fields = slurm.wait_done(job, timeout=60)
    assert fields["JobState"] == "FAILED", slurm.diagnose(job)
    assert fields["ExitCode"] == "3:0"
    # The jobcomp record (what the helpers fall back to) is written when the job ends.
    assert slurm.jobcomp(job).get("JobState") == "FAILED"
    if slurm.accounting():
        deadline = time.monotonic() + 20  # slurmctld sends records to slurmdbd asynchronously
        while slurm.sacct_state(job) != "FAILED" and time.monotonic() < deadline:
            time.sleep(0.2)
        assert slurm.sacct_state(job) == "FAILED", slurm.diagnose(job)


WAITER_PY = """\
import os, signal, sys, time
got = []
def on_usr1(signum, frame):
    got.append(1)
    with open("step_signals", "a") as f:
        f.write(f"USR1 rank {os.environ['SLURM_PROCID']}\\n")
signal.signal(signal.SIGUSR1, on_usr1)
open("step_ready", "w").close()
deadline = time.time() + 60
while not got and time.time() < deadline:
    time.sleep(0.05)
sys.exit(0 if got else 3)
"""


def test_usr1_reaches_batch_shell_or_steps(slurm, tmp_path):
    """`scancel --signal=USR1 --batch` signals only the batch shell (a trap there sees it);
    `scancel --signal=USR1` without --batch signals the job's steps -- the srun'd processes,
    where Lightning's SIGUSR1 handler lives -- and not the batch shell."""
    (tmp_path / "waiter.py").write_text(WAITER_PY)
    script = f"""#!/bin/bash
set -u
trap 'echo USR1 >> batch_signals' USR1
srun --ntasks=1 {slurm.python} -u waiter.py &
step=$!
touch batch_ready
# A trapped signal makes `wait` return early (status > 128): wait again while srun runs.
while :; do
  wait "$step"; rc=$?
  kill -0 "$step" 2>/dev/null || break
done
echo "step exited $rc"
exit "$rc"
"""
    job = slurm.sbatch(script, "--ntasks=1", "--time=2", name="usr1")
    slurm.wait_file(tmp_path / "batch_ready", job, timeout=60)
    slurm.wait_file(tmp_path / "step_ready", job, timeout=30)

    slurm.scancel(job, "--signal=USR1", "--batch")
    assert slurm.wait_file(tmp_path / "batch_signals", job, timeout=15, min_lines=1) == "USR1\n"
    time.sleep(1.0)  # time for a wrongly delivered signal to show up in the step
    assert not (tmp_path / "step_signals").exists(), "--batch must not signal the steps"

    slurm.scancel(job, "--signal=USR1")
    step_signals = slurm.wait_file(tmp_path / "step_signals", job, timeout=15, min_lines=1)
    fields = slurm.wait_done(job, timeout=30)
    assert step_signals == "USR1 rank 0\n"
    assert fields["JobState"] == "COMPLETED", slurm.diagnose(job)
    assert (tmp_path / "batch_signals").read_text() == "USR1\n", \
        "a plain scancel --signal must not signal the batch shell"
    assert "step exited 0" in slurm.output(job)


def test_requeue_restarts_job(slurm, tmp_path):
    """--requeue + `scontrol requeue` from inside the job (what Lightning does after its
    SIGUSR1 checkpoint): the job runs again with SLURM_RESTART_COUNT=1, appends to the same
    log, and restarts within ~cred_expire (30 s in up.sh; Slurm's default would take 120 s)."""
    script = """#!/bin/bash
set -u
n=${SLURM_RESTART_COUNT:-0}
echo "run $n"
echo "start $n $(date +%s.%N)" >> runs
if [ "$n" -eq 0 ]; then
  echo "requeue $(date +%s.%N)" >> runs
  scontrol requeue "$SLURM_JOB_ID"
  sleep 120  # killed by the requeue
  exit 9
fi
echo "done" >> runs
"""
    job = slurm.sbatch(script, "--requeue", "--open-mode=append", "--ntasks=1", "--time=3",
                       name="requeue")
    fields = slurm.wait_state(job, {"COMPLETED"}, timeout=90)
    assert fields["Restarts"] == "1", slurm.diagnose(job)

    runs = [line.split() for line in (tmp_path / "runs").read_text().splitlines()]
    assert [r[0] for r in runs] == ["start", "requeue", "start", "done"], runs
    assert (runs[0][1], runs[2][1]) == ("0", "1"), f"SLURM_RESTART_COUNT not 0 then 1: {runs}"
    delay = float(runs[2][2]) - float(runs[1][1])
    print(f"requeue -> restart: {delay:.1f} s")
    # cred_expire=30 is the floor; Slurm's defaults (120 s, a 60 s scheduling pass) exceed 40.
    assert delay < 40, f"requeue took {delay:.0f} s (cred_expire=30, sched_interval=2 set?)"
    out = slurm.output(job)
    assert "run 0" in out and "run 1" in out, f"--open-mode=append lost a run's log:\n{out}"
