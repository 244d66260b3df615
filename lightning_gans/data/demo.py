"""Seeded, cached demo face data (astronaut photo crops + drawn faces) to try training offline.

Half the images are augmented crops of the public-domain portrait `skimage.data.astronaut()`
around its face (label 0, "photo"), half are procedurally drawn faces (label 1, "drawn"), so the
set also serves as a 2-domain StarGAN v2 demo. Written through `ShardWriter` like real data.
"""

from __future__ import annotations

import math
import os
import shutil
import uuid
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from lightning_gans.data.images import encode
from lightning_gans.data.shards import ShardWriter

DEMO_VERSION = 1  # bump when the images change, so old caches are not reused
LABELS = {"photo": 0, "drawn": 1}
# Face box of the 512x512 astronaut (checked by eye): centre (x, y) and side of a loose
# FFHQ-like crop from the hair top to below the chin.
_FACE_CX, _FACE_CY, _FACE_SIDE = 224.0, 112.0, 200.0
_PAD = 128
_SKIN = [(255, 224, 196), (241, 194, 160), (224, 172, 130), (198, 134, 92), (141, 85, 56),
         (96, 60, 40)]
_HAIR = [(20, 16, 14), (60, 40, 28), (110, 72, 40), (200, 160, 90), (150, 60, 30),
         (160, 160, 160)]
_IRIS = [(60, 40, 25), (70, 110, 150), (80, 110, 60), (40, 30, 20)]


def _default_root() -> Path:
    return Path(os.environ.get("LG_CACHE_DIR", Path.home() / ".cache" / "lightning_gans"))


def _astronaut(resolution: int) -> Image.Image:
    """The portrait, pre-shrunk (Lanczos) so the face box is ~resolution px: the per-sample
    affine warp then resamples at ~1:1 and does not alias."""
    from skimage import data

    # reflect-pad by _PAD so zoomed-out / shifted / rotated crops never show an empty border
    img = Image.fromarray(np.pad(data.astronaut(), ((_PAD, _PAD), (_PAD, _PAD), (0, 0)), "reflect"))
    size = max(1, round((512 + 2 * _PAD) * resolution / _FACE_SIDE))
    return img.resize((size, size), Image.Resampling.LANCZOS)


def photo_crop(base: Image.Image, resolution: int, rng: np.random.Generator) -> Image.Image:
    """One augmented face crop: scale 0.85-1.2, shift +-8%, rotate +-8 deg, x-flip, colour."""
    k = base.width / (512.0 + 2 * _PAD)  # base pixels per original pixel
    side = _FACE_SIDE * k * rng.uniform(0.85, 1.2)
    cx = (_FACE_CX + _PAD) * k + rng.uniform(-0.08, 0.08) * side
    cy = (_FACE_CY + _PAD) * k + rng.uniform(-0.08, 0.08) * side
    theta = math.radians(rng.uniform(-8.0, 8.0))
    flip = -1.0 if rng.random() < 0.5 else 1.0
    s = side / resolution  # source pixels per output pixel
    a, b = s * math.cos(theta) * flip, -s * math.sin(theta)
    d, e = s * math.sin(theta) * flip, s * math.cos(theta)
    h = resolution / 2.0  # output centre -> source (cx, cy)
    coeffs = (a, b, cx - a * h - b * h, d, e, cy - d * h - e * h)
    img = base.transform((resolution, resolution), Image.Transform.AFFINE, coeffs,
                         resample=Image.Resampling.BICUBIC, fillcolor=(128, 128, 128))
    x = np.asarray(img, dtype=np.float32) / 255.0
    grey = x.mean(axis=2, keepdims=True)
    x = grey + (x - grey) * rng.uniform(0.7, 1.3)                 # saturation
    x = (x - x.mean()) * rng.uniform(0.85, 1.15) + x.mean()       # contrast
    x = x * rng.uniform(0.85, 1.15) * rng.uniform(0.94, 1.06, 3)  # brightness, white balance
    return Image.fromarray((np.clip(x, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8))


def _jitter(rng: np.random.Generator, rgb: tuple, amount: int = 12) -> tuple:
    return tuple(int(np.clip(c + rng.integers(-amount, amount + 1), 0, 255)) for c in rgb)


def drawn_face(resolution: int, rng: np.random.Generator) -> Image.Image:
    """One procedurally drawn frontal face, drawn at 4x and Lanczos-downscaled (antialiasing)."""
    S = 4 * resolution
    u = S / 100.0  # drawing unit: the canvas is 100 x 100 units
    bg = tuple(int(c) for c in rng.integers(40, 230, 3))
    img = Image.new("RGB", (S, S), bg)
    dr = ImageDraw.Draw(img)

    def ell(x0, y0, x1, y1, fill, width=0, outline=None):
        dr.ellipse([x0 * u, y0 * u, x1 * u, y1 * u], fill=fill, outline=outline, width=width)

    skin = _jitter(rng, _SKIN[rng.integers(len(_SKIN))])
    hair = _jitter(rng, _HAIR[rng.integers(len(_HAIR))])
    shade = tuple(int(c * 0.8) for c in skin)
    cx, cy = 50 + rng.uniform(-4, 4), 48 + rng.uniform(-4, 4)
    hw, hh = rng.uniform(17, 23), rng.uniform(23, 29)  # head half-width / half-height
    shirt = tuple(int(c) for c in rng.integers(20, 240, 3))
    if rng.random() < 0.5:  # long hair: behind head, neck and shoulders
        ell(cx - hw - 6, cy - hh - 5, cx + hw + 6, cy + hh + 14, hair)
    ell(cx - 38, cy + hh * 0.85, cx + 38, cy + hh * 0.85 + 50, shirt)              # shoulders
    dr.rectangle([(cx - hw * 0.45) * u, (cy + hh * 0.5) * u, (cx + hw * 0.45) * u,
                  (cy + hh * 1.05) * u], fill=shade)                                 # neck
    ell(cx - hw - 3, cy - 4, cx - hw + 3, cy + 7, skin)                              # ears
    ell(cx + hw - 3, cy - 4, cx + hw + 3, cy + 7, skin)
    ell(cx - hw, cy - hh, cx + hw, cy + hh, skin)                                    # head
    top = cy - hh - rng.uniform(1, 5)
    dr.chord([(cx - hw - 2) * u, top * u, (cx + hw + 2) * u, (cy + hh * rng.uniform(0.0, 0.5))
              * u], 180, 360, fill=hair)                                             # fringe
    ey, ex = cy - hh * rng.uniform(0.0, 0.15), hw * rng.uniform(0.36, 0.48)
    er, iris = hw * rng.uniform(0.16, 0.22), _jitter(rng, _IRIS[rng.integers(len(_IRIS))])
    for side in (-1, 1):
        x = cx + side * ex
        ell(x - er, ey - er * 0.6, x + er, ey + er * 0.6, (245, 245, 240))           # eye white
        ell(x - er * 0.5, ey - er * 0.5, x + er * 0.5, ey + er * 0.5, iris)
        ell(x - er * 0.22, ey - er * 0.22, x + er * 0.22, ey + er * 0.22, (10, 10, 10))
        by, tilt = ey - er * rng.uniform(1.2, 1.8), rng.uniform(-0.8, 0.8)          # brow
        dr.line([((x - er * 1.1) * u, (by + side * tilt) * u),
                 ((x + er * 1.1) * u, (by - side * tilt) * u)],
                fill=hair, width=max(1, int(1.6 * u)))
    ny = cy + hh * rng.uniform(0.22, 0.32)                                            # nose
    dr.line([(cx * u, (ey + er) * u), ((cx - 1.8) * u, ny * u), ((cx + 1.5) * u, ny * u)],
            fill=shade, width=max(1, int(1.0 * u)), joint="curve")
    my, mw = cy + hh * rng.uniform(0.5, 0.62), hw * rng.uniform(0.3, 0.5)             # mouth
    lips = _jitter(rng, (170, 70, 70), 25)
    if rng.random() < 0.6:  # smile
        dr.arc([(cx - mw) * u, (my - mw * 0.6) * u, (cx + mw) * u, (my + mw * 0.4) * u], 20, 160,
               fill=lips, width=max(1, int(1.5 * u)))
    else:
        ell(cx - mw * 0.7, my - 1.2, cx + mw * 0.7, my + 1.6, lips)
    return img.resize((resolution, resolution), Image.Resampling.LANCZOS)


def ensure_demo_data(
    root: str | Path | None = None,
    resolution: int = 64,
    count: int = 512,
    seed: int = 0,
) -> Path:
    """Returns a folder of demo shards (built once, then cached); safe to call concurrently.

    Folder `root/demo/v{DEMO_VERSION}-r{resolution}-n{count}-s{seed}` (root defaults to
    $LG_CACHE_DIR or ~/.cache/lightning_gans) holds >= 4 shards (2 ranks x 2 workers each get
    their own), labels {"photo": 0, "drawn": 1} alternating so every shard holds both, and is
    byte-identical for equal arguments. Image i depends only on (seed, i).
    """
    root = Path(root) if root is not None else _default_root()
    out = root / "demo" / f"v{DEMO_VERSION}-r{resolution}-n{count}-s{seed}"
    if (out / "manifest.json").exists():
        return out
    # build beside the target, then one atomic rename: a concurrent caller either wins the
    # rename or finds the finished folder; nobody sees a half-written one
    tmp = out.parent / f".{out.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp"
    base = _astronaut(resolution)
    try:
        with ShardWriter(tmp, maxcount=max(1, count // 4), resolution=resolution) as w:
            for i in range(count):
                rng = np.random.default_rng([seed, i])
                label = i % 2
                img = photo_crop(base, resolution, rng) if label == 0 else drawn_face(
                    resolution, rng)
                name = "photo" if label == 0 else "drawn"
                w.write(f"{i:06d}", encode(img, "png"), "png",
                        {"label": label, "label_name": name})
        try:
            os.rename(tmp, out)
        except OSError:
            if not (out / "manifest.json").exists():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out
