"""Videos of `interpolate`: a real mp4 with provenance when imageio-ffmpeg is there (the `video`
extra), an animated GIF and one notice when it is not."""

from __future__ import annotations

import hashlib
import json
import sys

import numpy as np
import pytest
from helpers.synth_utils import make_checkpoint
from PIL import Image

from lightning_gans.commands.interpolate import main as interpolate_main
from lightning_gans.commands.provenance import main as provenance_main
from lightning_gans.synthesis.common import SynthesisError
from lightning_gans.synthesis.video import file_provenance, have_ffmpeg, mp4_comment, write_video

pytestmark = pytest.mark.usefixtures("one_thread")
needs_ffmpeg = pytest.mark.skipif(not have_ffmpeg(), reason="imageio-ffmpeg not installed (pip install '.[video]')")


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    return make_checkpoint(tmp_path_factory.mktemp("ckpt") / "tiny.ckpt")


def luma(x: np.ndarray) -> np.ndarray:
    return x.astype(np.float64) @ np.array([0.299, 0.587, 0.114])


@pytest.fixture
def no_ffmpeg(monkeypatch):
    """imageio-ffmpeg made unimportable, as on an install without the `video` extra."""
    monkeypatch.setitem(sys.modules, "imageio_ffmpeg", None)
    assert not have_ffmpeg()


@needs_ffmpeg
def test_interpolate_writes_decodable_mp4_with_provenance(ckpt, tmp_path, capsys):
    import imageio.v2 as imageio

    out = tmp_path / "walk"
    assert interpolate_main([str(ckpt), "--seeds", "1,2", "--frames", "5", "--fps", "24", "--outdir", str(out)]) == 0
    assert "notice" not in capsys.readouterr().err
    mp4 = out / "interpolation.mp4"
    with imageio.get_reader(mp4) as r:
        decoded = np.stack([f for f in r])  # not list(r): len() of a stream is inf
        assert r.get_meta_data()["fps"] == 24
    pngs = np.stack([np.asarray(Image.open(p)) for p in sorted((out / "frames").glob("*.png"))])
    assert decoded.shape == pngs.shape == (6, 32, 32, 3)
    # H.264 at CRF 10 in yuv420p: luma within ~2.2/255 mean (measured) on these noise-like 32 px
    # frames; the RGB error is larger (~26) because 4:2:0 halves the chroma resolution.
    first = np.abs(luma(decoded[0]) - luma(pngs[0])).mean()
    assert first < 5, first
    assert first < 0.5 * np.abs(luma(decoded[0]) - luma(pngs[-1])).mean()  # it is frame 0, not another
    # provenance: in the mp4 itself (comment tag), and the sidecar says the same
    sha = hashlib.sha256(ckpt.read_bytes()).hexdigest()
    tag = json.loads(mp4_comment(mp4))
    assert tag["synthetic"] == "true" and tag["checkpoint_sha256"] == sha and tag["num_frames"] == "6"
    assert tag == json.loads((out / "interpolation.mp4.json").read_text())
    (out / "interpolation.mp4.json").unlink()  # the tag alone is enough
    assert file_provenance(mp4) == tag
    capsys.readouterr()
    assert provenance_main([str(mp4)]) == 0
    assert sha in capsys.readouterr().out


@needs_ffmpeg
def test_mp4_odd_size_and_grey(tmp_path):
    import imageio.v2 as imageio

    frames = np.random.RandomState(0).randint(0, 256, (3, 33, 31, 1), dtype=np.uint8)
    path = write_video(frames, tmp_path / "odd", 10, {"synthetic": "true"}, "mp4")
    with imageio.get_reader(path) as r:
        decoded = np.stack([f for f in r])  # not list(r): len() of a stream is inf
    assert decoded.shape == (3, 34, 32, 3)  # padded to even: yuv420p needs it
    meta = file_provenance(path)  # write_video records that frames this small get no watermark
    assert meta == {"synthetic": "true", "watermark": meta["watermark"]}
    assert meta["watermark"].startswith("none (output below 256 px")


def test_gif_fallback_without_ffmpeg(ckpt, tmp_path, capsys, no_ffmpeg):
    out = tmp_path / "walk"
    assert interpolate_main([str(ckpt), "--seeds", "1,2", "--frames", "2", "--outdir", str(out)]) == 0
    err = capsys.readouterr().err
    notices = [ln for ln in err.splitlines() if ln.startswith("notice:")]
    assert len(notices) == 1 and "imageio-ffmpeg is not installed" in notices[0] and "GIF" in notices[0], err
    assert not list(out.glob("*.mp4"))
    with Image.open(out / "interpolation.gif") as im:
        assert im.n_frames == 3
    assert file_provenance(out / "interpolation.gif")["num_frames"] == "3"
    with pytest.raises(SynthesisError, match="--format mp4: imageio-ffmpeg is not installed"):
        interpolate_main([str(ckpt), "--seeds", "1,2", "--format", "mp4", "--outdir", str(tmp_path / "o")])
    assert not (tmp_path / "o").exists()
    write_video(np.zeros((2, 8, 8, 3), np.uint8), tmp_path / "quiet", 10, {}, "gif")
    assert "notice" not in capsys.readouterr().err  # GIF asked for: nothing to say


def test_provenance_of_files_without_it(tmp_path):
    junk = tmp_path / "junk.mp4"
    junk.write_bytes(b"\x00\x00\x00\x10ftypisom" + b"\xff" * 40)
    assert file_provenance(junk) == {} and mp4_comment(junk) is None
    with pytest.raises(SynthesisError, match="uint8 frames"):
        write_video(np.zeros((0, 8, 8, 3), np.uint8), tmp_path / "empty", 10, {})
