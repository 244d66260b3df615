"""`lightning-gans interpolate` on a StarGAN v2 checkpoint: style-code walks between references
(or mapping-network codes of seeds) applied to one source face, on a tiny untrained model."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers.synth_utils import make_checkpoint, make_stargan_checkpoint
from PIL import Image

from lightning_gans.cli import main as cli_main
from lightning_gans.commands.interpolate import main as interpolate_main
from lightning_gans.commands.provenance import main as provenance_main
from lightning_gans.errors import DataError, LGError
from lightning_gans.synthesis import as_stargan, interpolate_styles, transfer
from lightning_gans.synthesis.common import SynthesisError
from lightning_gans.synthesis.images import to_uint8
from lightning_gans.synthesis.transfer import load_images
from lightning_gans.synthesis.video import file_provenance

pytestmark = pytest.mark.usefixtures("one_thread")
RES = 32


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory) -> Path:
    return make_stargan_checkpoint(tmp_path_factory.mktemp("ckpt") / "sgv2.ckpt", RES)


@pytest.fixture(scope="module")
def net(ckpt):
    return as_stargan(ckpt)


@pytest.fixture(scope="module")
def faces(tmp_path_factory) -> tuple[Path, Path]:
    """A source face and a folder of 3 reference faces (random pixels, non-square: cropped)."""
    root = tmp_path_factory.mktemp("faces")
    (root / "ref").mkdir()
    for name, seed in (("src.png", 0), ("ref/a.png", 1), ("ref/b.jpg", 2), ("ref/c.png", 3)):
        arr = np.random.RandomState(seed).randint(0, 256, (48, 40, 3), dtype=np.uint8)
        Image.fromarray(arr).save(root / name)
    return root / "src.png", root / "ref"


def test_reference_walk_ends_are_transfer_outputs(net, faces):
    src, ref = faces
    refs = sorted(ref.iterdir())
    imgs, styles = interpolate_styles(net, src, refs, domain=1, frames=4)
    assert imgs.shape == (2 * 4 + 1, 3, RES, RES) and styles.shape == (9, 16)
    plain = transfer(net, src, ref, domain=1)["reference_guided"][:, 0]  # [3 refs, 3, R, R]
    for k in range(3):  # keyframes: bit-equal to transfer with the same references
        assert torch.equal(imgs[4 * k], plain[k]), k
    # ... and to transfer with only that reference up to CPU kernels' batch-size rounding (~7e-6)
    first = transfer(net, src, refs[0], domain=1)["reference_guided"][0, 0]
    torch.testing.assert_close(imgs[0], first, rtol=0, atol=5e-5)
    # linear in style space, and the frames in between are new images
    torch.testing.assert_close(styles[2], (styles[0] + styles[4]) / 2)
    for i in (1, 2, 3, 5):
        assert (imgs[i] - imgs[4 * (i // 4)]).abs().mean() > 1e-3
        assert (imgs[i] - imgs[4 * (i // 4 + 1)]).abs().mean() > 1e-3


def test_latent_walk_ends_are_transfer_outputs(net, faces):
    src, _ = faces
    imgs, _ = interpolate_styles(net, src, seeds=[3, 4], domain="0", frames=3)
    plain = transfer(net, src, None, domain=0, latent_seeds=[3, 4])["latent_guided"][:, 0]
    assert imgs.shape[0] == 4
    assert torch.equal(imgs[0], plain[0]) and torch.equal(imgs[-1], plain[1])
    assert (imgs[1] - imgs[0]).abs().mean() > 1e-3 and (imgs[2] - imgs[3]).abs().mean() > 1e-3


def test_cli_frames_and_video_carry_provenance(ckpt, net, faces, tmp_path, capsys):
    src, ref = faces
    out = tmp_path / "walk"
    assert interpolate_main([str(ckpt), "--source", str(src), "--references", f"{ref / 'a.png'},{ref / 'c.png'}",
                             "--domain", "1", "--frames", "3", "--format", "gif", "--outdir", str(out)]) == 0
    frames = sorted((out / "frames").glob("*.png"))
    assert len(frames) == 4
    sha = hashlib.sha256(ckpt.read_bytes()).hexdigest()
    for i, f in enumerate(frames):
        meta = file_provenance(f)
        assert meta["synthetic"] == "true" and meta["checkpoint_sha256"] == sha and meta["model_kind"] == "stargan_v2"
        assert meta["frame"] == str(i) and meta["domain"] == "1" and meta["mode"] == "reference-guided"
        assert meta["reference_files"] == "a.png,c.png" and meta["source_file"] == "src.png"
        assert meta["keyframe_position"] == f"{i / 3:.4f}"
    video = out / "interpolation.gif"
    with Image.open(video) as im:
        assert im.n_frames == 4 and im.size == (RES, RES)
    vmeta = file_provenance(video)
    assert vmeta["num_frames"] == "4" and vmeta["checkpoint_sha256"] == sha and vmeta["command"] == "interpolate"
    # the PNG ends are the (quantized) transfer outputs for a and c
    x_ref = load_images([ref / "a.png", ref / "c.png"], RES, "--reference")
    plain = to_uint8(transfer(net, src, x_ref, 1)["reference_guided"][:, 0])
    assert np.array_equal(np.asarray(Image.open(frames[0])), plain[0])
    assert np.array_equal(np.asarray(Image.open(frames[-1])), plain[1])
    capsys.readouterr()
    assert provenance_main([str(f) for f in frames] + [str(video)]) == 0
    assert capsys.readouterr().out.count(sha) == 5
    # latent-guided through the umbrella CLI, video only
    lat = tmp_path / "lat"
    assert cli_main(["interpolate", str(ckpt), "--source", str(src), "--seeds", "1,2,3", "--domain", "0",
                     "--frames", "2", "--format", "gif", "--no-frames", "--network", "G", "--outdir", str(lat)]) == 0
    assert not (lat / "frames").exists()
    meta = file_provenance(lat / "interpolation.gif")
    assert meta["mode"] == "latent-guided" and meta["seeds"] == "1,2,3" and meta["network"] == "G"
    assert meta["num_frames"] == "5"


def _cli_error(argv: list[str], capsys) -> str:
    """Run `lightning-gans ARGV`, expect the one-line user error, return it."""
    capsys.readouterr()
    assert cli_main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err and "Traceback" not in err, err
    return err


def test_bad_input_errors(ckpt, faces, tmp_path, capsys):
    src, ref = faces
    refs = f"{ref / 'a.png'},{ref / 'b.jpg'}"
    base = ["interpolate", str(ckpt), "--source", str(src), "--outdir", str(tmp_path / "o"), "--format", "gif"]
    err = _cli_error(base + ["--references", refs, "--domain", "1", "--truncation", "0.7", "--space", "z"], capsys)
    assert "--truncation, --space: StyleGAN option(s)" in err and "StarGAN v2 checkpoint" in err
    sg2 = make_checkpoint(tmp_path / "sg2.ckpt")
    err = _cli_error(["interpolate", str(sg2), "--seeds", "1,2", "--source", str(src), "--domain", "0"], capsys)
    assert "--source, --domain: StarGAN v2 option(s)" in err and "'stylegan2' model" in err
    assert "out of range" in _cli_error(base + ["--references", refs, "--domain", "2"], capsys)
    assert "not a domain" in _cli_error(base + ["--references", refs, "--domain", "cat"], capsys)
    assert "needs --domain" in _cli_error(base + ["--references", refs], capsys)
    assert "one of them" in _cli_error(base + ["--references", refs, "--seeds", "1,2", "--domain", "0"], capsys)
    assert "at least 2 keyframes" in _cli_error(base + ["--references", str(ref / "a.png"), "--domain", "0"], capsys)
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"not an image at all")
    err = _cli_error(base + ["--references", f"{ref / 'a.png'},{bad}", "--domain", "0"], capsys)
    assert "bad.png: not a readable image" in err
    assert "no such file" in _cli_error(base + ["--references", f"{ref / 'a.png'},{ref / 'zz.png'}",
                                                "--domain", "0"], capsys)
    assert "give one face" in _cli_error(["interpolate", str(ckpt), "--source", str(ref), "--references", refs,
                                          "--domain", "0", "--outdir", str(tmp_path / "o")], capsys)
    assert not (tmp_path / "o").exists()  # every check ran before anything was written
    with pytest.raises(SynthesisError, match="--frames 0"):
        interpolate_styles(ckpt, src, ref, domain=0, frames=0)
    with pytest.raises(DataError, match=r"expected \[N, 3, 32, 32\]"):
        interpolate_styles(ckpt, torch.zeros(1, 3, 16, 16), ref, domain=0)
    assert issubclass(SynthesisError, LGError) and issubclass(DataError, LGError)
