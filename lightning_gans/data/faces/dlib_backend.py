"""dlib face backend (optional): HOG or CNN (MMOD) face detector + 68-point shape predictor,
reduced to the 5 landmarks the FFHQ aligner takes.

Why a second backend: the FFHQ recipe itself (Karras et al. 2019) aligned faces with dlib's
68 landmarks, so this backend reproduces its geometry most directly; MTCNN stays the default
because its weights are MIT-licensed end to end.

Install (not a dependency of lightning_gans; imported only when `--backend dlib` runs):
    pip install dlib-bin==20.0.1.post1 face-recognition-models==0.3.0
`dlib-bin` is dlib's compiled Python module (Boost licence), with the HOG frontal face detector
built in. `face-recognition-models` only carries the model files; we locate them on disk and
never import that package (its `__init__` imports `pkg_resources`, which recent setuptools no
longer has: `face_recognition_models.pose_predictor_model_location()` fails here).

LICENCE NOTE: `shape_predictor_68_face_landmarks.dat` was trained on the iBUG 300-W dataset,
whose licence excludes commercial use: check what that means for the aligned faces before any
commercial use. `--landmark-model PATH` takes any other 68-point dlib predictor (e.g. one you
trained on data you may use). dlib's 5-point model (trained on dlib's own CC0 data) is not
an alternative here: it marks eye corners and the nose base but no mouth, and the FFHQ crop needs
the mouth corners (its eye-to-mouth vector sets the crop's scale for foreshortened faces and
half of its rotation), so it is refused with that reason rather than guessed around.

Landmarks: [left eye, right eye, nose tip, left mouth corner, right mouth corner], (x, y) pixel
indices, image-left first, as mtcnn.py and align.py use them. From the 68 iBUG points: eye
centres are the means of points 36-41 and 42-47 (the FFHQ recipe's eye points), the nose tip
is point 30, the mouth corners are points 48 and 54.

Scores: dlib's detectors give an SVM / MMOD margin (0 = dlib's own decision threshold; clear
frontal faces score about 1-3). `--min-score` is a probability-like number for MTCNN, so the
margin m is squashed to score = 1 / (1 + exp(-4 m)): m = 0 -> 0.5, and the default
--min-score 0.9 keeps m >= ln(9)/4 = 0.55, a stricter cut than dlib's default, because a
training set wants precision over recall (on scikit-image's test photos the astronaut's face
scores m = 1.2-1.5, false positives in it and five other photos there at most m = 0.12). The HOG
detector reports candidates down to the --min-score asked for (or m = 0 if higher), so weaker
ones are listed as "low score" rather than vanishing; the CNN detector has no threshold knob
in dlib's Python API and reports m >= 0 only.
"""

from __future__ import annotations

import importlib.util
import math
import sys
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from ...errors import DataError
from .mtcnn import Detection

INSTALL_HINT = "pip install dlib-bin==20.0.1.post1 face-recognition-models==0.3.0"
LANDMARKS_68 = "shape_predictor_68_face_landmarks.dat"
FIVE_POINT = "shape_predictor_5_face_landmarks.dat"
CNN_MODEL = "mmod_human_face_detector.dat"
DETECTORS = ("hog", "cnn")
LICENCE_NOTE = (
    f"note: the dlib backend's landmark model {LANDMARKS_68} was trained on iBUG 300-W, whose "
    "licence excludes commercial use; pass --landmark-model for another 68-point predictor")
SCORE_SLOPE = 4.0  # score = sigmoid(SCORE_SLOPE * margin); see the module docstring
# Face size (px, about the box side) each detector scans for at 1:1: HOG's window is 80 px (its
# margin falls fast below ~70 px); the CNN still finds the astronaut's face at 58 px, not at 52.
WINDOW = {"hog": 80.0, "cnn": 64.0}

# iBUG 300-W 68-point layout -> our 5 points (index lists are averaged).
_EYE_LEFT, _EYE_RIGHT = list(range(36, 42)), list(range(42, 48))
_NOSE_TIP, _MOUTH_LEFT, _MOUTH_RIGHT = 30, 48, 54

_noted = False


def score_from_margin(margin: float) -> float:
    """dlib margin -> score in (0, 1) on the scale --min-score uses."""
    return 1.0 / (1.0 + math.exp(-SCORE_SLOPE * min(max(margin, -100.0), 100.0)))


def margin_from_score(score: float) -> float:
    """Inverse of `score_from_margin` (score clipped into (0, 1))."""
    s = min(max(score, 1e-9), 1 - 1e-9)
    return math.log(s / (1 - s)) / SCORE_SLOPE


def import_dlib() -> Any:
    """The dlib module, or one DataError line with the pip command that installs it."""
    try:
        import dlib
    except ImportError as e:
        raise DataError(f"the dlib face backend needs dlib ({e}): run `{INSTALL_HINT}`, or use "
                        "--backend mtcnn") from None
    return dlib


def models_dir() -> Path:
    """face-recognition-models' models/ folder, found without importing the package."""
    try:
        spec = importlib.util.find_spec("face_recognition_models")
    except (ImportError, ValueError):  # a broken install, or sys.modules entry set to None
        spec = None
    for p in (spec.submodule_search_locations or []) if spec is not None else []:
        if (Path(p) / "models" / LANDMARKS_68).is_file():
            return Path(p) / "models"
    raise DataError(f"the dlib face backend needs the model files of face-recognition-models "
                    f"({LANDMARKS_68}, {CNN_MODEL}): run `{INSTALL_HINT}`, or pass "
                    "--landmark-model PATH (the CNN detector still needs the package)")


def available() -> bool:
    """True if dlib and the bundled model files are installed (what the tests check)."""
    try:
        import_dlib()
        models_dir()
    except DataError:
        return False
    return True


def note_licence() -> None:
    """Prints LICENCE_NOTE to stderr once per process."""
    global _noted
    if not _noted:
        print(LICENCE_NOTE, file=sys.stderr)
        _noted = True


class DlibDetector:
    """dlib face detection + 68-point landmarks behind MTCNN's interface (`detect`, `refine`).

    detector: "hog" (dlib's built-in frontal face detector: fast, frontal and near-frontal
    faces) or "cnn" (MMOD CNN from face-recognition-models: also turned and occluded faces, but
    seconds per 512 px photo on a CPU, and 4x that per halving of the smallest face).
    landmark_model: a dlib 68-point shape predictor file; default: the bundled iBUG 300-W one.
    min_score: the HOG detector reports candidates down to this score (or 0.5 if higher).
    note: print the licence note (once per process) when the default landmark model is used.
    """

    def __init__(self, detector: str = "hog", landmark_model: str | Path | None = None,
                 min_score: float = 0.5, note: bool = True) -> None:
        if detector not in DETECTORS:
            raise ValueError(f"dlib detector {detector!r} is not one of {DETECTORS}")
        dlib = import_dlib()
        self._dlib, self.kind = dlib, detector
        path = Path(landmark_model) if landmark_model is not None else models_dir() / LANDMARKS_68
        self.landmark_model = path
        self.predictor = _load_predictor(dlib, path)
        if landmark_model is None and note:
            note_licence()
        if detector == "hog":
            self._hog = _frontal_face_detector(dlib)
            self.threshold = min(0.0, margin_from_score(min_score))
        else:
            self._cnn = dlib.cnn_face_detection_model_v1(str(models_dir() / CNN_MODEL))
            self.threshold = 0.0

    def detect(self, image: np.ndarray | Image.Image, min_size: float = 80.0
               ) -> list[Detection]:
        """Faces in an RGB image (uint8 [H, W, 3] or PIL), best score first.

        min_size: smallest face (box side, px) to look for. dlib's detectors see faces of a
        fixed size and up (WINDOW: 80 px HOG, 64 px CNN), so the image is scanned at
        WINDOW / min_size of its size: enlarged to find smaller faces (cost ~ scale^2), shrunk
        when only large faces matter (faster).
        """
        img = image if isinstance(image, Image.Image) else Image.fromarray(np.asarray(image))
        assert img.mode == "RGB", img.mode
        scale = WINDOW[self.kind] / max(float(min_size), 1.0)
        size = (max(1, round(img.width * scale)), max(1, round(img.height * scale)))
        scan = img if size == img.size else img.resize(
            size, Image.Resampling.BILINEAR if scale > 1 else Image.Resampling.BOX)
        a = np.asarray(scan)
        if self.kind == "hog":
            rects, margins, _ = self._hog.run(a, 0, self.threshold)
        else:
            found = self._cnn(a, 0)
            rects, margins = [d.rect for d in found], [d.confidence for d in found]
        if not len(rects):
            return []
        boxes = np.array([[r.left(), r.top(), r.right(), r.bottom()] for r in rects], np.float64)
        # Pixel-index coordinates: centres sit at i + 0.5 in the continuous frame that scales.
        sx, sy = scan.width / img.width, scan.height / img.height
        boxes = (boxes + 0.5) / np.array([sx, sy, sx, sy]) - 0.5
        landmarks = self._landmarks(np.asarray(img), boxes)
        order = np.argsort(-np.asarray(margins, np.float64), kind="stable")
        return [Detection(boxes[i], score_from_margin(float(margins[i])), landmarks[i])
                for i in order]

    def refine(self, image: np.ndarray | Image.Image, boxes: np.ndarray
               ) -> tuple[np.ndarray, np.ndarray]:
        """Landmarks on the full-resolution image for `boxes` [N, 4] found on a downscaled copy:
        (scores [N], all NaN: the shape predictor does not score; landmarks [N, 5, 2])."""
        a = np.asarray(image)
        boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
        return np.full(len(boxes), np.nan), self._landmarks(a, boxes)

    def _landmarks(self, a: np.ndarray, boxes: np.ndarray) -> np.ndarray:
        """68 points per box -> [N, 5, 2] in pixel-index coordinates."""
        out = np.zeros((len(boxes), 5, 2))
        for i, (x1, y1, x2, y2) in enumerate(np.rint(boxes).astype(int).tolist()):
            shape = self.predictor(a, self._dlib.rectangle(x1, y1, x2, y2))
            p = np.array([(shape.part(j).x, shape.part(j).y) for j in range(68)], np.float64)
            out[i] = [p[_EYE_LEFT].mean(0), p[_EYE_RIGHT].mean(0), p[_NOSE_TIP],
                      p[_MOUTH_LEFT], p[_MOUTH_RIGHT]]
        return out


_predictors: dict[tuple[str, int, int], Any] = {}
_hog: list[Any] = []


def _frontal_face_detector(dlib: Any) -> Any:
    """dlib's HOG face detector, built once per process (unpacking it takes ~1.3 s)."""
    if not _hog:
        _hog.append(dlib.get_frontal_face_detector())
    return _hog[0]


def _load_predictor(dlib: Any, path: Path) -> Any:
    """A 68-point dlib shape predictor from `path`, or one DataError line saying what is wrong.

    Cached per file (path, size, mtime): the bundled model is 99 MB and takes ~2 s to parse,
    and one process may build several detectors (reruns with other options, the tests).
    """
    if not path.is_file():
        raise DataError(f"--landmark-model {path}: no such file (a dlib 68-point shape "
                        f"predictor, like {LANDMARKS_68})")
    st = path.stat()
    key = (str(path.resolve()), st.st_size, st.st_mtime_ns)
    if key not in _predictors:
        _predictors[key] = _parse_predictor(dlib, path)
    return _predictors[key]


def _parse_predictor(dlib: Any, path: Path) -> Any:
    try:
        predictor = dlib.shape_predictor(str(path))
    except RuntimeError as e:
        raise DataError(f"--landmark-model {path}: not a dlib shape predictor ({e})") from None
    # The file does not say how many points it marks: ask it once on a blank image.
    blank = np.zeros((16, 16, 3), np.uint8)
    parts = predictor(blank, dlib.rectangle(0, 0, 15, 15)).num_parts
    if parts != 68:
        raise DataError(f"--landmark-model {path}: marks {parts} points, the FFHQ alignment needs "
                        "a 68-point (iBUG 300-W layout) predictor with mouth corners")
    return predictor
