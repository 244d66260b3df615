"""Frames to a video that carries provenance: mp4 (imageio + imageio-ffmpeg) or an animated GIF.

mp4 gets the metadata as JSON in its `comment` tag (ffmpeg writes it to moov/udta/meta/ilst/©cmt)
and also a sidecar `<file>.json` (as do raw .npy outputs). The tag is read back here by walking
the MP4 boxes in plain Python, so `lightning-gans provenance` needs neither ffmpeg nor ffprobe
and still works when the sidecar got lost. A GIF carries the JSON in its comment extension.
`file_provenance` reads any of these and PNG text chunks.

Without imageio-ffmpeg (the `video` extra) `fmt="auto"` falls back to GIF and says so once on
stderr; asking for mp4 explicitly is then an error rather than a silent GIF.
"""

from __future__ import annotations

import json
import os
import struct
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from . import content_credentials
from .common import SynthesisError
from .images import mark, provenance, read_provenance, save_png

FORMATS = ("auto", "mp4", "gif")
INSTALL_HINT = "pip install 'lightning-gans[video]' (imageio, imageio-ffmpeg)"


def ffmpeg_missing() -> str | None:
    """None when mp4 can be written; else why not (a package is missing, or its ffmpeg binary).

    Imports for real rather than asking importlib for a spec: an installed imageio-ffmpeg
    without a usable binary (a platform without a wheel) cannot write mp4 either.
    """
    try:
        import imageio.v2  # noqa: F401
        import imageio_ffmpeg
    except ImportError as e:
        return f"{(e.name or 'imageio_ffmpeg').replace('_', '-')} is not installed"
    try:
        imageio_ffmpeg.get_ffmpeg_exe()
    except (RuntimeError, OSError) as e:
        return f"imageio-ffmpeg finds no ffmpeg binary ({e})"
    return None


def have_ffmpeg() -> bool:
    """True when imageio and its ffmpeg plugin are importable and ffmpeg is there (mp4 possible)."""
    return ffmpeg_missing() is None


def check_format(fmt: str) -> str:
    """The container `fmt` resolves to ('mp4' or 'gif'); a clear error for mp4 without ffmpeg.

    Commands call this before their (slow) synthesis so a missing package fails fast.
    """
    if fmt not in FORMATS:
        raise SynthesisError(f"--format {fmt!r} is not one of {', '.join(FORMATS)}")
    why = ffmpeg_missing()
    if fmt == "mp4" and why:
        raise SynthesisError(f"--format mp4: {why}; {INSTALL_HINT}, or use --format gif")
    return "gif" if fmt == "gif" or why else "mp4"


def _even(frames: np.ndarray) -> np.ndarray:
    """Pad H and W to even sizes (edge rows/cols repeated): libx264's yuv420p cannot encode odd ones."""
    _, h, w, _ = frames.shape
    if h % 2 == 0 and w % 2 == 0:
        return frames
    return np.pad(frames, [(0, 0), (0, h % 2), (0, w % 2), (0, 0)], mode="edge")


def write_video(frames: np.ndarray, stem: str | os.PathLike, fps: float, metadata: dict[str, str],
                fmt: str = "auto") -> Path:
    """uint8 frames [T, H, W, C] -> `stem`.mp4 (when ffmpeg is there, fmt auto|mp4) or `stem`.gif."""
    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[0] == 0 or frames.dtype != np.uint8:
        raise SynthesisError(f"a video needs uint8 frames [T>0, H, W, C]; got {frames.dtype} {frames.shape}")
    stem = Path(stem)
    stem.parent.mkdir(parents=True, exist_ok=True)
    if metadata.get("synthetic") == "true":  # the same watermark as the PNG frames, before signing
        marked = [mark(f, metadata) for f in frames]
        frames, metadata = np.stack([m[0] for m in marked]), marked[0][1]
    text = json.dumps(metadata, sort_keys=True)
    container = check_format(fmt)
    if container == "gif" and fmt == "auto":
        print(f"notice: {ffmpeg_missing()}, so the video is an animated GIF, not mp4; {INSTALL_HINT}",
              file=sys.stderr)
    path = stem.with_suffix(f".{container}")
    tmp = path.with_name(f".{path.stem}.tmp{os.getpid()}{path.suffix}")
    try:
        if container == "mp4":
            _write_mp4(frames, tmp, fps, text)
        else:
            imgs = [Image.fromarray(f[..., 0] if f.shape[-1] == 1 else f) for f in frames]
            imgs[0].save(tmp, format="GIF", save_all=True, append_images=imgs[1:], loop=0,
                         duration=max(20, int(round(1000 / fps))), comment=text.encode())
        if metadata.get("synthetic") == "true":
            content_credentials.sign_file(tmp, {**metadata, "file": path.name})
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    if container == "mp4":
        write_sidecar(path, metadata)
    return path


def _write_mp4(frames: np.ndarray, path: Path, fps: float, comment: str) -> None:
    """H.264 / yuv420p (plays everywhere), CRF 10 (imageio quality 8), provenance in the comment tag."""
    import imageio.v2 as imageio

    if frames.shape[-1] == 1:
        frames = np.repeat(frames, 3, axis=-1)
    frames = _even(frames)
    try:
        # macro_block_size=1: keep small (e.g. 32 px) frames at their size instead of rescaling.
        with imageio.get_writer(path, fps=fps, codec="libx264", quality=8, macro_block_size=1,
                                pixelformat="yuv420p", output_params=["-metadata", f"comment={comment}"]) as w:
            for f in frames:
                w.append_data(f)
    except (OSError, RuntimeError, ValueError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise SynthesisError(f"ffmpeg could not write {path.name} ({first}); use --format gif") from None


def write_sidecar(path: str | os.PathLike, metadata: dict[str, str]) -> Path:
    """`<path>.json` holding the metadata of a file format without text tags we can rely on (mp4, npy)."""
    sidecar = Path(path).with_name(Path(path).name + ".json")
    sidecar.write_text(json.dumps(metadata, sort_keys=True, indent=1) + "\n")
    return sidecar


def _boxes(f, start: int, end: int):
    """(type, payload start, payload end) of the ISO-BMFF boxes in [start, end) of an open file."""
    pos = start
    while pos + 8 <= end:
        f.seek(pos)
        size, kind = struct.unpack(">I4s", f.read(8))
        header = 8
        if size == 1:  # 64-bit size follows
            size = struct.unpack(">Q", f.read(8))[0]
            header = 16
        elif size == 0:  # runs to the end of the enclosing box
            size = end - pos
        if size < header:
            return
        yield kind, pos + header, min(pos + size, end)
        pos += size


def mp4_comment(path: str | os.PathLike) -> str | None:
    """The iTunes-style comment (moov/udta/meta/ilst/©cmt/data) of an mp4, or None.

    This is where ffmpeg's `-metadata comment=...` lands in an mp4; reading it here needs no
    ffprobe, which imageio-ffmpeg does not ship.
    """
    path = Path(path)
    with open(path, "rb") as f:
        size = path.stat().st_size

        def child(kind: bytes, start: int, end: int) -> tuple[int, int] | None:
            return next(((s, e) for k, s, e in _boxes(f, start, end) if k == kind), None)

        span: tuple[int, int] | None = (0, size)
        for kind in (b"moov", b"udta", b"meta"):
            span = child(kind, *span)
            if span is None:
                return None
        span = child(b"ilst", span[0] + 4, span[1])  # meta is a full box: 4 bytes version/flags first
        for kind in (b"\xa9cmt", b"data"):
            if span is None:
                return None
            span = child(kind, *span)
        if span is None or span[1] - span[0] < 8:
            return None
        f.seek(span[0] + 8)  # data: 4 bytes type, 4 bytes locale, then UTF-8 text
        return f.read(span[1] - span[0] - 8).decode("utf-8", errors="replace")


def _json_dict(text: str | bytes | None) -> dict[str, str]:
    """A JSON object as {str: str}; {} for anything else."""
    try:
        meta = json.loads(text.decode() if isinstance(text, bytes) else text or "")
    except (ValueError, UnicodeDecodeError):
        return {}
    return {str(k): str(v) for k, v in meta.items()} if isinstance(meta, dict) else {}


def file_provenance(path: str | os.PathLike) -> dict[str, str]:
    """Provenance of a PNG, GIF, mp4 (its comment tag, else its sidecar) or .npy with a sidecar ({} if none)."""
    path = Path(path)
    suffix = path.suffix.lower()
    try:
        if suffix == ".png":
            return read_provenance(path)
        if suffix == ".gif":
            with Image.open(path) as im:
                return _json_dict(im.info.get("comment", b""))
        if suffix in (".mp4", ".m4v", ".mov"):
            meta = _json_dict(mp4_comment(path))
            if meta:
                return meta
    except (UnidentifiedImageError, OSError, struct.error):
        return {}
    sidecar = path.with_name(path.name + ".json")
    if sidecar.is_file():
        return _json_dict(sidecar.read_text())
    return {}


def write_walk(frames: np.ndarray, outdir: Path, meta: dict, fps: float, fmt: str, no_frames: bool,
               frame_meta: Callable[[int], dict] = lambda i: {}) -> Path:
    """PNG frames (each with provenance, plus `frame_meta(i)`) under outdir/frames and the video."""
    if not no_frames:
        for i, f in enumerate(frames):
            save_png(f, outdir / "frames" / f"frame{i:05d}.png", provenance(**meta, frame=i, **frame_meta(i)))
    return write_video(frames, outdir / "interpolation", fps, provenance(**meta, num_frames=len(frames), fps=fps),
                       fmt)
