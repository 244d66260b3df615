"""A Hydra sweep logged to W&B offline, read back from the run files as W&B would upload them."""

from __future__ import annotations

import subprocess
import sys

import pytest
from helpers.wandb_utils import summary
from omegaconf import OmegaConf

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def sweep(tmp_path_factory):
    root = tmp_path_factory.mktemp("wandb_sweep")
    out = subprocess.run(
        [sys.executable, "-m", "lightning_gans", "train", "-m", "experiment=demo", "trainer.max_steps=4",
         "trainer.log_every_n_steps=1", "trainer.enable_progress_bar=false",
         "callbacks.samples.every_n_steps=2", "callbacks.checkpoint.every_n_train_steps=2",
         "logger.wandb.log_model=true", "model.r1_gamma=0.5,2", f"hydra.sweep.dir={root}/sweep"],
        capture_output=True, text=True, cwd=root, timeout=600,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    return root / "sweep", out.stderr


def test_sweep_runs_are_named_grouped_and_tagged(sweep):
    sweep_dir, _ = sweep
    runs = [summary(sweep_dir / str(i))["run"] for i in range(2)]
    assert {r.run_group for r in runs} == {str(sweep_dir)}  # one group per multirun
    assert [r.display_name for r in runs] == ["demo-0 model.r1_gamma=0.5", "demo-1 model.r1_gamma=2"]
    for r in runs:
        assert r.job_type == "train"
        assert {"experiment:demo", "model:tiny", "data:demo"} <= set(r.tags)


def test_config_lrs_grids_and_checkpoints_logged_once(sweep):
    sweep_dir, stderr = sweep
    run = summary(sweep_dir / "0")
    cfg = OmegaConf.load(sweep_dir / "0" / "config.yaml")
    with_model = [c for c in run["configs"] if "model" in c]
    assert len(with_model) == 1 and with_model[0]["model"]["r1_gamma"] == 0.5  # the config, once
    (optim,) = [c["optim"] for c in run["configs"] if "optim" in c]
    (intervals,) = [c["reg_intervals"] for c in run["configs"] if "reg_intervals" in c]
    m = cfg.model
    for net, key in (("G", "pl_interval"), ("D", "r1_interval")):
        ratio = intervals[key] / (intervals[key] + 1)  # lazy regularization: lr * mb_ratio, beta ** mb_ratio
        assert optim[net]["lr"] == pytest.approx(m.lr * ratio, rel=1e-6)
        assert optim[net]["betas"] == pytest.approx([b ** ratio for b in m.betas], rel=1e-6)
    keys = [k for row in run["history"] for k in row]
    assert keys.count("samples/reals/_type") == 1  # real images once, at the start
    fake_steps = [row["trainer/global_step"] for row in run["history"] if "samples/fakes/_type" in row]
    assert sorted(fake_steps) == [2, 4]  # each grid once (the end of training is step 4: no repeat)
    assert "loss/G_main" in keys and "loss/D_main" in keys
    assert any(a.type == "model" for a in run["artifacts"])  # log_model=true, offline
    assert "Found " not in stderr and "LeafSpec" not in stderr and "anonymous" not in stderr
    assert "Using ModelCheckpoint with manual optimization" not in stderr and "Tip:" not in stderr
    assert "run finished" in (sweep_dir / "0" / "train.log").read_text()  # Hydra's job log gets our lines
