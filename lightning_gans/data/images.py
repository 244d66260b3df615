"""Image helpers shared by the shard writers: any PIL image -> upright square 8-bit RGB bytes.

Used by folder ingestion (`shards.py`), face preparation and the demo data, so every dataset
is converted and encoded the same way.
"""

from __future__ import annotations

import io

import numpy as np
from PIL import Image, ImageCms, ImageOps

_SRGB = ImageCms.createProfile("sRGB")


def to_rgb(img: Image.Image) -> Image.Image:
    """Any PIL image -> upright (EXIF) 8-bit sRGB: ICC profiles applied, 16-bit/float grey
    scaled (not clipped), palette and alpha composited on white."""
    try:
        img = ImageOps.exif_transpose(img)
    except Exception:  # noqa: BLE001 - malformed EXIF must not lose an otherwise good image
        pass
    icc = img.info.get("icc_profile")
    if icc and img.mode in ("RGB", "RGBA", "CMYK"):
        img = _icc_to_srgb(img, icc)
    if img.mode == "P":
        # Palette images with a transparent index only show it after expanding to RGBA.
        img = img.convert("RGBA" if "transparency" in img.info else "RGB")
    if img.mode in ("I", "I;16", "I;16B", "I;16L", "I;16N", "F"):
        img = Image.fromarray(_scale_to_uint8(np.asarray(img), img.mode), "L")
    if img.mode in ("LA", "La", "PA", "RGBa", "RGBA") or (
        img.mode in ("L", "RGB") and "transparency" in img.info
    ):
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        img = Image.alpha_composite(background, rgba)
    if img.mode != "RGB":
        img = img.convert("RGB")  # L, 1, CMYK without profile, YCbCr, LAB, HSV
    return img


def _icc_to_srgb(img: Image.Image, icc: bytes) -> Image.Image:
    try:
        src = ImageCms.ImageCmsProfile(io.BytesIO(icc))
        mode = "RGBA" if img.mode == "RGBA" else "RGB"
        out = ImageCms.profileToProfile(img, src, _SRGB, outputMode=mode)
        return out if out is not None else img
    except (ImageCms.PyCMSError, OSError, ValueError):
        return img  # a broken profile: plain conversion below is the best we can do


def _scale_to_uint8(a: np.ndarray, mode: str) -> np.ndarray:
    """16-bit / 32-bit / float grey -> uint8 by range, since PIL's convert('L') clips at 255."""
    if mode.startswith("I;16"):
        scale = 255.0 / 65535.0
    elif mode == "F":
        scale = 255.0 if a.size and float(a.max()) <= 1.0 else 1.0  # [0, 1] or [0, 255] floats
    else:  # "I": 32-bit ints holding 8- or 16-bit data (e.g. some TIFFs); the range tells which
        scale = 1.0 if a.size and int(a.max()) <= 255 else 255.0 / 65535.0
    return np.clip(np.rint(a.astype(np.float64) * scale), 0, 255).astype(np.uint8)


MIN_SIDE = 8  # an image whose short side is smaller holds too little to be upscaled into a sample


def center_square(img: Image.Image, resolution: int | None) -> Image.Image:
    """Largest centred square crop, then Lanczos resize to `resolution` (if given). ValueError
    for a resolution < 1, and for an image under MIN_SIDE px that would be blown up (a 1x1 pixel
    would become a flat square that looks like data); callers skip and count those."""
    w, h = img.size
    s = min(w, h)
    if resolution is not None:
        if resolution < 1:
            raise ValueError(f"resolution {resolution} is not a size; give an integer >= 1")
        if s < min(MIN_SIDE, resolution):
            raise ValueError(f"image is {w}x{h} px: too small to upscale to {resolution}x{resolution}")
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
