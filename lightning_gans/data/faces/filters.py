"""Quality filters for aligned faces: sharpness (variance of the Laplacian, Pech-Pacheco et al.
ICPR 2000) and near-duplicates (DCT perceptual hash, Zauner 2010), each with a stable reason."""

from __future__ import annotations

import numpy as np
import scipy.fft
import scipy.ndimage
from PIL import Image

# Reasons written to OUT/report.json (stable strings).
NO_FACE = "no face"
SMALL_FACE = "small face"
LOW_SCORE = "low score"
BLURRY = "blurry"
DUPLICATE = "duplicate"
NO_LANDMARKS = "no landmarks given"

_SHARPNESS_SIZE = 256  # measured at one size, so a --blur-threshold means the same at any res


def sharpness(face: np.ndarray) -> float:
    """Variance of the Laplacian of the central half of an aligned face [H, W, 3] uint8.

    Only the centre (eyes, nose, mouth) counts: FFHQ crops include background, and portraits
    often have a deliberately blurred one. Measured on 0..255 grey at 256 px.
    """
    img = Image.fromarray(face).convert("L")
    if img.size != (_SHARPNESS_SIZE, _SHARPNESS_SIZE):
        img = img.resize((_SHARPNESS_SIZE, _SHARPNESS_SIZE), Image.Resampling.LANCZOS)
    q = _SHARPNESS_SIZE // 4
    centre = np.asarray(img, dtype=np.float64)[q:-q, q:-q]
    return float(scipy.ndimage.laplace(centre).var())


def phash(face: np.ndarray) -> int:
    """64-bit perceptual hash: signs of the 8x8 lowest DCT frequencies of a 32x32 grey image
    relative to their median. Robust to resizing, recompression and small colour changes."""
    img = Image.fromarray(face).convert("L").resize((32, 32), Image.Resampling.LANCZOS)
    dct = scipy.fft.dctn(np.asarray(img, dtype=np.float64), norm="ortho")[:8, :8]
    bits = (dct > np.median(dct)).ravel()
    return int(np.packbits(bits).view(">u8")[0])


def hamming(a: int, b: int) -> int:
    """Number of differing bits of two 64-bit hashes."""
    return (a ^ b).bit_count()


class DuplicateIndex:
    """Hashes seen so far; `find` answers "is this within `max_distance` bits of one of them"."""

    def __init__(self, max_distance: int = 4) -> None:
        self.max_distance = max_distance
        self._hashes = np.zeros(64, dtype=np.uint64)  # grows by doubling
        self._names: list[str] = []

    def __len__(self) -> int:
        return len(self._names)

    def add(self, h: int, name: str) -> None:
        if len(self._names) == len(self._hashes):
            self._hashes = np.concatenate([self._hashes, np.zeros_like(self._hashes)])
        self._hashes[len(self._names)] = np.uint64(h)
        self._names.append(name)

    def find(self, h: int) -> str | None:
        """The name of the first stored near-duplicate of `h`, or None."""
        if self.max_distance < 0 or not self._names:
            return None
        diff = np.bitwise_xor(self._hashes[: len(self._names)], np.uint64(h))
        bits = np.unpackbits(diff.view(np.uint8).reshape(-1, 8), axis=1).sum(axis=1)
        hits = np.nonzero(bits <= self.max_distance)[0]
        return self._names[int(hits[0])] if hits.size else None
