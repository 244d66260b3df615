"""End-to-end StyleGAN2 training on the embedded demo data (CPU): losses, schedules, resume."""

import numpy as np
import pytest
import torch
from helpers.train_utils import RestoreCheck, read_metrics, series, train

from lightning_gans.checkpoint import safe_load
from lightning_gans.models.latents import seeds_to_z
from lightning_gans.modules.stylegan2 import StyleGAN2Module

FAST = ["experiment=demo", "logger=csv", "trainer.enable_progress_bar=false", "trainer.log_every_n_steps=1"]


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("demo_run")
    out = train(
        run_dir, *FAST, "trainer.max_steps=240", "callbacks.checkpoint.every_n_train_steps=120",
        "callbacks.samples.every_n_steps=120",
    )
    return run_dir, out


def test_run_outputs(demo_run):
    run_dir, out = demo_run
    assert out["global_step"] == 240
    assert (run_dir / "checkpoints" / "last.ckpt").is_file()
    assert (run_dir / "checkpoints" / "step0000120.ckpt").is_file()
    assert len(list((run_dir / "samples").glob("fakes-step*.png"))) >= 2
    assert (run_dir / "config.yaml").is_file()


def test_losses_move_and_schedules(demo_run):
    run_dir, _ = demo_run
    rows = read_metrics(run_dir)
    d_main = series(rows, "loss/D_main")
    g_main = series(rows, "loss/G_main")
    assert len(d_main) == 240 and len(g_main) == 240
    steps = sorted(d_main)
    first = np.mean([d_main[s] for s in steps[:10]])
    last = np.mean([d_main[s] for s in steps[-60:]])
    # D starts near chance (2 log 2 = 1.386) and learns to separate real from fake.
    assert 1.1 < first < 1.9
    assert last < 0.8 * first
    g_first = np.mean([g_main[s] for s in steps[:10]])
    g_last = np.mean([g_main[s] for s in steps[-60:]])
    assert g_last > g_first + 0.2  # ... so the generator's loss rises
    # Lazy regularization: R1 every 16 iterations, path length every 4, starting at iteration 0.
    r1 = sorted(series(rows, "reg/r1_penalty"))
    pl = sorted(series(rows, "reg/pl_penalty"))
    offset = steps[0]  # the logger's step of iteration 0
    assert [s - offset for s in r1] == list(range(0, 240, 16))
    assert [s - offset for s in pl] == list(range(0, 240, 4))
    kimg = series(rows, "kimg")
    assert kimg[steps[-1]] == pytest.approx(240 * 8 / 1000)


def test_ema_and_samples(demo_run):
    run_dir, _ = demo_run
    ckpt = safe_load(run_dir / "checkpoints" / "last.ckpt")
    model = StyleGAN2Module(**ckpt["hyper_parameters"])
    model.load_state_dict(ckpt["state_dict"])
    diff = max((a - b).abs().max().item() for a, b in zip(model.G.parameters(), model.G_ema.parameters()))
    assert diff > 1e-4, "G_ema should lag behind G"
    with torch.no_grad():
        imgs = model.G_ema(seeds_to_z([0, 1, 0], model.G_ema.z_dim), noise_mode="const")
    assert (imgs[0] - imgs[1]).abs().mean() > 0.01
    torch.testing.assert_close(imgs[0], imgs[2])
    assert ckpt["model_config"]["kind"] == "stylegan2"
    assert "rng" in ckpt and ckpt["global_step"] == 240


def test_resume_is_exact(tmp_path):
    n = 24
    common = [*FAST, f"trainer.max_steps={2 * n}", f"callbacks.checkpoint.every_n_train_steps={n}",
              "callbacks.samples.every_n_steps=0", "model.r1_interval=4", "model.pl_interval=2"]
    full = tmp_path / "full"
    train(full, *common)
    ckpt_path = full / "checkpoints" / f"step{n:07d}.ckpt"
    saved = safe_load(ckpt_path)

    resumed = tmp_path / "resumed"
    check = RestoreCheck(saved)
    train(resumed, *common, f"ckpt_path={ckpt_path}", callbacks=[check])
    assert check.result == {"model": True, "optim": True, "step": n}

    a, b = read_metrics(full), read_metrics(resumed)
    for key in ("loss/G_main", "loss/D_main", "reg/r1_penalty", "reg/pl_penalty"):
        sa, sb = series(a, key), series(b, key)
        assert sb, key
        for step, value in sb.items():
            assert value == pytest.approx(sa[step], rel=1e-5, abs=1e-6), (key, step)
    end_a = safe_load(full / "checkpoints" / "last.ckpt")["state_dict"]
    end_b = safe_load(resumed / "checkpoints" / "last.ckpt")["state_dict"]
    for k in end_a:
        torch.testing.assert_close(end_a[k], end_b[k], rtol=1e-5, atol=1e-6, msg=k)
