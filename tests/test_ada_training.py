"""ADA and freeze-D inside StyleGAN2 training: p moves by the controller's steps, is
checkpointed and resumed; frozen D layers never change."""

import numpy as np
import pytest
import torch
from helpers.train_utils import read_metrics, series, train

from lightning_gans.checkpoint import safe_load

ADA = ["experiment=demo", "logger=csv", "trainer.enable_progress_bar=false", "trainer.log_every_n_steps=1",
       "callbacks.samples.every_n_steps=0", "callbacks.checkpoint.every_n_train_steps=8",
       "model.ada_target=0.6", "model.ada_kimg=0.1", "model.freeze_d=4", "model.r1_interval=4"]


@pytest.fixture(scope="module")
def ada_run(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("ada")
    train(run_dir, *ADA, "trainer.max_steps=16")
    return run_dir


def test_p_moves_in_controller_steps(ada_run):
    p = series(read_metrics(ada_run), "ada/p")
    steps = sorted(p)
    assert len(steps) == 16
    step_size = 8 * 4 / 100  # global batch 8, every 4 iterations, ada_kimg 0.1
    changes = {s: p[s] - p[prev] for prev, s in zip(steps, steps[1:]) if p[s] != p[prev]}
    assert changes, "D becomes confident on reals quickly, so p must rise"
    for s, d in changes.items():
        assert (s - steps[0] + 1) % 4 == 0, f"p changed at step {s}, not on an update step"
        assert abs(abs(d) - step_size) < 1e-5 or p[s] == 0
    ckpt = safe_load(ada_run / "checkpoints" / "last.ckpt")
    assert ckpt["state_dict"]["augment_pipe.p"].item() == pytest.approx(p[steps[-1]], abs=1e-6)


def test_frozen_layers_never_change(ada_run):
    mid = safe_load(ada_run / "checkpoints" / "step0000008.ckpt")["state_dict"]
    end = safe_load(ada_run / "checkpoints" / "last.ckpt")["state_dict"]
    # freeze_d=4: the 32 px block (fromrgb, conv0, conv1, skip) is frozen
    frozen = [k for k in end if k.startswith("D.b32.") and k.endswith(("weight", "bias"))]
    assert frozen and all(torch.equal(mid[k], end[k]) for k in frozen)
    later = [k for k in end if k.startswith("D.b4.") and k.endswith("weight")]
    assert any(not torch.equal(mid[k], end[k]) for k in later)


def test_resume_continues_p(ada_run, tmp_path):
    resumed = tmp_path / "resumed"
    train(resumed, *ADA, "trainer.max_steps=16", f"ckpt_path={ada_run}/checkpoints/step0000008.ckpt")
    a, b = series(read_metrics(ada_run), "ada/p"), series(read_metrics(resumed), "ada/p")
    assert sorted(b) == sorted(a)[8:]
    np.testing.assert_allclose([b[s] for s in sorted(b)], [a[s] for s in sorted(b)], atol=1e-6)
