"""Frames to a video that carries provenance: mp4 (imageio + imageio-ffmpeg) or an animated GIF.

mp4 gets the metadata as its `comment` tag and, because reading mp4 tags needs ffprobe, also a
sidecar `<file>.json` (as do raw .npy outputs); a GIF carries it as JSON in its comment
extension. `file_provenance` reads any of these and PNG text chunks.
"""

from __future__ import annotations

import importlib.util
import json
import os
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from .images import read_provenance


def have_ffmpeg() -> bool:
    """True when imageio and its ffmpeg plugin are importable (mp4 output possible)."""
    return all(importlib.util.find_spec(m) is not None for m in ("imageio", "imageio_ffmpeg"))


def write_video(frames: np.ndarray, stem: str | os.PathLike, fps: float, metadata: dict[str, str],
                fmt: str = "auto") -> Path:
    """uint8 frames [T, H, W, C] -> `stem`.mp4 (when ffmpeg is there, fmt auto|mp4) or `stem`.gif."""
    stem = Path(stem)
    stem.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps(metadata, sort_keys=True)
    if fmt == "mp4" or (fmt == "auto" and have_ffmpeg()):
        import imageio.v2 as imageio

        path = stem.with_suffix(".mp4")
        tmp = path.with_name(f".{path.stem}.tmp{os.getpid()}.mp4")
        # macro_block_size=1: keep small (e.g. 32 px) frames at their size instead of rescaling.
        with imageio.get_writer(tmp, fps=fps, codec="libx264", quality=8, macro_block_size=1,
                                output_params=["-metadata", f"comment={text}"]) as w:
            for f in frames:
                w.append_data(f)
        os.replace(tmp, path)
        write_sidecar(path, metadata)
        return path
    path = stem.with_suffix(".gif")
    tmp = path.with_name(f".{path.stem}.tmp{os.getpid()}.gif")
    imgs = [Image.fromarray(f[..., 0] if f.shape[-1] == 1 else f) for f in frames]
    imgs[0].save(tmp, format="GIF", save_all=True, append_images=imgs[1:], loop=0,
                 duration=max(20, int(round(1000 / fps))), comment=text.encode())
    os.replace(tmp, path)
    return path


def write_sidecar(path: str | os.PathLike, metadata: dict[str, str]) -> Path:
    """`<path>.json` holding the metadata of a file format without text tags (mp4, npy)."""
    sidecar = Path(path).with_name(Path(path).name + ".json")
    sidecar.write_text(json.dumps(metadata, sort_keys=True, indent=1) + "\n")
    return sidecar


def file_provenance(path: str | os.PathLike) -> dict[str, str]:
    """Provenance of a PNG, GIF, or mp4/.npy with a sidecar json we wrote ({} when it has none)."""
    path = Path(path)
    sidecar = path.with_name(path.name + ".json")
    if path.suffix.lower() not in (".png", ".gif"):
        if sidecar.is_file():
            try:
                return {str(k): str(v) for k, v in json.loads(sidecar.read_text()).items()}
            except (ValueError, AttributeError):
                return {}
        return {}
    try:
        if path.suffix.lower() == ".gif":
            with Image.open(path) as im:
                comment = im.info.get("comment", b"")
            try:
                meta = json.loads(comment.decode() if isinstance(comment, bytes) else comment)
            except ValueError:
                return {}
            return {str(k): str(v) for k, v in meta.items()} if isinstance(meta, dict) else {}
        return read_provenance(path)
    except (UnidentifiedImageError, OSError):
        return {}
