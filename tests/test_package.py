"""The wheel as a new user gets it: built from this checkout, installed into a fresh virtual
environment with no source tree on the path, and used from another directory.

The fresh venv gets only our wheel (`--no-deps`); its dependencies (torch, Lightning, ...) come
from this environment's site-packages through PYTHONPATH, which saves a multi-GB install. Our
own editable install there is not picked up that way: its finder is activated by a .pth file,
and .pth files are processed only in site dirs, never in PYTHONPATH entries (asserted below).
"""

from __future__ import annotations

import os
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    pytest.importorskip("hatchling", reason="the build backend (bash scripts/setup.sh --dev installs it)")
    out = tmp_path_factory.mktemp("dist")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation",
                    "-w", str(out), str(REPO)], check=True, timeout=300)
    (whl,) = out.glob("lightning_gans-*.whl")
    return whl


def test_wheel_carries_configs_and_kernel_sources(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    for rel in ("conf/train.yaml", "conf/experiment/demo.yaml", "conf/trainer/default.yaml"):
        assert f"lightning_gans/{rel}" in names
    repo_csrc = {p.name for p in (REPO / "csrc").iterdir() if p.is_file()}
    wheel_csrc = {Path(n).name for n in names if n.startswith("lightning_gans/csrc/")}
    assert repo_csrc and repo_csrc <= wheel_csrc
    assert not any(n.startswith(("conf/", "csrc/", "tests/")) for n in names)  # only inside the package


def test_installed_wheel_trains_generates_and_finds_kernels(wheel, tmp_path):
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    py = venv / "bin" / "python"
    subprocess.run([sys.executable, "-m", "pip", "--python", str(py), "install", "-q", "--no-deps",
                    "--no-index", str(wheel)], check=True, timeout=300)
    exe = venv / "bin" / "lightning-gans"
    assert exe.is_file()
    work = tmp_path / "elsewhere"
    work.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("LG_CONFIG_DIR", "PYTHONPATH")}
    env["PYTHONPATH"] = sysconfig.get_paths()["purelib"]  # dependencies only (see the docstring)
    env["OMP_NUM_THREADS"] = "1"

    def run(*args: str, timeout: int = 240) -> str:
        r = subprocess.run([str(exe), *args], cwd=work, env=env, capture_output=True, text=True, timeout=timeout)
        assert r.returncode == 0, f"{args}: exit {r.returncode}\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}"
        return r.stdout + r.stderr

    where = subprocess.run(
        [str(py), "-c", "import lightning_gans, lightning_gans.config as c, lightning_gans.ops._jit as j; "
         "print(lightning_gans.__file__); print(c.config_dir()); print(j.CSRC)"],
        cwd=work, env=env, capture_output=True, text=True, check=True, timeout=120,
    ).stdout.split()
    package = Path(where[0]).parent
    assert package.is_relative_to(venv), f"imported from {package}, not from the wheel"
    assert Path(where[1]) == package / "conf" and Path(where[2]) == package / "csrc"

    assert "train" in run("--help") and "Configuration groups" in run("train", "--help")

    doctor = run("doctor", "--build", timeout=600)
    cpu_rows = [line.split() for line in doctor.splitlines() if line.startswith("cpu ")]
    assert {row[1] for row in cpu_rows} == {"upfirdn2d", "bias_act"}, doctor
    assert all(row[2] == "compiled" for row in cpu_rows), doctor

    run_dir = work / "run"
    run("train", "experiment=demo", "trainer.max_steps=5", "callbacks.checkpoint.every_n_train_steps=5",
        "callbacks.samples.every_n_steps=0", "logger=csv", f"hydra.run.dir={run_dir}")
    ckpt = run_dir / "checkpoints" / "last.ckpt"
    assert ckpt.is_file(), sorted(p.name for p in run_dir.rglob("*"))
    assert (run_dir / "config.yaml").is_file()

    out = work / "gen"
    run("generate", str(ckpt), "--seeds", "0-1", "--outdir", str(out), "--no-watermark")
    assert len(list(out.glob("*.png"))) == 2
