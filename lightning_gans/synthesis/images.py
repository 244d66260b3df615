"""Image tensors to PNG files that carry provenance metadata (synthetic=true, model, seeds)."""

from __future__ import annotations

import datetime
import math
import os
from pathlib import Path

import numpy as np
import torch
from PIL import Image, PngImagePlugin

from .. import __version__


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


def save_png(array: np.ndarray, path: str | os.PathLike, metadata: dict[str, str]) -> Path:
    """Write a uint8 HxWxC array as PNG with text chunks, atomically (temp file + rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    info = PngImagePlugin.PngInfo()
    for k, v in metadata.items():
        info.add_text(k, v)
    arr = array[..., 0] if array.shape[-1] == 1 else array
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    Image.fromarray(arr).save(tmp, format="PNG", pnginfo=info)
    os.replace(tmp, path)
    return path


def read_provenance(path: str | os.PathLike) -> dict[str, str]:
    """The PNG text chunks of an image ({} when it has none)."""
    with Image.open(path) as im:
        return dict(getattr(im, "text", {}) or {})
