"""Robust photo decoding to 8-bit sRGB (JPEG, PNG, WebP, BMP, TIFF, GIF) for face preparation.

Every way a user's photo folder can go wrong becomes a `DecodeError` with a short reason that
ends up in OUT/report.json, never an exception that stops a run of 10k files.
"""

from __future__ import annotations

import io
import warnings

from PIL import Image, ImageOps, UnidentifiedImageError

from ..images import to_rgb

# Extensions listed as inputs; anything else in a folder is reported as `unsupported extension`.
IMAGE_EXTENSIONS = frozenset(
    {".jpg", ".jpeg", ".jpe", ".jfif", ".png", ".webp", ".bmp", ".dib", ".tif", ".tiff", ".gif"}
)
DEFAULT_MAX_PIXELS = 150_000_000  # ~ a 15000x10000 scan; beyond that a file is a decompression bomb

# Reasons (stable strings: tests and users grep report.json for them).
EMPTY = "empty file"
NOT_IMAGE = "not an image"
CORRUPT = "corrupt image"
TOO_LARGE = "image too large"
TOO_SMALL = "image too small"


class DecodeError(Exception):
    """An input that cannot become an RGB image; `reason` is one of the constants above."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail


def decode_image(data: bytes, max_pixels: int = DEFAULT_MAX_PIXELS) -> Image.Image:
    """Decode encoded bytes to an upright 8-bit RGB PIL image (EXIF orientation applied).

    CMYK and ICC-tagged images are colour-managed to sRGB, 16-bit and float images are scaled
    (not clipped) to 8 bits, alpha is composited over white, palettes are expanded.
    """
    if not data:
        raise DecodeError(EMPTY)
    try:
        with warnings.catch_warnings():
            # The header alone tells the size: refuse bombs before allocating their pixels.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            img = Image.open(io.BytesIO(data))
            w, h = img.size
            if w * h > max_pixels:
                raise DecodeError(TOO_LARGE, f"{w}x{h} > {max_pixels} pixels")
            img.seek(0)  # first frame of animated GIF/WebP and multi-page TIFF
            img.load()
    except DecodeError:
        raise
    except UnidentifiedImageError as e:
        raise DecodeError(NOT_IMAGE, "unknown format") from e
    except Image.DecompressionBombError as e:
        raise DecodeError(TOO_LARGE, str(e)) from e
    except Exception as e:  # noqa: BLE001 - decoders raise many types on bad bytes
        # Truncated JPEG/PNG ("image file is truncated"), broken chunks, bad TIFF tags, ...
        raise DecodeError(CORRUPT, str(e).splitlines()[0] if str(e) else type(e).__name__) from e
    if min(img.size) < 8:
        raise DecodeError(TOO_SMALL, f"{img.size[0]}x{img.size[1]}")
    img = _apply_orientation(img)
    try:
        return to_rgb(img)
    except (ValueError, OSError) as e:  # e.g. LAB TIFFs: PIL has no conversion to RGB
        raise DecodeError(CORRUPT, f"cannot convert mode {img.mode} to RGB ({e})") from e


def _apply_orientation(img: Image.Image) -> Image.Image:
    try:
        return ImageOps.exif_transpose(img)
    except Exception:  # noqa: BLE001 - malformed EXIF must not lose an otherwise good photo
        return img
