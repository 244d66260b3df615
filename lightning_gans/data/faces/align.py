"""FFHQ-style face alignment from 5 landmarks (Karras, Laine, Aila, CVPR 2019; the FFHQ dataset).

Geometry as described for FFHQ: the eye-to-eye and eye-to-mouth vectors define an oriented crop
square; huge faces are first shrunk by an integer factor; a crop leaving the photo is padded by
reflection, blurred and faded toward the median colour; the square is resampled into the target
resolution by supersampling (bilinear at up to 4x, then Lanczos down).

Landmarks are [left eye, right eye, nose, left mouth corner, right mouth corner], (x, y) pixel
indices (pixel centres on integers), "left" = image-left. The nose does not enter the geometry.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.ndimage
from PIL import Image

LANDMARK_NAMES = ("left_eye", "right_eye", "nose", "mouth_left", "mouth_right")


@dataclass
class Crop:
    """The oriented crop square in source pixel-index coordinates."""

    quad: np.ndarray  # [4, 2] corners: top-left, bottom-left, bottom-right, top-right (x, y)
    size: float  # side of the square in source pixels ("qsize")

    @property
    def face_size(self) -> float:
        """Half the side: about the height of a detector's face box (used by --min-face)."""
        return self.size / 2


def ffhq_crop(landmarks: np.ndarray) -> Crop:
    """The FFHQ crop square for 5 landmarks [5, 2]."""
    lm = np.asarray(landmarks, dtype=np.float64)
    assert lm.shape == (5, 2), lm.shape
    eye_left, eye_right, _, mouth_left, mouth_right = lm
    eye_avg = (eye_left + eye_right) / 2
    eye_to_eye = eye_right - eye_left
    eye_to_mouth = (mouth_left + mouth_right) / 2 - eye_avg
    # The square's x axis averages the eye line with the normal of the eye-mouth line, so that a
    # tilted head or a squint in one landmark does not rotate the crop alone.
    x = eye_to_eye + np.array([eye_to_mouth[1], -eye_to_mouth[0]])
    x /= np.hypot(*x)
    # Half side: whichever is larger of 2x the eye distance and 1.8x the eye-to-mouth distance
    # (frontal vs. foreshortened profile faces).
    x *= max(np.hypot(*eye_to_eye) * 2.0, np.hypot(*eye_to_mouth) * 1.8)
    y = np.array([-x[1], x[0]])  # x rotated 90 deg: "down" in image coordinates
    c = eye_avg + eye_to_mouth * 0.1
    quad = np.stack([c - x - y, c - x + y, c + x + y, c + x - y])
    return Crop(quad=quad, size=float(np.hypot(*x) * 2))


def align_face(
    image: Image.Image | np.ndarray,
    landmarks: np.ndarray,
    resolution: int,
    pad: bool = True,  # reflect-pad (FFHQ) where the square leaves the photo; else black
) -> np.ndarray:
    """Aligned face [resolution, resolution, 3] uint8 from an RGB image and 5 landmarks."""
    img = image if isinstance(image, Image.Image) else Image.fromarray(np.asarray(image))
    assert img.mode == "RGB", img.mode
    crop = ffhq_crop(landmarks)
    # Work in continuous coordinates (pixel i spans [i, i+1)), which is what PIL transforms use
    # and what makes integer shrinking exact: x -> x / s.
    quad, qsize = crop.quad + 0.5, crop.size

    # Shrink: a face much larger than the output is box-averaged down by an integer factor
    # first, so the final resampling never skips source pixels (and stays fast).
    shrink = int(np.floor(qsize / resolution * 0.5))
    if shrink > 1:
        img = img.reduce(shrink)
        quad, qsize = quad / shrink, qsize / shrink

    # Crop to the square's bounds plus a border, so padding below touches few pixels.
    border = max(int(np.rint(qsize * 0.1)), 3)
    lo = np.floor(quad.min(0)).astype(int) - border
    hi = np.ceil(quad.max(0)).astype(int) + border
    box = (max(lo[0], 0), max(lo[1], 0), min(hi[0], img.width), min(hi[1], img.height))
    if box != (0, 0, img.width, img.height):
        img = img.crop(box)
        quad = quad - box[:2]

    # Pad where the square (plus border) reaches past the photo: reflected content keeps the
    # colour statistics of a real background, the blur and fade hide the mirror seams.
    lo = np.floor(quad.min(0)).astype(int)
    hi = np.ceil(quad.max(0)).astype(int)
    need = np.maximum([border - lo[0], border - lo[1], hi[0] - img.width + border,
                       hi[1] - img.height + border], 0)
    if pad and need.max() > border - 4:
        need = np.maximum(need, int(np.rint(qsize * 0.3)))
        img, offset = _pad_reflect(img, need, qsize), need[:2]
        quad = quad + offset

    return _resample(img, quad, qsize, resolution)


def _pad_reflect(img: Image.Image, pad: np.ndarray, qsize: float) -> Image.Image:
    """Reflect-pad by (left, top, right, bottom), blur and fade the padding toward the median."""
    left, top, right, bottom = (int(p) for p in pad)
    a = np.pad(np.asarray(img, dtype=np.float32), ((top, bottom), (left, right), (0, 0)),
               mode="reflect")
    h, w = a.shape[:2]
    ys = np.arange(h, dtype=np.float32)[:, None]
    xs = np.arange(w, dtype=np.float32)[None, :]
    # 0 on the original photo's edge, rising to 1 at the outer edge of the padding.
    inside_x = np.minimum(xs / max(left, 1), (w - 1 - xs) / max(right, 1))
    inside_y = np.minimum(ys / max(top, 1), (h - 1 - ys) / max(bottom, 1))
    mask = np.maximum(1.0 - inside_x, 1.0 - inside_y)[..., None]
    sigma = qsize * 0.02
    blurred = scipy.ndimage.gaussian_filter(a, [sigma, sigma, 0])
    # The blur starts a third of the pad width inside the photo so there is no visible seam.
    a += (blurred - a) * np.clip(mask * 3.0 + 1.0, 0.0, 1.0)
    a += (np.median(a, axis=(0, 1)) - a) * np.clip(mask, 0.0, 1.0)
    return Image.fromarray(np.clip(np.rint(a), 0, 255).astype(np.uint8), "RGB")


def _resample(img: Image.Image, quad: np.ndarray, qsize: float, resolution: int) -> np.ndarray:
    """Map the square `quad` (continuous coords) onto resolution^2 pixels, antialiased."""
    # Supersample by k so bilinear never decimates (qsize <= ~4 x resolution after shrinking),
    # then Lanczos down: the FFHQ recipe (4096 -> 1024) sized to what the source holds.
    k = int(np.clip(np.ceil(qsize / resolution), 1, 4))
    size = resolution * k
    top_left, bottom_left, _, top_right = quad
    ex, ey = (top_right - top_left) / size, (bottom_left - top_left) / size
    # Output pixel (u, v) in continuous coordinates -> source top_left + u * ex + v * ey.
    coeffs = (ex[0], ey[0], top_left[0], ex[1], ey[1], top_left[1])
    # Magnifying (k == 1): bicubic keeps edges sharper than bilinear.
    method = Image.Resampling.BILINEAR if k > 1 else Image.Resampling.BICUBIC
    out = img.transform((size, size), Image.Transform.AFFINE, coeffs, method)
    if k > 1:
        out = out.resize((resolution, resolution), Image.Resampling.LANCZOS)
    return np.asarray(out)
