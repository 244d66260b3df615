"""Image tensors to PNG files that carry provenance: text chunks (synthetic=true, model, seeds), an
invisible watermark in the pixels (watermark.py) and a signed C2PA manifest (content_credentials.py).

The text chunks are an unsigned claim anyone can edit; the C2PA manifest binds the same fields to
the pixels with a signature, and the watermark survives re-encodes that strip both.
"""

from __future__ import annotations

import datetime
import math
import os
from pathlib import Path

import numpy as np
import torch
from PIL import Image, PngImagePlugin

from .. import __version__
from . import content_credentials, watermark


def to_uint8(img: torch.Tensor) -> np.ndarray:
    """[N, C, H, W] in [-1, 1] -> uint8 [N, H, W, C] (clamped, rounded)."""
    x = (img.detach().float().cpu() * 127.5 + 128).clamp(0, 255).to(torch.uint8)
    return x.permute(0, 2, 3, 1).numpy()


def make_grid(img: torch.Tensor, cols: int | None = None) -> np.ndarray:
    """[N, C, H, W] in [-1, 1] -> one uint8 image [rows*H, cols*W, C], row-major."""
    x = to_uint8(img)
    n, h, w, ch = x.shape
    cols = cols or max(1, int(math.ceil(math.sqrt(n))))
    rows = int(math.ceil(n / cols))
    grid = np.zeros([rows * h, cols * w, ch], dtype=np.uint8)
    for i in range(n):
        r, c = divmod(i, cols)
        grid[r * h : (r + 1) * h, c * w : (c + 1) * w] = x[i]
    return grid


def provenance(**fields) -> dict[str, str]:
    """The metadata every generated image carries; values are stringified."""
    meta = {
        "synthetic": "true",
        "generator": "lightning_gans",
        "tool_version": __version__,
        "time": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }
    meta.update({k: str(v) for k, v in fields.items() if v is not None})
    return meta


def mark(array: np.ndarray, metadata: dict[str, str]) -> tuple[np.ndarray, dict[str, str]]:
    """Watermark a synthetic image (>= 256 px, unless turned off) and record what was done."""
    meta = dict(metadata)
    if meta.get("synthetic") != "true":
        return array, meta
    if not content_credentials.current().watermark:
        meta["watermark"] = "none (turned off with --no-watermark)"
    elif min(array.shape[:2]) < watermark.MIN_SIZE:
        meta["watermark"] = f"none (output below {watermark.MIN_SIZE} px: too small for a reliable mark)"
    else:
        array = watermark.embed(array, meta.get("checkpoint_sha256", ""))
        meta["watermark"] = "embedded " + watermark.payload_string(meta.get("checkpoint_sha256", ""))
    return array, meta


def save_png(array: np.ndarray, path: str | os.PathLike, metadata: dict[str, str]) -> Path:
    """Write a uint8 HxWxC array as PNG with text chunks, watermark and (synthetic images) a signed C2PA
    manifest, atomically (temp file + rename). The watermark goes in first: signing binds final pixels."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    array, metadata = mark(array, metadata)
    info = PngImagePlugin.PngInfo()
    for k, v in metadata.items():
        info.add_text(k, v)
    arr = array[..., 0] if array.shape[-1] == 1 else array
    tmp = path.with_name(f".{path.stem}.tmp{os.getpid()}.png")
    try:
        Image.fromarray(arr).save(tmp, format="PNG", pnginfo=info)
        if metadata.get("synthetic") == "true":
            content_credentials.sign_file(tmp, {**metadata, "file": path.name})
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def read_provenance(path: str | os.PathLike) -> dict[str, str]:
    """The PNG text chunks of an image ({} when it has none)."""
    with Image.open(path) as im:
        return dict(getattr(im, "text", {}) or {})
