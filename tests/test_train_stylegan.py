"""End-to-end progressive StyleGAN (v1) training on the embedded demo data (CPU): the run grows
8 -> 16 -> 32 px through two fade-ins; a resume in the middle of a fade-in continues exactly."""

import pytest
import torch
from helpers.train_utils import RestoreCheck, read_metrics, series, train

from lightning_gans.checkpoint import safe_load
from lightning_gans.modules.stylegan import StyleGANModule

# Batch 8 at 8 px, 4 above (also while 16 px fades in); 32 images stable + 32 fading per
# resolution. Iterations: 0-4 8 px stable | 5-10 16 px fading (alpha .25 ... .875) |
# 11-19 16 px stable | 20-26 32 px fading (alpha .125 ... .875) | 27- 32 px stable.
STEPS = 30  # a multiple of the checkpoint interval: last.ckpt is the end of the run
TINY = [
    "experiment=stylegan_demo", "logger=csv", "trainer.enable_progress_bar=false",
    "trainer.log_every_n_steps=1", "callbacks.samples.every_n_steps=0",
    "model.fmap_base=64", "model.fmap_max=16", "model.z_dim=32", "model.w_dim=32",
    "model.stable_kimg=0.032", "model.fade_kimg=0.032", "model.minibatch_dict={8: 8, 16: 4, 32: 4}",
    "model.minibatch_base=4", "++model.lr_dict.16=0.003", "model.lr_base=0.002",
    f"trainer.max_steps={STEPS}", "callbacks.checkpoint.every_n_train_steps=6",
]


@pytest.fixture(scope="module")
def full_run(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("stylegan_full")
    train(run_dir, *TINY)
    return run_dir


def test_grows_through_two_fade_ins(full_run):
    rows = read_metrics(full_run)
    res, alpha, lr = (series(rows, k) for k in ("progress/resolution", "progress/alpha", "progress/lr"))
    batch, phase = series(rows, "progress/batch"), series(rows, "progress/phase")
    steps = sorted(res)
    assert len(steps) == STEPS
    got = [(int(res[s]), round(alpha[s], 4), int(batch[s]), int(phase[s])) for s in steps]
    expect = ([(8, 1.0, 8, 0)] * 5 + [(16, a / 8, 4, 1) for a in range(2, 8)] + [(16, 1.0, 4, 2)] * 9
              + [(32, a / 8, 4, 3) for a in range(1, 8)] + [(32, 1.0, 4, 4)] * 3)
    assert got == expect
    assert [lr[s] for s in steps] == pytest.approx([0.002] * 5 + [0.003] * 15 + [0.002] * 10)
    d_main = series(rows, "loss/D_main")
    assert all(torch.isfinite(torch.tensor(v)) for v in d_main.values())
    assert series(rows, "kimg")[steps[-1]] == pytest.approx((5 * 8 + 25 * 4) / 1000)

    # Adam state was reset when the last phase began (iteration 27): three steps since.
    ckpt = safe_load(full_run / "checkpoints" / "last.ckpt")
    for opt in ckpt["optimizer_states"]:
        counts = {int(s["step"]) for s in opt["state"].values()}
        assert counts == {3}, counts
    assert ckpt["progress"] == {"kimg": 0.14, "lod": 0.0, "resolution": 32, "alpha": 1.0, "phase": 4}

    # G_ema renders at the final resolution and lags behind G.
    model = StyleGANModule(**ckpt["hyper_parameters"])
    model.load_state_dict(ckpt["state_dict"])
    diff = max((a - b).abs().max().item() for a, b in zip(model.G.parameters(), model.G_ema.parameters()))
    assert diff > 1e-5
    with torch.no_grad():
        img = model.G_ema(torch.randn([2, 32]), **model.synthesis_kwargs())
    assert img.shape == (2, 3, 32, 32)


def test_resume_mid_fade_in_is_exact(full_run, tmp_path):
    ckpt_path = full_run / "checkpoints" / "step0000006.ckpt"
    saved = safe_load(ckpt_path)
    # Six iterations trained (the last at alpha .25); the next one continues the fade-in at .375.
    assert saved["progress"] == {"kimg": 0.044, "lod": 1.625, "resolution": 16, "alpha": 0.375, "phase": 1}
    assert float(saved["state_dict"]["alpha"]) == 0.25 and int(saved["state_dict"]["resolution"]) == 16

    resumed = tmp_path / "resumed"
    def progress(pl_module):
        p = pl_module.schedule.at(int(pl_module.nimg))
        return (p.resolution, p.alpha, p.phase)

    check = RestoreCheck(saved, extra=progress)
    train(resumed, *TINY, f"ckpt_path={ckpt_path}", callbacks=[check])
    assert check.result == {"model": True, "optim": True, "extra": (16, 0.375, 1), "step": 6}

    a, b = read_metrics(full_run), read_metrics(resumed)
    assert len(series(b, "loss/D_main")) == STEPS - 6
    for key in ("progress/alpha", "progress/resolution", "loss/G_main", "loss/D_main", "reg/r1_penalty"):
        sa, sb = series(a, key), series(b, key)
        assert sb, key
        for step, value in sb.items():
            assert value == pytest.approx(sa[step], rel=1e-5, abs=1e-6), (key, step)
    end_a = safe_load(full_run / "checkpoints" / "last.ckpt")
    end_b = safe_load(resumed / "checkpoints" / "last.ckpt")
    assert end_b["progress"] == end_a["progress"]
    for k in end_a["state_dict"]:
        torch.testing.assert_close(end_a["state_dict"][k], end_b["state_dict"][k], rtol=1e-5, atol=1e-6, msg=k)


def test_model_config_is_the_official_1024_net(tmp_path):
    """`model=stylegan` at 1024 px: the official FFHQ counts (see models/stylegan.py's docstring
    for why rosinality's port has 512 fewer in G)."""
    from helpers.train_utils import compose_train
    from hydra.utils import instantiate

    from lightning_gans.summary import count_networks

    cfg = compose_train(tmp_path, "model=stylegan", "model.resolution=1024")
    counts = count_networks(instantiate(cfg.model, _convert_="all"))
    assert counts["G"] == 26_219_627 and counts["G.mapping"] == 2_101_248 and counts["D"] == 23_087_249
