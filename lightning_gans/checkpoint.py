"""The one checkpoint writer and reader: atomic writes, safe (weights-only) loads.

A checkpoint is written to a temp file in the same folder, fsynced and renamed over the
target, so a kill at any moment leaves either the old file or the new one, never half of one.
Reading never unpickles arbitrary code: torch.load(weights_only=True) only rebuilds tensors
and plain containers.
"""

from __future__ import annotations

import hashlib
import os
import pickle
from pathlib import Path
from typing import Any

import torch

from .errors import CheckpointError


def atomic_save(obj: Any, path: str | os.PathLike) -> Path:
    """torch.save(obj) to `path` atomically."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        with open(tmp, "wb") as f:
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    try:  # make the rename itself durable
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
    except OSError:
        pass
    return path


_SHA_CACHE: dict[tuple[str, int, int], str] = {}


def file_sha256(path: str | os.PathLike) -> str:
    """Hex SHA-256 of a file, memoised on (path, size, mtime): checkpoints and weights are large."""
    p = Path(path).resolve()
    st = p.stat()
    key = (str(p), st.st_size, st.st_mtime_ns)
    if key not in _SHA_CACHE:
        h = hashlib.sha256()
        with open(p, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 22), b""):
                h.update(chunk)
        _SHA_CACHE[key] = h.hexdigest()
    return _SHA_CACHE[key]


def safe_load(path: str | os.PathLike, map_location: Any = "cpu") -> dict:
    """Load a checkpoint written by this project (weights only; no code runs)."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist; check the path (ckpt_path=...)")
    try:
        obj = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise CheckpointError(
            f"checkpoint {path} holds objects that a safe load refuses ({first}); if it is an "
            "official StyleGAN/StarGAN v2 file, convert it with `lightning-gans convert`"
        ) from None
    except (RuntimeError, EOFError, OSError) as e:
        raise CheckpointError(f"checkpoint {path} is unreadable or truncated ({e}); use another one") from None
    if not isinstance(obj, dict):
        raise CheckpointError(f"checkpoint {path} is a {type(obj).__name__}, not a checkpoint dict")
    return obj
