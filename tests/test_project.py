"""Projection into W/W+ (StyleGAN2 projector schedule) on a tiny StyleGAN2, CPU, single thread."""

import numpy as np
import pytest
import torch
from helpers.synth_utils import make_checkpoint
from PIL import Image

from lightning_gans.commands.project import main as project_main
from lightning_gans.commands.style_mix import main as stylemix_main
from lightning_gans.errors import DataError
from lightning_gans.pretrained.lpips import LPIPS
from lightning_gans.pretrained.vgg import LPIPS_CHANNELS, VGG16Features
from lightning_gans.synthesis.generate import as_generator, generate
from lightning_gans.synthesis.project import ProjectSchedule, noise_regularization, project
from lightning_gans.synthesis.video import file_provenance

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    # No per-pixel noise in G_ema: the projector fits its own noise maps, and with the synthesis
    # tests' strength 0.2 the target's noise alone leaves an MSE floor of ~0.2 that says nothing
    # about whether w was recovered.
    return make_checkpoint(tmp_path_factory.mktemp("ckpt") / "tiny.ckpt", noise_strength=0.0)


def test_schedule_matches_the_paper():
    s = ProjectSchedule()  # 1000 steps, lr 0.1, ramp-up 5%, ramp-down 25%, noise to 0 at 75%
    assert s.learning_rate(0) == 0
    assert s.learning_rate(25) == pytest.approx(0.05)          # half-way up the linear ramp
    assert s.learning_rate(50) == pytest.approx(0.1)
    assert s.learning_rate(750) == pytest.approx(0.1)
    assert s.learning_rate(875) == pytest.approx(0.05)         # half-way down the cosine
    assert s.w_noise_scale(0, 2.0) == pytest.approx(0.1)       # 0.05 * w_std
    assert s.w_noise_scale(375, 2.0) == pytest.approx(0.1 * 0.25)
    assert s.w_noise_scale(750, 2.0) == 0


def test_noise_regularization():
    # A constant map is fully correlated at every scale: 1 + 1 per scale, scales 32, 16, 8 -> 6.
    assert noise_regularization([torch.ones(32, 32)]).item() == pytest.approx(6.0)
    white = torch.randn(32, 32, generator=torch.Generator().manual_seed(0))
    assert noise_regularization([white]).item() < 0.02


def test_projection_recovers_a_generated_image(ckpt):
    """Threshold, measured: target = seed 7's image; its MSE to the mean image (truncation 0,
    i.e. where the projection starts) is ~1.4 and to other seeds' images ~2.6. In W, 150 steps
    bring the MSE to ~0.05 (100 steps: 0.09, 300: 0.03; W+ is lower still), so < 10% of the
    starting error holds with margin, and a broken schedule/gradient (the error stays near the
    mean image's) fails it by an order of magnitude."""
    gen = as_generator(ckpt)
    target = generate(gen, [7])
    start = (generate(gen, [7], truncation_psi=0) - target).square().mean().item()
    res = project(gen, target[0], space="w", schedule=ProjectSchedule(steps=150, w_avg_samples=2000))
    err = (res.image - target).square().mean().item()
    assert err < 0.1 * start, (err, start)
    assert res.ws.shape == (1, gen.G.num_ws, gen.G.w_dim)
    assert torch.equal(res.ws[0, 0], res.ws[0, -1])  # W: one w for all layers
    assert res.distance == "mse" and len(res.losses) == 150 and res.losses[-1] < 0.2 * res.losses[0]


def test_projection_with_lpips_gradient(ckpt):
    # LPIPS from a randomly initialised VGG16 (the real weights are not on this machine): this
    # checks the gradient reaches w through LPIPS, not the distance's quality.
    torch.manual_seed(0)
    lp = LPIPS(VGG16Features(), [torch.rand(c) for c in LPIPS_CHANNELS], "torchvision+lpips", "random")
    gen = as_generator(ckpt)
    target = generate(gen, [7])
    res = project(gen, target[0], space="w+", lpips=lp, schedule=ProjectSchedule(steps=3, w_avg_samples=500))
    assert res.distance == "lpips" and all(np.isfinite(res.losses))
    assert not torch.equal(res.ws[0, 0], res.ws[0, 1])  # W+: layers moved apart


def test_project_cli_outputs_feed_style_mix(ckpt, tmp_path, capsys):
    photo = tmp_path / "face.jpg"
    rng = np.random.RandomState(0)
    Image.fromarray(rng.randint(0, 255, (48, 64, 3), dtype=np.uint8)).save(photo)  # not square: cropped
    out = tmp_path / "proj"
    assert project_main([str(ckpt), str(photo), "--steps", "4", "--space", "w+", "--video",
                             "--outdir", str(out)]) == 0
    assert "projecting with MSE" in capsys.readouterr().out
    with np.load(out / "projected_w.npz") as f:
        assert f["w"].shape == (1, 8, 128) and str(f["synthetic"]) == "true"
    meta = file_provenance(out / "projected.png")
    assert meta["synthetic"] == "true" and meta["photo"] == "face.jpg" and meta["distance"] == "mse"
    assert file_provenance(out / "target.png")["synthetic"] == "false"
    (video,) = [v for v in out.glob("projection.*") if v.suffix in (".mp4", ".gif")]  # mp4 with ffmpeg
    assert file_provenance(video)["command"] == "project"
    assert stylemix_main([str(ckpt), "--row-latent", str(out / "projected_w.npz"), "--cols", "1,2",
                          "--outdir", str(tmp_path / "mix")]) == 0
    assert Image.open(tmp_path / "mix" / "stylemix-grid.png").size == (3 * 32, 2 * 32)


def test_project_bad_photo(ckpt, tmp_path):
    bad = tmp_path / "photo.jpg"
    bad.write_bytes(b"this is not a jpeg")
    with pytest.raises(DataError, match=r"photo .*photo.jpg is not a usable image"):
        project_main([str(ckpt), str(bad), "--outdir", str(tmp_path / "o")])
    with pytest.raises(DataError, match="cannot be read"):
        project_main([str(ckpt), str(tmp_path / "missing.jpg"), "--outdir", str(tmp_path / "o")])
