"""Fine-tuning: init_from (ours or official), fresh optimizers, the one-command `finetune`."""

import numpy as np
import pytest
import torch
from helpers.parity_utils import parity_dir
from helpers.train_utils import read_metrics, series
from PIL import Image

from lightning_gans.checkpoint import safe_load
from lightning_gans.cli import main
from lightning_gans.errors import CheckpointError
from lightning_gans.modules.init_from import load_initial_weights
from lightning_gans.modules.stylegan2 import StyleGAN2Module
from lightning_gans.synthesis.latents import seeds_to_z

needs_parity = pytest.mark.skipif(parity_dir() is None, reason="../shared/parity (official outputs) not present")
SG2ADA_ARCH = dict(resolution=32, z_dim=512, w_dim=512, mapping_layers=8, channel_base=1024, channel_max=32)


@pytest.fixture(scope="module")
def converted(tmp_path_factory):
    """The official StyleGAN2-ADA fixture network, converted to our checkpoint format."""
    if parity_dir() is None:
        pytest.skip("../shared/parity not present")
    out = tmp_path_factory.mktemp("conv") / "sg2ada.ckpt"
    assert main(["convert", str(parity_dir() / "sg2ada"), str(out)]) == 0
    return out


@needs_parity
def test_init_from_copies_networks_not_run_state(converted):
    model = StyleGAN2Module(**SG2ADA_ARCH)
    left = load_initial_weights(model, converted)
    src = safe_load(converted)["state_dict"]
    for k in ("G.mapping.fc0.weight", "G_ema.synthesis.b32.torgb.weight", "D.b4.out.weight"):
        assert torch.equal(model.state_dict()[k], src[k])
    assert int(model.nimg) == 0 and set(left) >= {"nimg", "pl_mean"}


@needs_parity
def test_init_from_mismatch_is_one_line_error(converted):
    with pytest.raises(CheckpointError, match="shape") as e:
        load_initial_weights(StyleGAN2Module(**{**SG2ADA_ARCH, "channel_max": 16}), converted)
    assert "\n" not in str(e.value)
    with pytest.raises(CheckpointError):
        load_initial_weights(StyleGAN2Module(**{**SG2ADA_ARCH, "resolution": 64}), converted)


@needs_parity
def test_finetune_command_on_a_small_face_set(converted, tmp_path):
    rng = np.random.default_rng(0)
    photos = tmp_path / "faces"
    photos.mkdir()
    from skimage import data

    face = data.astronaut()[20:240, 120:340]
    for i in range(12):  # small aligned-face set: shifted, flipped crops of one portrait
        y, x = rng.integers(0, 20, size=2)
        crop = face[y : y + 200, x : x + 200]
        Image.fromarray(crop[:, ::-1] if i % 2 else crop).save(photos / f"{i}.png")
    out = tmp_path / "ft"
    rc = main(["finetune", "--photos", str(photos), "--from", str(converted), "--out", str(out), "--aligned",
               "--kimg", "0.032", "--batch", "4", "logger=csv", "trainer.log_every_n_steps=1",
               "trainer.enable_progress_bar=false", "data.num_workers=0", "callbacks.samples.every_n_steps=4"])
    assert rc == 0
    rows = read_metrics(out / "run")
    assert len(series(rows, "loss/G_main")) == 8
    assert all(np.isfinite(v) for v in series(rows, "loss/D_main").values())
    assert "ada/p" in rows[-1]
    start, end = safe_load(converted)["state_dict"], safe_load(out / "run" / "checkpoints" / "last.ckpt")
    assert end["global_step"] == 8 and end["hyper_parameters"]["freeze_d"] == 7
    model0, model1 = StyleGAN2Module(**SG2ADA_ARCH), StyleGAN2Module(**end["hyper_parameters"])
    model0.load_state_dict(start, strict=False)
    model1.load_state_dict(end["state_dict"])
    z = seeds_to_z([0, 1], 512)
    with torch.no_grad():
        a = model0.G_ema(z, noise_mode="const")
        b = model1.G_ema(z, noise_mode="const")
        g = model1.G(z, noise_mode="const")
    # G_ema (half-life 10 kimg) has barely moved after 32 images; G itself has moved more.
    assert 0 < (a - b).abs().mean() < 0.05
    assert (a - g).abs().mean() > (a - b).abs().mean()
