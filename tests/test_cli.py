"""The `lightning-gans` command: entry points, Hydra features, summary, W&B offline runs."""

import json
import subprocess
import sys

import pytest
from helpers.train_utils import train
from omegaconf import OmegaConf

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


def test_every_trainer_and_checkpoint_argument_is_settable_without_plus():
    import inspect

    import pytorch_lightning as pl
    from hydra import compose, initialize_config_dir

    from lightning_gans.config import config_dir

    trainer = OmegaConf.load(config_dir() / "trainer" / "default.yaml")
    given = {"self", "logger", "callbacks", "plugins"}  # train.py builds those from their groups
    expected = set(inspect.signature(pl.Trainer.__init__).parameters) - given
    assert expected <= set(trainer) - {"_target_"}, sorted(expected - set(trainer))
    ckpt = OmegaConf.load(config_dir() / "callbacks" / "default.yaml").checkpoint
    expected = set(inspect.signature(pl.callbacks.ModelCheckpoint.__init__).parameters) - {"self"}
    assert expected <= set(ckpt) - {"_target_"}, sorted(expected - set(ckpt))
    with initialize_config_dir(version_base="1.3", config_dir=str(config_dir())):
        cfg = compose("train", overrides=["experiment=demo", "trainer.max_time=00:00:00:08",
                                          "trainer.limit_train_batches=2", "callbacks.checkpoint.monitor=loss"])
    assert cfg.trainer.max_time == "00:00:00:08" and cfg.callbacks.checkpoint.monitor == "loss"


class _BarMetrics(__import__("pytorch_lightning").Callback):
    def on_train_end(self, trainer, pl_module):
        self.keys = set(trainer.progress_bar_metrics)


def test_ckpt_path_last_resumes_the_run_dir_and_the_bar_shows_progress(tmp_path):
    common = ["experiment=demo", "logger=csv", "trainer.enable_progress_bar=false",
              "callbacks.samples.every_n_steps=0", "callbacks.checkpoint.every_n_train_steps=2"]
    bar = _BarMetrics()
    out = train(tmp_path, *common, "trainer.max_steps=2", "ckpt_path=last", callbacks=[bar])
    assert out["global_step"] == 2  # no checkpoint yet: a fresh start
    assert {"G", "D", "kimg", "sec/kimg"} <= bar.keys
    out = train(tmp_path, *common, "trainer.max_steps=3", "ckpt_path=last")
    assert out["global_step"] == 3 and safe_load(tmp_path / "checkpoints" / "last.ckpt")["global_step"] == 3
    from lightning_gans.errors import ConfigError

    with pytest.raises(ConfigError, match="ckpt_path=nowhere.ckpt: no such checkpoint file"):
        train(tmp_path, *common, "ckpt_path=nowhere.ckpt")


def _complete(line: str) -> list[str]:
    import os

    env = {**os.environ, "COMP_LINE": line, "COMP_POINT": str(len(line))}
    out = subprocess.run([sys.executable, "-m", "lightning_gans", "-sc", "query=bash"], env=env,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    return out.stdout.split()


def test_bash_completion_completes_commands_and_train_overrides():
    # What the script of `lightning-gans train -sc install=bash` asks: `lightning-gans -sc query=bash`.
    assert _complete("lightning-gans tra") == ["train", "transfer"]
    assert "model=paper256" in _complete("lightning-gans train model=pa")
    assert "trainer." in _complete("lightning-gans train trai")
    script = subprocess.run([sys.executable, "-m", "lightning_gans", "train", "-sc", "install=bash"],
                            capture_output=True, text=True, timeout=120).stdout
    assert script.rstrip().endswith("-F hydra_bash_completion lightning-gans")


def test_completion_and_cfg_do_not_import_torch():
    """Every TAB press runs a query: it and --cfg compose the config without Lightning and torch
    (importing them took ~10 s a press on a 2-core machine)."""
    import os

    code = ("import sys; from lightning_gans.cli import main; rc = main(sys.argv[1:]); "
            "print('torch' in sys.modules, 'pytorch_lightning' in sys.modules, file=sys.stderr)")
    line = "lightning-gans train model=pa"
    for args, env in ((["-sc", "query=bash"], {"COMP_LINE": line, "COMP_POINT": str(len(line))}),
                      (["train", "--cfg", "job", "model=paper256"], {})):
        out = subprocess.run([sys.executable, "-c", code, *args], env={**os.environ, **env},
                             capture_output=True, text=True, timeout=120)
        assert out.stderr.strip().splitlines()[-1] == "False False", (args, out.stderr[-500:])
        assert "paper256" in out.stdout


def test_long_commands_show_a_bar_on_a_terminal_only(tmp_path, capsys, monkeypatch):
    from PIL import Image

    src = tmp_path / "imgs"
    src.mkdir()
    for i in range(3):
        Image.new("RGB", (16, 16), (i * 40, 0, 0)).save(src / f"{i}.png")
    monkeypatch.setenv("LG_PROGRESS", "1")  # stands in for a terminal
    assert main(["shards", str(src), str(tmp_path / "a"), "--resolution", "16"]) == 0
    assert "shards: 100%" in capsys.readouterr().err
    from lightning_gans.metrics.dataset_stats import compute_feature_stats

    stats = compute_feature_stats(src, lambda x: x.flatten(1)[:, :4].double(), batch_size=2)
    assert stats.num_items == 3 and "features of imgs: 3img" in capsys.readouterr().err  # fid, evaluate
    monkeypatch.delenv("LG_PROGRESS")  # pytest's stderr is no terminal: no bar
    assert main(["shards", str(src), str(tmp_path / "b"), "--resolution", "16"]) == 0
    assert "%|" not in capsys.readouterr().err
