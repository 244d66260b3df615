"""The optional dlib face backend (HOG/CNN detector + 68-point landmarks reduced to the 5 the
FFHQ aligner takes) on the astronaut portrait, against MTCNN, and inside prepare-faces
(lightning_gans.data.faces.dlib_backend)."""

import io
import json
import sys
import tarfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from skimage import data

from lightning_gans.commands import prepare_faces as prepare_faces_cmd
from lightning_gans.data.faces import dlib_backend, mtcnn, worker
from lightning_gans.data.faces.align import align_face, ffhq_crop
from lightning_gans.errors import ConfigError, DataError
from lightning_gans.pretrained.weights import MTCNN_INSTALL

HAVE_DLIB = dlib_backend.available()
needs_dlib = pytest.mark.skipif(
    not HAVE_DLIB, reason=f"dlib backend not installed: {dlib_backend.INSTALL_HINT}")

# Hand-marked on skimage.data.astronaut() (as in test_faces_detect.py): iris centres, nose tip,
# mouth corners, image-left first.
MARKED = np.array([(203.0, 101.5), (245.5, 102.5), (224.0, 126.0), (203.0, 140.0), (244.5, 141.0)])
ASTRO = data.astronaut()


def _err(lm: np.ndarray, expected: np.ndarray) -> np.ndarray:
    return np.hypot(*(np.asarray(lm) - expected).T)


@pytest.fixture(scope="module")
def hog():
    return dlib_backend.DlibDetector("hog", note=False)


@needs_dlib
def test_finds_the_astronaut_and_her_landmarks(hog):
    found = hog.detect(ASTRO)
    best = found[0]  # best score first
    assert best.score > 0.99  # margin ~1.5: a clear frontal face
    x1, y1, x2, y2 = best.box
    assert 165 < x1 < 195 and 70 < y1 < 95 and 255 < x2 < 280 and 160 < y2 < 185
    # Eye centres (means of points 36-41 / 42-47) and mouth corners (48, 54): ~2 px off the
    # hand marks at most (the right eye's mean sits 1.5 px below its iris centre).
    assert _err(best.landmarks, MARKED).max() < 3.0, _err(best.landmarks, MARKED)
    assert all(d.score < 0.9 for d in found[1:])
    # Searching for smaller faces scans an enlarged copy: the same face, same landmarks +-1 px.
    small = hog.detect(ASTRO, min_size=32)
    assert len([d for d in small if d.score > 0.9]) == 1
    assert _err(small[0].landmarks, MARKED).max() < 3.5


@needs_dlib
def test_mirrored_photo_mirrors_the_landmarks(hog):
    best = hog.detect(np.ascontiguousarray(ASTRO[:, ::-1]))[0]
    expected = MARKED[[1, 0, 2, 4, 3]] * (-1, 1) + (511, 0)  # still image-left first
    assert _err(best.landmarks, expected).max() < 3.5


@needs_dlib
def test_no_face_in_a_cup_of_coffee(hog):
    assert [d for d in hog.detect(data.coffee(), min_size=40) if d.score > 0.9] == []


@needs_dlib
def test_refine_on_full_resolution_matches_direct_detection(hog):
    big = Image.fromarray(ASTRO).resize((1536, 1536), Image.Resampling.LANCZOS)
    small = big.resize((512, 512), Image.Resampling.BOX)
    d = hog.detect(small)[0]
    scores, lm = hog.refine(big, (d.box[None] + 0.5) * 3 - 0.5)
    assert np.isnan(scores).all()  # the shape predictor does not score
    assert _err(lm[0], (MARKED + 0.5) * 3 - 0.5).max() < 3 * 3.0


@needs_dlib
def test_scores_map_margins_onto_min_score(hog):
    # margin 0 (dlib's own threshold) -> 0.5; the default --min-score 0.9 -> margin 0.55.
    assert dlib_backend.score_from_margin(0.0) == 0.5
    assert abs(dlib_backend.margin_from_score(0.9) - np.log(9) / 4) < 1e-12
    assert hog.threshold == 0.0  # min_score 0.5 (default): dlib's own cut
    # A lower --min-score makes HOG report weaker candidates too, all above that score.
    loose = dlib_backend.DlibDetector("hog", min_score=0.2, note=False)
    assert loose.threshold < 0
    weak = loose.detect(ASTRO, min_size=40)
    assert len(weak) > len(hog.detect(ASTRO, min_size=40))
    assert min(d.score for d in weak) >= 0.2 and weak[0].score > 0.99


@needs_dlib
def test_alignment_matches_mtcnn():
    """The two backends' landmarks differ by ~1-3 px per point (MTCNN marks eyes at the iris,
    dlib averages the eyelid contour), which must leave the aligned crop nearly unchanged.

    Bound: the crops differ less than the hand-marked crop does from itself moved by one source
    pixel (3/4 of an output pixel at 128 px): a misregistration no one sees in a training set.
    The mean absolute error is large in grey levels for such a shift because the astronaut's
    crop is full of hard edges (flag stripes, suit); hence the calibration, not a fixed number.
    """
    try:
        detector = mtcnn.MTCNN()
    except DataError:
        pytest.skip(f"no MTCNN weights: {MTCNN_INSTALL}")
    lm_mtcnn = max(detector.detect(ASTRO), key=lambda d: d.score).landmarks
    lm_dlib = dlib_backend.DlibDetector(note=False).detect(ASTRO)[0].landmarks
    res = 128
    a_mtcnn, a_dlib = align_face(ASTRO, lm_mtcnn, res), align_face(ASTRO, lm_dlib, res)
    a_marked, a_moved = align_face(ASTRO, MARKED, res), align_face(ASTRO, MARKED + 1.0, res)

    def mae(a, b):
        return float(np.abs(a.astype(np.float64) - b.astype(np.float64)).mean())

    assert mae(a_mtcnn, a_dlib) < mae(a_marked, a_moved), (mae(a_mtcnn, a_dlib),
                                                             mae(a_marked, a_moved))
    # Geometry: the crop squares' corners agree within 2% of the side (~1.5% measured).
    q_m, q_d = ffhq_crop(lm_mtcnn), ffhq_crop(lm_dlib)
    assert np.abs(q_m.quad - q_d.quad).max() < 0.02 * q_m.size
    assert abs(q_m.size / q_d.size - 1) < 0.02


@needs_dlib
def test_cnn_detector_finds_the_astronaut():
    cnn = dlib_backend.DlibDetector("cnn", note=False)
    best = cnn.detect(ASTRO)[0]  # ~1.6 s on one core: the CNN is the slow, robust option
    assert best.score > 0.95
    assert _err(best.landmarks, MARKED).max() < 3.0


@needs_dlib
def test_landmark_model_file_is_checked(tmp_path, hog, capsys, monkeypatch):
    models = dlib_backend.models_dir()
    explicit = dlib_backend.DlibDetector(landmark_model=models / dlib_backend.LANDMARKS_68)
    assert np.array_equal(explicit.detect(ASTRO)[0].landmarks, hog.detect(ASTRO)[0].landmarks)
    assert "iBUG" not in capsys.readouterr().err  # a model of your own: no licence note
    with pytest.raises(DataError, match="marks 5 points.*68-point"):
        dlib_backend.DlibDetector(landmark_model=models / dlib_backend.FIVE_POINT)
    (tmp_path / "junk.dat").write_bytes(b"not a model")
    with pytest.raises(DataError, match="not a dlib shape predictor"):
        dlib_backend.DlibDetector(landmark_model=tmp_path / "junk.dat")
    with pytest.raises(DataError, match="no such file"):
        dlib_backend.DlibDetector(landmark_model=tmp_path / "missing.dat")
    # The bundled model prints its licence note, once per process.
    monkeypatch.setattr(dlib_backend, "_noted", False)
    dlib_backend.DlibDetector()
    dlib_backend.DlibDetector()
    assert capsys.readouterr().err.count("excludes commercial use") == 1


def _samples(out: Path) -> dict[str, dict]:
    """source -> json meta of every sample in OUT's shards."""
    metas = {}
    for shard in json.loads((out / "manifest.json").read_text())["shards"]:
        with tarfile.open(out / shard["name"]) as tf:
            for m in tf:
                if m.name.endswith(".json"):
                    meta = json.loads(tf.extractfile(m).read())
                    metas[meta["source"]] = meta
    return metas


@needs_dlib
def test_prepare_faces_with_dlib(tmp_path, capsys):
    inp = tmp_path / "in"
    inp.mkdir()
    astro = Image.fromarray(ASTRO)
    buf = io.BytesIO()
    astro.save(buf, "JPEG", quality=92)
    (inp / "good.jpg").write_bytes(buf.getvalue())
    astro.transpose(Image.Transpose.FLIP_LEFT_RIGHT).save(inp / "mirrored.png")
    Image.fromarray(data.coffee()).save(inp / "coffee.png")
    canvas = Image.new("RGB", (640, 480), (120, 130, 140))
    canvas.paste(astro.resize((256, 256), Image.Resampling.LANCZOS), (200, 100))
    canvas.save(inp / "tiny_face.png")
    out = tmp_path / "out"
    assert prepare_faces_cmd.main([str(inp), str(out), "--resolution", "64", "--min-face", "60",
                         "--detector", "dlib", "--dup-distance", "-1"]) == 0
    files = json.loads((out / "report.json").read_text())
    assert files["options"]["backend"] == "dlib"
    assert {k: (v["status"], v["reason"]) for k, v in files["files"].items()} == {
        "good.jpg": ("written", None), "mirrored.png": ("written", None),
        "coffee.png": ("skipped", "no face"), "tiny_face.png": ("skipped", "small face")}
    metas = _samples(out)
    assert sorted(metas) == ["good.jpg", "mirrored.png"]
    good = metas["good.jpg"]
    assert good["detector"] == "dlib" and good["score"] > 0.95
    assert good["landmark_model"] == dlib_backend.LANDMARKS_68
    assert _err(good["landmarks"], MARKED).max() < 4.0  # JPEG q92 of the same photo
    assert capsys.readouterr().err.count("excludes commercial use") <= 1


def test_missing_dlib_gives_the_pip_command(tmp_path, monkeypatch):
    """Runs without dlib too: the error a user without the optional packages sees."""
    (tmp_path / "in").mkdir()
    Image.fromarray(ASTRO).save(tmp_path / "in" / "a.png")
    monkeypatch.setattr(worker, "_detector", None)  # no cached detector from another test
    monkeypatch.setitem(sys.modules, "dlib", None)  # `import dlib` now raises ImportError
    with pytest.raises(DataError, match="pip install dlib-bin==20.0.1.post1 "
                                        "face-recognition-models==0.3.0"):
        prepare_faces_cmd.main([str(tmp_path / "in"), str(tmp_path / "out"), "--backend", "dlib"])
    assert not (tmp_path / "out").exists()  # failed before touching OUT
    monkeypatch.setitem(sys.modules, "face_recognition_models", None)
    with pytest.raises(DataError, match="face-recognition-models"):
        dlib_backend.models_dir()
    assert not dlib_backend.available()
    with pytest.raises(ConfigError, match="--landmark-model needs a dlib backend"):
        prepare_faces_cmd.main(["in", "out", "--landmark-model", "x.dat"])
