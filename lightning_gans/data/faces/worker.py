"""One photo -> aligned FFHQ-style faces (or a reason why not): decode, detect, filter, align.

Runs in the `prepare-faces` worker processes; everything it returns is picklable. Duplicates
are judged later by the single writer process, which sees every face of the run.
"""

from __future__ import annotations

import io
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from . import filters
from .align import align_face, ffhq_crop
from .decode import DEFAULT_MAX_PIXELS, DecodeError, decode_image

WRITTEN, SKIPPED = "written", "skipped"
INTERNAL = "internal error"
DETECT_MAX_SIDE = 1024  # detect on a copy at most this large: landmarks come from 48 px crops
LANDMARKS_68_NAME = "shape_predictor_68_face_landmarks.dat"  # the dlib backends' default model


@dataclass(frozen=True)
class Options:
    """What decides the output; stored in report.json so a rerun knows if it may reuse skips."""

    resolution: int = 256
    min_face: float = 64.0  # half the FFHQ crop side (~ face width), source pixels
    min_score: float = 0.9  # detector score
    blur_threshold: float = 15.0  # variance of Laplacian at 256 px; 0 disables
    all_faces: bool = False
    backend: str = "mtcnn"  # "mtcnn", "dlib", "dlib-cnn", or "landmarks" (a --landmarks file)
    max_pixels: int = DEFAULT_MAX_PIXELS
    dup_distance: int = 6  # pHash bits; -1 disables
    landmark_model: str | None = None  # dlib backends: 68-point predictor file (None: bundled)


@dataclass
class Face:
    """An aligned face ready for the shard: encoded png, its json meta and pHash."""

    png: bytes
    meta: dict[str, Any]
    phash: int


@dataclass
class Result:
    """What became of one input; `rejected` lists the faces not kept and why."""

    rel: str
    status: str  # WRITTEN if `faces` is not empty (before duplicate removal)
    reason: str | None = None
    detail: str = ""
    detected: int = 0
    faces: list[Face] = field(default_factory=list)
    rejected: list[dict[str, Any]] = field(default_factory=list)  # faces not kept, with reasons


_detector: Any = None
_detector_key: tuple | None = None
DLIB_BACKENDS = {"dlib": "hog", "dlib-cnn": "cnn"}  # --backend -> dlib_backend detector


def get_detector(backend: str, opts: Options | None = None) -> Any:
    """The process-wide detector (loaded once per worker; again only if the backend or its
    options change, as when one process runs prepare-faces twice). `opts` carries the dlib
    backends' landmark model and --min-score (down to which HOG reports candidates)."""
    global _detector, _detector_key
    opts = opts if opts is not None else Options(backend=backend)
    key = (backend, opts.landmark_model, opts.min_score) if backend in DLIB_BACKENDS else (backend,)
    if _detector is None or _detector_key != key:
        if backend == "mtcnn":
            from .mtcnn import MTCNN

            _detector = MTCNN()
        elif backend in DLIB_BACKENDS:
            import multiprocessing

            from .dlib_backend import DlibDetector

            # The licence note is printed by the main process only, not by every worker.
            _detector = DlibDetector(DLIB_BACKENDS[backend], opts.landmark_model,
                                     min_score=opts.min_score,
                                     note=multiprocessing.parent_process() is None)
        else:
            raise ValueError(f"unknown detector backend {backend!r}")
        _detector_key = key
    return _detector


@dataclass
class _Candidate:
    landmarks: np.ndarray  # [5, 2]
    box: np.ndarray | None
    score: float | None


def _detect(img: Image.Image, opts: Options) -> list[_Candidate]:
    detector = get_detector(opts.backend, opts)
    # Detect on a copy at most DETECT_MAX_SIDE large (P-Net's cost grows with the pixels), then
    # re-run O-Net on full-resolution crops so the landmarks keep the photo's precision.
    s = min(1.0, DETECT_MAX_SIDE / max(img.size))
    small = img if s == 1.0 else img.resize(
        (max(1, round(img.width * s)), max(1, round(img.height * s))), Image.Resampling.BOX)
    scale = np.array([small.width / img.width, small.height / img.height])
    # Search faces down to half --min-face, so that smaller ones are reported as such.
    min_size = max(20.0, 0.5 * opts.min_face * float(scale[0]))
    found = detector.detect(small, min_size=min_size)
    if not found:
        return []
    # Pixel-index coordinates: centres sit at i + 0.5 in the continuous frame that scales.
    boxes = np.stack([(d.box.reshape(2, 2) + 0.5) / scale - 0.5 for d in found]).reshape(-1, 4)
    if s == 1.0:
        return [_Candidate(d.landmarks, d.box, d.score) for d in found]
    _, landmarks = detector.refine(img, boxes)
    # The score stays the detector's: O-Net on a differently framed crop is not a detection.
    return [_Candidate(lm, b, d.score) for lm, b, d in zip(landmarks, boxes, found)]


def _reject(c: _Candidate, opts: Options, face_size: float) -> tuple[str, str] | None:
    if c.score is not None and c.score < opts.min_score:
        return filters.LOW_SCORE, f"score {c.score:.3f} < --min-score {opts.min_score}"
    if face_size < opts.min_face:
        return filters.SMALL_FACE, f"face {face_size:.0f} px < --min-face {opts.min_face:.0f}"
    return None


def _rounded(a: np.ndarray | None) -> Any:
    return None if a is None else np.round(np.asarray(a, dtype=np.float64), 2).tolist()


def process(rel: str, data: bytes | tuple[str, str], opts: Options,
            landmarks: list[list[list[float]]] | None = None,
            label: tuple[int, str] | None = None) -> Result:
    """Never raises: any failure becomes a skipped `Result` with a reason."""
    try:
        return _process(rel, data, opts, landmarks, label)
    except Exception as e:  # noqa: BLE001 - one odd photo must not end a 10k-photo run
        tb = traceback.format_exception_only(type(e), e)[-1].strip()
        return Result(rel, SKIPPED, INTERNAL, tb)


def _process(rel: str, data: bytes | tuple[str, str], opts: Options,
             landmarks: list[list[list[float]]] | None, label: tuple[int, str] | None) -> Result:
    if isinstance(data, tuple):  # the source could not read it
        return Result(rel, SKIPPED, data[0], data[1])
    try:
        img = decode_image(data, opts.max_pixels)
    except DecodeError as e:
        return Result(rel, SKIPPED, e.reason, e.detail)

    if opts.backend == "landmarks":
        if not landmarks:
            return Result(rel, SKIPPED, filters.NO_LANDMARKS, "not in the --landmarks file")
        cands = [_Candidate(np.asarray(lm, dtype=np.float64), None, None) for lm in landmarks]
    else:
        cands = _detect(img, opts)
    result = Result(rel, SKIPPED, detected=len(cands))
    if not cands:
        result.reason = filters.NO_FACE
        return result

    crops = [ffhq_crop(c.landmarks) for c in cands]
    # Largest face first: with one face per photo, it is the subject; the rest are bystanders.
    order = sorted(range(len(cands)), key=lambda i: -crops[i].face_size)
    if not opts.all_faces:
        passing = [i for i in order if _reject(cands[i], opts, crops[i].face_size) is None]
        order = passing[:1] or order[:1]
    for i in order:
        c, crop = cands[i], crops[i]
        info: dict[str, Any] = {"face": i, "box": _rounded(c.box), "score": c.score}
        why = _reject(c, opts, crop.face_size)
        face = None
        if why is None:
            face = align_face(img, c.landmarks, opts.resolution)
            sharp = filters.sharpness(face)
            if sharp < opts.blur_threshold:
                why = (filters.BLURRY,
                       f"sharpness {sharp:.1f} < --blur-threshold {opts.blur_threshold}")
        if why is not None:
            result.rejected.append({**info, "reason": why[0], "detail": why[1]})
            continue
        assert face is not None
        meta = {
            "source": rel,
            **info,
            "landmarks": _rounded(c.landmarks),  # upright (EXIF-applied) source pixels
            "quad": _rounded(crop.quad),
            "face_size": round(crop.face_size, 2),
            "sharpness": round(sharp, 2),
            "image_size": list(img.size),
            "detector": opts.backend,
        }
        if opts.backend in DLIB_BACKENDS:  # provenance: the bundled model's data is non-commercial
            meta["landmark_model"] = Path(opts.landmark_model).name if opts.landmark_model \
                else LANDMARKS_68_NAME
        h = filters.phash(face)
        meta["phash"] = f"{h:016x}"
        if label is not None:
            meta["label"], meta["label_name"] = label
        buf = io.BytesIO()
        Image.fromarray(face).save(buf, "PNG", compress_level=6)
        result.faces.append(Face(buf.getvalue(), meta, h))
    if result.faces:
        result.status = WRITTEN
    else:
        result.reason, result.detail = result.rejected[0]["reason"], result.rejected[0]["detail"]
    return result
