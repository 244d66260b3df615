"""Two-process DDP on the CPU (gloo): different data per rank, identical weights, global kimg."""

import json
import os
import subprocess
import sys
from pathlib import Path

TESTS = Path(__file__).resolve().parent


def run_train(run_dir: Path, probe_dir: Path, *overrides: str, experiment: str = "demo",
              probe: str = "RecordBatches") -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=f"{TESTS}{os.pathsep}{os.environ.get('PYTHONPATH', '')}")
    quiet = "callbacks.samples.every_n_steps=0" if experiment == "demo" else "callbacks.stargan_samples=null"
    cmd = [sys.executable, "-m", "lightning_gans", "train", f"experiment={experiment}", "logger=csv",
           "trainer.enable_progress_bar=false", quiet,
           f"hydra.run.dir={run_dir}", f"+callbacks.probe._target_=ddp_probe.{probe}",
           f"+callbacks.probe.out_dir={probe_dir}", *overrides]
    return subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)


def test_two_process_ddp(tmp_path):
    out = run_train(tmp_path / "run", tmp_path / "probe", "trainer=ddp", "trainer.accelerator=cpu",
                    "trainer.devices=2", "trainer.max_steps=6", "model.r1_interval=2", "model.pl_interval=2")
    assert out.returncode == 0, out.stderr[-3000:]
    r0, r1 = (json.loads((tmp_path / "probe" / f"rank{i}.json").read_text()) for i in (0, 1))
    assert r0["world"] == r1["world"] == 2
    # the global batch of 8 is split: 4 per rank, and the ranks saw different images
    assert r0["batch_sizes"] == r1["batch_sizes"] == [4] * 6
    assert not set(r0["samples"]) & set(r1["samples"])
    # gradients are averaged, running stats too: both ranks hold the same networks
    assert r0["G_checksum"] == r1["G_checksum"] and r0["D_checksum"] == r1["D_checksum"]
    assert r0["w_avg"] == r1["w_avg"]
    # schedules count global images
    assert r0["nimg"] == r1["nimg"] == 6 * 8
    # only rank 0 writes checkpoints and logs
    assert sorted(p.name for p in (tmp_path / "run" / "checkpoints").iterdir()) == ["last.ckpt"]


def test_two_process_ddp_stargan_v2(tmp_path):
    """StarGAN v2's four networks stay identical across ranks (every one of its five optimizer
    steps per iteration averages that network's grads), and ranks draw different sources."""
    out = run_train(tmp_path / "run", tmp_path / "probe", "trainer=ddp", "trainer.accelerator=cpu",
                    "trainer.devices=2", "trainer.max_steps=3", "model.batch_size=4",
                    experiment="stargan_v2_demo", probe="RecordNetworks")
    assert out.returncode == 0, out.stderr[-3000:]
    r0, r1 = (json.loads((tmp_path / "probe" / f"rank{i}.json").read_text()) for i in (0, 1))
    assert r0["world"] == r1["world"] == 2 and r0["global_step"] == 3
    assert len(r0["samples"]) == len(r1["samples"]) == 3 * 2  # global batch 4: 2 per rank
    assert r0["samples"] != r1["samples"]
    assert set(r0["checksums"]) == {"generator", "mapping_network", "style_encoder", "discriminator"}
    assert r0["checksums"] == r1["checksums"]


def test_plain_ddp_strategy_is_refused(tmp_path):
    out = run_train(tmp_path / "run", tmp_path / "probe", "trainer.strategy=ddp", "trainer.accelerator=cpu",
                    "trainer.devices=1", "trainer.max_steps=2")
    assert out.returncode == 2
    assert "trainer=ddp" in out.stderr.strip().splitlines()[-1]
