"""Image helpers shared by the shard writers: any PIL image -> upright square 8-bit RGB bytes.

Used by folder ingestion (`shards.py`), face preparation and the demo data, so every dataset
is converted and encoded the same way.
"""

from __future__ import annotations

import io

import numpy as np
from PIL import Image, ImageOps


def to_rgb(img: Image.Image) -> Image.Image:
    """Any PIL image -> 8-bit RGB, upright (EXIF), alpha composited on white, 16-bit scaled."""
    img = ImageOps.exif_transpose(img)
    if img.mode.startswith("I") or img.mode == "F":  # 16/32-bit grey: scale, don't clip
        a = np.asarray(img).astype(np.float64)
        if img.mode.startswith("I;16") or a.max() > 255:
            a = a / 257.0
        elif img.mode == "F" and a.max() <= 1.0:
            a = a * 255.0
        img = Image.fromarray(np.clip(np.round(a), 0, 255).astype(np.uint8), "L")
    if img.mode == "P":
        img = img.convert("RGBA" if "transparency" in img.info else "RGB")
    if img.mode in ("RGBA", "LA", "PA", "La", "RGBa"):
        img = img.convert("RGBA")
        bg = Image.new("RGBA", img.size, (255, 255, 255, 255))
        img = Image.alpha_composite(bg, img)
    return img.convert("RGB")


def center_square(img: Image.Image, resolution: int | None) -> Image.Image:
    """Largest centred square crop, then Lanczos resize to `resolution` (if given)."""
    w, h = img.size
    s = min(w, h)
    left, top = (w - s) // 2, (h - s) // 2
    img = img.crop((left, top, left + s, top + s))
    if resolution is not None and s != resolution:
        img = img.resize((resolution, resolution), Image.Resampling.LANCZOS)
    return img


def encode(img: Image.Image, ext: str) -> bytes:
    """PIL RGB image -> encoded bytes (png lossless, jpg q95 4:4:4, webp lossless)."""
    buf = io.BytesIO()
    if ext == "jpg":
        img.save(buf, "JPEG", quality=95, subsampling=0)
    elif ext == "webp":
        img.save(buf, "WEBP", lossless=True)
    else:
        img.save(buf, "PNG")
    return buf.getvalue()
