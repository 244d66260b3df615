"""`lightning-gans prepare-faces INPUT OUT`: a folder/zip/tar of photos -> FFHQ-aligned faces in shards.

Detect, 5 landmarks, oriented crop, reflect-pad, resample (the FFHQ recipe), then filters
(no/small/low-score/blurry/duplicate face) with their reasons in OUT/report.json. Rerun to
resume: inputs already in the shards are skipped and new shards appended.
"""

from __future__ import annotations

from ..data.faces import worker
from ..data.faces.prepare import PrepareOptions, prepare_faces
from . import _args

D = PrepareOptions("", "")


def main(argv: list[str] | None = None) -> int:
    p = _args.parser("prepare-faces", __doc__, "photos/ faces/ --resolution 256 --workers 2")
    p.add_argument("input", help="folder (recursive), .zip or .tar(.gz) of photos")
    p.add_argument("out", help="output folder: shard-*.tar, manifest.json, report.json")
    p.add_argument("--resolution", type=int, default=D.resolution, help="output size, px")
    _args.add_labels_from_subfolders(p)
    p.add_argument("--all-faces", action="store_true",
                   help="keep every face of a photo (default: the largest passing one)")
    p.add_argument("--min-face", type=float, default=None,
                   help="smallest face kept, px: half the FFHQ crop side, about the face width "
                        "(default: resolution / 4, i.e. at most 2x upsampling)")
    p.add_argument("--min-score", type=float, default=D.min_score,
                   help="detector score; dlib backends score their margin m as 1 / (1 + exp(-4 m)), so 0.9 "
                        "keeps m >= 0.55")
    p.add_argument("--blur-threshold", type=float, default=D.blur_threshold,
                   help="min variance of Laplacian of the face centre at 256 px; 0 = off")
    p.add_argument("--dup-distance", type=int, default=D.dup_distance,
                   help="perceptual-hash bits within which a face is a duplicate; -1 = off")
    p.add_argument("--landmarks", default=None,
                   help="json {relative/path: [[x,y] x5] or a list of those}, points = left eye, right eye, "
                        "nose, left/right mouth corner (image-left first), pixel indices of the EXIF-upright "
                        "photo: used instead of the detector")
    p.add_argument("--workers", type=int, default=D.workers, help="processes")
    p.add_argument("--backend", "--detector", choices=["mtcnn", *worker.DLIB_BACKENDS], default=D.backend,
                   help="face detector: mtcnn, dlib (HOG detector + 68 landmarks) or dlib-cnn (CNN detector, "
                        "slow on CPU); dlib needs `pip install dlib-bin face-recognition-models` and its "
                        "default landmark model is for non-commercial use (see README)")
    p.add_argument("--landmark-model", default=None, metavar="PATH",
                   help="dlib backends: a 68-point dlib shape predictor file to use instead of the bundled "
                        "shape_predictor_68_face_landmarks.dat")
    p.add_argument("--maxcount", type=int, default=D.maxcount, help="samples per shard")
    p.add_argument("--limit", type=int, default=None,
                   help="stop after N new inputs (a trial run; rerun without it to finish)")
    return prepare_faces(PrepareOptions(**vars(_args.parse(p, argv))))
