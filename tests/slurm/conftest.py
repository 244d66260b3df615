"""Tests against the real local Slurm (slurm/local/up.sh): gate and shared job helpers.

Every test in tests/slurm/ gets the ``slurm`` marker (``-m "not slurm"`` leaves them out) and
needs a live cluster. Without one the tests skip, unless ``LG_REQUIRE_SLURM=1`` (CI sets it):
then they fail, so a broken cluster cannot pass as "skipped".

Tests use the cluster through the ``slurm`` fixture (a :class:`SlurmCluster`): submit a batch
script, wait for a state or a file with a timeout, read the job's fields. A timeout fails with
the job's record, the queue, the node and the tail of the job's output, and every job a test
submitted is cancelled when the test ends, so one failure does not hold the node for the next.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent

# Node states in which jobs can start (possibly after the ones already running). A trailing
# "*" (not responding), "drain", "down" and the like are problems.
USABLE_NODE_STATES = {"idle", "mixed", "allocated", "completing"}
# Job states after which nothing more happens to a job (barring a requeue by someone).
TERMINAL_STATES = {
    "COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL", "OUT_OF_MEMORY", "PREEMPTED",
    "BOOT_FAIL", "DEADLINE",
}


def pytest_configure(config):
    # Also belongs in pyproject's [tool.pytest.ini_options] markers; registering it here keeps
    # `@pytest.mark.slurm` warning-free either way (a duplicate registration is harmless).
    config.addinivalue_line(
        "markers",
        "slurm: runs jobs on the real local Slurm (slurm/local/up.sh); skipped without it, "
        "failed without it when LG_REQUIRE_SLURM=1",
    )


def pytest_collection_modifyitems(config, items):
    for item in items:
        if HERE in Path(str(item.path)).parents:
            item.add_marker(pytest.mark.slurm)


def _run(cmd: list[str], timeout: float = 30, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=check)


def cluster_problem() -> str | None:
    """None when the local cluster can run jobs, else why not (one line)."""
    if shutil.which("sinfo") is None:
        return "sinfo not found: Slurm is not installed (run slurm/local/up.sh as root)"
    try:
        r = _run(["sinfo", "-h", "-N", "-o", "%N %T"], timeout=15, check=False)
    except subprocess.TimeoutExpired:
        return "sinfo did not answer in 15 s (slurmctld hung?)"
    if r.returncode != 0:
        err = (r.stderr or r.stdout).strip().splitlines()
        return f"sinfo failed ({err[-1] if err else r.returncode}); run slurm/local/up.sh"
    nodes = [line.split() for line in r.stdout.splitlines() if line.strip()]
    if not nodes:
        return "sinfo lists no nodes"
    bad = [" ".join(n) for n in nodes if len(n) != 2 or n[1] not in USABLE_NODE_STATES]
    if bad:
        return f"node not usable: {', '.join(bad)} (see `sinfo -R` and the slurmd log)"
    return None


@pytest.fixture(scope="session")
def _slurm_ready():
    problem = cluster_problem()
    if problem is None:
        return
    if os.environ.get("LG_REQUIRE_SLURM") == "1":
        pytest.fail(f"LG_REQUIRE_SLURM=1 but Slurm is not usable: {problem}", pytrace=False)
    pytest.skip(f"no usable Slurm: {problem}")


@pytest.fixture(autouse=True)
def _require_slurm(_slurm_ready):
    """Every test in tests/slurm/ needs the cluster (skip or fail decided once per session)."""


def parse_fields(line: str) -> dict[str, str]:
    """`Key=value Key=value ...` (scontrol -o, jobcomp/filetxt) into a dict. A value with
    spaces (a command line, a comment) continues until the next `Key=`."""
    fields: dict[str, str] = {}
    key = None
    for token in line.split(" "):
        m = re.match(r"([A-Za-z][\w/:]*)=(.*)", token)
        if m:
            key = m.group(1)
            fields[key] = m.group(2)
        elif key is not None and token:
            fields[key] += " " + token
    return fields


class SlurmCluster:
    """The local cluster as the tests see it. Job ids are strings, as sbatch prints them."""

    python = sys.executable  # the venv's interpreter; jobs inherit the submitting environment

    def __init__(self, workdir: Path):
        self.workdir = workdir
        self.submitted: list[str] = []

    # ---- submit ---------------------------------------------------------------------------
    def sbatch(self, script: str, *options: str, name: str = "lgtest", args: Sequence[str] = ()) -> str:
        """Submit the batch script text `script` with extra sbatch `options` (and `args` for the
        script itself); return the job id.

        The job runs in `workdir` and writes its stdout+stderr to `workdir/<name>-<jobid>.out`
        (an --output among `options` overrides that).
        """
        path = self.workdir / f"{name}.sbatch"
        path.write_text(script)
        cmd = [
            "sbatch", "--parsable", f"--job-name={name}", f"--chdir={self.workdir}",
            f"--output={self.workdir}/{name}-%j.out", *options, str(path), *args,
        ]
        r = _run(cmd, check=False)
        if r.returncode != 0:
            raise AssertionError(f"sbatch failed ({r.returncode}): {r.stderr.strip()}\n{cmd}")
        job_id = r.stdout.strip().split(";")[0]  # "<id>" or "<id>;<cluster>"
        self.submitted.append(job_id)
        return job_id

    def run(self, script: str, *options: str, name: str = "lgtest", args: Sequence[str] = (),
            timeout: float = 60) -> dict:
        """Submit and wait until the job ends; return its fields (JobState, ExitCode, ...).

        Not `sbatch --wait`: that polls after 2, 10, 42, 74 s..., so a 1 s job takes 10 s.
        """
        return self.wait_done(self.sbatch(script, *options, name=name, args=args), timeout=timeout)

    # ---- read -----------------------------------------------------------------------------
    def job(self, job_id: str) -> dict[str, str]:
        """The job's fields from slurmctld, or from the jobcomp file once slurmctld has
        forgotten it (MinJobAge); {} when neither knows it."""
        r = _run(["scontrol", "show", "job", "-o", job_id], check=False)
        if r.returncode == 0 and r.stdout.strip():
            return parse_fields(r.stdout.strip().splitlines()[0])
        return self.jobcomp(job_id)

    def jobcomp(self, job_id: str) -> dict[str, str]:
        """The last jobcomp/filetxt record of the job (one is written each time it ends, so a
        requeued job has several), or {}."""
        loc = self.config().get("JobCompLoc")
        if not loc or not Path(loc).is_file():
            return {}
        last = {}
        for line in Path(loc).read_text().splitlines():
            if line.startswith(f"JobId={job_id} "):
                last = parse_fields(line)
        return last

    def config(self) -> dict[str, str]:
        r = _run(["scontrol", "show", "config"])
        out = {}
        for line in r.stdout.splitlines():
            key, sep, value = line.partition("=")
            if sep:
                out[key.strip()] = value.strip()
        return out

    def accounting(self) -> bool:
        """Whether slurmdbd accounting (and so `sacct`) is configured."""
        return self.config().get("AccountingStorageType", "").endswith("slurmdbd")

    def sacct_state(self, job_id: str) -> str | None:
        """The job's state as `sacct` (what submitit polls) reports it, or None if unknown."""
        r = _run(["sacct", "-n", "-X", "-P", "-o", "State", "-j", job_id], check=False)
        lines = r.stdout.split()
        return lines[-1] if r.returncode == 0 and lines else None

    def output(self, job_id: str) -> str:
        """The job's stdout file as far as it is written ('' if none yet)."""
        stdout = self.job(job_id).get("StdOut")  # the jobcomp record has no StdOut
        paths = [Path(stdout)] if stdout else sorted(self.workdir.glob(f"*-{job_id}.out"))
        return "".join(p.read_text(errors="replace") for p in paths if p.is_file())

    def diagnose(self, job_id: str) -> str:
        """Everything worth reading when a job did not do what a test expected."""
        parts = [f"--- job {job_id}: {self.job(job_id) or 'unknown to slurmctld and jobcomp'}"]
        for cmd in (["squeue"], ["sinfo", "-N", "-l"], ["sinfo", "-R"]):
            r = _run(cmd, check=False)
            parts.append(f"--- {' '.join(cmd)}\n{r.stdout}{r.stderr}")
        parts.append(f"--- output (tail)\n{self.output(job_id)[-3000:]}")
        log = self.config().get("SlurmctldLogFile")
        if log and Path(log).is_file():
            parts.append("--- slurmctld log (tail)\n" + "\n".join(
                Path(log).read_text(errors="replace").splitlines()[-15:]))
        return "\n".join(parts)

    # ---- wait -----------------------------------------------------------------------------
    def wait_state(self, job_id: str, states: set[str], timeout: float) -> dict[str, str]:
        """Poll until the job's JobState is in `states`; return its fields. Fails after
        `timeout` s, or as soon as the job ends in a state not asked for."""
        deadline = time.monotonic() + timeout
        fields: dict[str, str] = {}
        while time.monotonic() < deadline:
            fields = self.job(job_id)
            state = fields.get("JobState")
            if state in states:
                return fields
            if state in TERMINAL_STATES:
                raise AssertionError(
                    f"job {job_id} ended {state}, expected {sorted(states)}\n"
                    + self.diagnose(job_id))
            time.sleep(0.2)
        raise AssertionError(
            f"job {job_id} not in {sorted(states)} after {timeout} s (now "
            f"{fields.get('JobState')}, reason {fields.get('Reason')})\n" + self.diagnose(job_id))

    def wait_done(self, job_id: str, timeout: float) -> dict[str, str]:
        """Poll until the job has ended (any terminal state); return its fields."""
        return self.wait_state(job_id, TERMINAL_STATES, timeout)

    def wait_file(self, path: Path, job_id: str, timeout: float, min_lines: int = 0) -> str:
        """Poll until the job has written `path` (with at least `min_lines` lines); return the
        text. Fails early if the job ends first."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if path.is_file():
                text = path.read_text()
                if len(text.splitlines()) >= min_lines:
                    return text
            state = self.job(job_id).get("JobState")
            if state in TERMINAL_STATES:
                break
            time.sleep(0.1)
        raise AssertionError(
            f"job {job_id} did not write {path} ({min_lines}+ lines) within {timeout} s\n"
            + self.diagnose(job_id))

    def wait_path(self, path: Path, job_id: str, timeout: float) -> None:
        """Poll until `path` exists (a checkpoint: binary, written by an atomic rename). Fails
        early if the job ends first."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if path.exists():
                return
            if self.job(job_id).get("JobState") in TERMINAL_STATES:
                break
            time.sleep(0.1)
        raise AssertionError(f"job {job_id} did not write {path} within {timeout} s\n" + self.diagnose(job_id))

    def scancel(self, job_id: str, *options: str) -> None:
        r = _run(["scancel", *options, job_id], check=False)
        if r.returncode != 0:
            raise AssertionError(f"scancel {' '.join(options)} {job_id} failed: {r.stderr}")

    def cancel_all(self) -> None:
        """Cancel what this test submitted and is still queued or running."""
        if self.submitted:
            _run(["scancel", *self.submitted], check=False)


@pytest.fixture
def slurm(tmp_path):
    """A SlurmCluster whose jobs run in (and write to) this test's tmp_path."""
    cluster = SlurmCluster(tmp_path)
    yield cluster
    cluster.cancel_all()


# ---- training jobs (test_train_*.py) ---------------------------------------------------------
REPO = HERE.parent.parent
TRAIN_SBATCH = REPO / "slurm" / "train.sbatch"
# The tiny StyleGAN2 of the README demo on CPU, without the output a test does not read.
DEMO = ("experiment=demo", "trainer.enable_progress_bar=false", "callbacks.samples.every_n_steps=0")
# A time limit far beyond the jobs' run time: train.sbatch asks for SIGUSR1 90 s before it, which
# Slurm may send up to 60 s early, and an early USR1 would requeue a job no test preempted.
TRAIN_TIME = "--time=10"


@pytest.fixture(scope="session")
def _demo_shards() -> str:
    """Build the demo data once, before any job: otherwise the first job's ranks build it
    concurrently while their timeouts run. Jobs find it through the inherited LG_CACHE_DIR."""
    from hydra import compose, initialize_config_dir

    from lightning_gans.config import config_dir, register_resolvers

    register_resolvers()
    with initialize_config_dir(version_base="1.3", config_dir=str(config_dir()), job_name="slurm_tests"):
        cfg = compose(config_name="train", overrides=["experiment=demo", "run_dir=unused"])
    return str(cfg.data.shards)  # resolving the path builds the shards


@pytest.fixture
def train_env(monkeypatch, _demo_shards):
    """The environment training jobs inherit through sbatch (--export=ALL is its default)."""
    venv_bin = Path(sys.executable).parent
    if not (venv_bin / "lightning-gans").is_file():
        pytest.fail(f"no lightning-gans beside {sys.executable}: run the tests with the project's venv")
    monkeypatch.setenv("PATH", f"{venv_bin}{os.pathsep}{os.environ.get('PATH', '')}")
    # Reference ops: a job's ranks must not compile kernels (~40 s each on 2 cores); these tests
    # are about the distributed engine.
    monkeypatch.setenv("LG_OPS", "ref")
    # The probes the tests add with +callbacks.probe=...: tests/ddp_probe.py and train_probe.py.
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(
        p for p in (str(HERE), str(HERE.parent), os.environ.get("PYTHONPATH")) if p))


class TrainJobs:
    """slurm/train.sbatch as the tests submit it: its own #SBATCH lines (2 tasks, --requeue,
    --signal=USR1@90, ...), the demo config, and the test's overrides."""

    demo = DEMO

    def __init__(self, slurm: SlurmCluster):
        self.slurm = slurm
        self.script = TRAIN_SBATCH.read_text()

    def submit(self, *overrides: str, name: str = "train", options: Sequence[str] = ()) -> str:
        return self.slurm.sbatch(self.script, TRAIN_TIME, *options, name=name, args=[*DEMO, *overrides])

    def run_dir(self, job_id: str) -> Path:
        """Where conf/train.yaml puts a Slurm job's run (relative to the job's working dir)."""
        return self.slurm.workdir / "outputs" / "slurm" / job_id


@pytest.fixture
def train_jobs(slurm, train_env) -> TrainJobs:
    return TrainJobs(slurm)
