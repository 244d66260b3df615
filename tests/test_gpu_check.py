"""bench/gpu_check.sh keeps within its budget (one device run may last 600 s): a stage's limit is
cut to what is left, the stages after the budget are skipped and named, and the figures of the
stages that finished are kept. Run here with a stand-in python that only sleeps or prints."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

STUB = """#!/bin/bash
echo "$*" >> "$CALLS"
case "$*" in
  *--official-build-only*) echo '{"official_cuda_ops": {"bias_act": true, "upfirdn2d": true}}' ;;
  *"--configs tiny64"*) echo '{"sec_per_kimg": 1.0, "configs": {"tiny64": {}}}' ;;
  *"--configs paper256"*) sleep 30 ;;
esac
exit 0
"""


@pytest.mark.skipif(shutil.which("timeout") is None, reason="needs coreutils timeout")
def test_stages_keep_within_the_budget(tmp_path):
    stub = tmp_path / "python"
    stub.write_text(STUB)
    stub.chmod(0o755)
    out, calls = tmp_path / "out", tmp_path / "calls"
    env = {**os.environ, "PYTHON": str(stub), "CALLS": str(calls), "OUT": str(out), "BUDGET": "4",
           "MIN_STAGE": "2", "OFFICIAL": str(tmp_path / "official")}
    t = time.monotonic()
    subprocess.run(["bash", "bench/gpu_check.sh"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    wall = time.monotonic() - t
    assert wall < 4 + 3  # paper256 would sleep 30 s: its limit was cut to the budget's rest
    log = (out / "gpu_check.log").read_text()
    assert "train-step-paper256 rc=124" in log  # killed at the budget
    assert "train-step-stylegan2 skipped" in log and "bench-ops skipped" in log
    assert "build rc=0" in log and "train-step-tiny64 rc=0" in log
    lines = (out / "train_step.json").read_text().splitlines()
    assert [list(json.loads(ln)["configs"]) for ln in lines] == [["tiny64"]]  # the finished stage's figures
    made = calls.read_text()
    assert "--official-build-only" in made and "doctor --build" in made
    assert f"--configs tiny64 --official {tmp_path / 'official'} --modes ref compiled" in made
