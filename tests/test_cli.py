"""The `lightning-gans` command: entry points, Hydra features, summary, W&B offline runs."""

import json
import subprocess
import sys

import pytest
from omegaconf import OmegaConf
from train_utils import train

from lightning_gans.checkpoint import safe_load
from lightning_gans.cli import main


def test_python_dash_m_and_help():
    out = subprocess.run([sys.executable, "-m", "lightning_gans", "--help"], capture_output=True, text=True)
    assert out.returncode == 0
    for cmd in ("train", "summary", "shards", "fid"):
        assert cmd in out.stdout


def test_unknown_command(capsys):
    assert main(["trian"]) == 2
    assert "unknown command 'trian'" in capsys.readouterr().err


def test_summary_counts_config_f(capsys):
    assert main(["summary", "model=stylegan2"]) == 0
    last = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert last["G"] == 30_370_060 and last["D"] == 29_012_513
    assert last["total"] == last["G"] + last["D"] and last["resolution"] == 1024


@pytest.mark.parametrize("name,res,g_mapping", [("paper256", 256, 2_101_248), ("auto", 256, 525_312)])
def test_summary_other_configs(capsys, name, res, g_mapping):
    assert main(["summary", f"model={name}"]) == 0
    last = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert last["resolution"] == res and last["G.mapping"] == g_mapping


def test_summary_bad_key(capsys):
    assert main(["summary", "model.nope=1"]) == 2
    assert "model.nope" in capsys.readouterr().err


def test_train_cfg_job_prints_config(tmp_path):
    out = subprocess.run(
        [sys.executable, "-m", "lightning_gans", "train", "experiment=demo", "model.r1_gamma=3.5", "--cfg", "job"],
        capture_output=True, text=True, cwd=tmp_path,
    )
    assert out.returncode == 0, out.stderr
    assert "r1_gamma: 3.5" in out.stdout and "_target_: lightning_gans.modules.stylegan2.StyleGAN2Module" in out.stdout


def test_multirun_sweeps_each_point(tmp_path):
    out = subprocess.run(
        [sys.executable, "-m", "lightning_gans", "train", "-m", "experiment=demo", "logger=csv",
         "trainer.max_steps=2", "callbacks.samples.every_n_steps=0", "trainer.enable_progress_bar=false",
         "model.r1_gamma=0.5,2", f"hydra.sweep.dir={tmp_path}/sweep"],
        capture_output=True, text=True, cwd=tmp_path,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    for i, gamma in enumerate((0.5, 2.0)):
        cfg = OmegaConf.load(tmp_path / "sweep" / str(i) / "config.yaml")
        assert cfg.model.r1_gamma == gamma
        assert (tmp_path / "sweep" / str(i) / "checkpoints" / "last.ckpt").is_file()


def test_wandb_offline_run_and_resume_same_run(tmp_path):
    common = ["experiment=demo", "trainer.max_steps=3", "trainer.enable_progress_bar=false",
              "callbacks.samples.every_n_steps=3", "callbacks.checkpoint.every_n_train_steps=3"]
    first = tmp_path / "first"
    out = train(first, *common)
    runs = list((first / "wandb").glob("offline-run-*"))
    assert len(runs) == 1 and (runs[0] / "files").is_dir()
    assert "wandb_dir" in out
    run_id = safe_load(first / "checkpoints" / "last.ckpt")["wandb_run_id"]
    assert runs[0].name.endswith(run_id)
    second = tmp_path / "second"
    train(second, *common, "trainer.max_steps=5", f"ckpt_path={first}/checkpoints/last.ckpt")
    resumed = list((second / "wandb").glob("offline-run-*"))
    assert len(resumed) == 1 and resumed[0].name.endswith(run_id)
    assert safe_load(second / "checkpoints" / "last.ckpt")["wandb_run_id"] == run_id
