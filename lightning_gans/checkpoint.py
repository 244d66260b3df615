"""The one checkpoint writer and reader: atomic writes, safe (weights-only) loads; the only
module of the package that calls torch.load (tests/test_architecture.py checks it).

A checkpoint is written to a temp file in the same folder, fsynced and renamed over the
target, so a kill at any moment leaves either the old file or the new one, never half of one.
Reading never unpickles arbitrary code: torch.load(weights_only=True) only rebuilds tensors
and plain containers.
"""

from __future__ import annotations

import errno
import hashlib
import io
import os
import pickle
import re
import shutil
import struct
import time
from pathlib import Path
from typing import Any

import torch

from .errors import CheckpointError, LGError
from .ops._lock import pid_alive


def tensor_bytes(obj: Any) -> int:
    """Bytes of the tensors in obj (a tensor, or dicts/lists of them at any depth)."""
    if torch.is_tensor(obj):
        return obj.numel() * obj.element_size()
    if isinstance(obj, dict):
        return sum(tensor_bytes(v) for v in obj.values())
    if isinstance(obj, (list, tuple)):
        return sum(tensor_bytes(v) for v in obj)
    return 0


_TMP_RE = re.compile(r"^\.(?P<name>.+)\.tmp(?P<pid>\d+)$")


def remove_stale_temps(folder: str | os.PathLike, min_age_s: float = 60.0) -> list[Path]:
    """Delete the `.<name>.tmp<pid>` files atomic_save leaves when killed (kill -9, OOM, power):
    those whose process is gone and that nobody wrote to for `min_age_s`."""
    removed = []
    try:
        entries = list(Path(folder).iterdir())
    except OSError:
        return removed
    now = time.time()
    for p in entries:
        m = _TMP_RE.match(p.name)
        if not m or int(m["pid"]) == os.getpid() or pid_alive(int(m["pid"])):
            continue
        try:
            if now - p.stat().st_mtime >= min_age_s and p.is_file():
                p.unlink()
                removed.append(p)
        except OSError:
            pass
    return removed


def _write_error(e: OSError, path: Path, obj: Any) -> CheckpointError:
    if e.errno in (errno.ENOSPC, errno.EDQUOT):
        try:
            free = shutil.disk_usage(path.parent).free
        except OSError:
            free = 0
        need = tensor_bytes(obj)
        return CheckpointError(
            f"no space left on the disk of {path.parent} (free {free / 2**20:.0f} MiB, this checkpoint "
            f"needs about {need / 2**20:.0f} MiB): free space there or point "
            "callbacks.checkpoint.dirpath / hydra.run.dir at another disk; the previous file is kept")
    if e.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return CheckpointError(f"cannot write {path}: {e.strerror}; give a writable folder "
                               "(callbacks.checkpoint.dirpath / hydra.run.dir / the output path)")
    return CheckpointError(f"cannot write {path}: {e.strerror or e}; check the folder")


def atomic_save(obj: Any, path: str | os.PathLike) -> Path:
    """torch.save(obj) to `path` atomically. Temp files of killed writers are cleaned up here;
    a full disk or an unwritable folder is a CheckpointError (one line), not a traceback."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        remove_stale_temps(path.parent)
        with open(tmp, "wb") as f:
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as e:
        raise _write_error(e, path, obj) from None
    except RuntimeError as e:  # torch.save reports a failed write as RuntimeError (file write failed)
        cause = e.__cause__ or e.__context__
        if isinstance(cause, OSError):
            raise _write_error(cause, path, obj) from None
        if "write" in str(e).lower():
            free = shutil.disk_usage(path.parent).free if path.parent.exists() else 0
            raise CheckpointError(
                f"writing {path} failed ({str(e).splitlines()[0]}; {free / 2**20:.0f} MiB free on its "
                f"disk, needs about {tensor_bytes(obj) / 2**20:.0f} MiB): free space or write "
                "elsewhere; the previous file is kept") from None
        raise
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


# What torch.load raises on a damaged, truncated or foreign file (pickle's refusal aside).
_UNREADABLE = (RuntimeError, EOFError, OSError, ValueError, KeyError, IndexError, TypeError, struct.error)


def _first_line(e: BaseException) -> str:
    return (str(e).strip().splitlines() or [type(e).__name__])[0][:200]


def _weights_only_load(src: Any, map_location: Any = "cpu", mmap: bool = False, allow: tuple = ()) -> Any:
    """The package's only torch.load: always weights_only=True (tensors and plain containers,
    plus the classes in `allow`; no code runs). `src` is a path or a binary file object."""
    kw = {"mmap": True} if mmap else {}
    if allow:
        with torch.serialization.safe_globals(list(allow)):
            return torch.load(src, map_location=map_location, weights_only=True, **kw)
    return torch.load(src, map_location=map_location, weights_only=True, **kw)


def safe_load(path: str | os.PathLike, map_location: Any = "cpu", mmap: bool = False, allow: tuple = ()) -> dict:
    """Load a checkpoint written by this project (weights only; no code runs). mmap=True maps
    the file instead of reading it (zip checkpoints only; a legacy file is a CheckpointError);
    `allow`: extra plain classes the file may hold (model_file: rosinality's argparse.Namespace)."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist; check the path (ckpt_path=...)")
    try:
        obj = _weights_only_load(path, map_location=map_location, mmap=mmap, allow=allow)
    except pickle.UnpicklingError as e:
        raise CheckpointError(_refusal(path, str(e))) from None
    except _UNREADABLE as e:
        raise CheckpointError(f"checkpoint {path} is unreadable or truncated ({_first_line(e)}); use another "
                              "copy of it") from None
    if not isinstance(obj, dict):
        raise CheckpointError(f"checkpoint {path} is a {type(obj).__name__}, not a checkpoint dict")
    return obj


def load_weights(path: str | os.PathLike, what: str = "weights file", refused: str = "re-save its state "
                 "dict with torch.save", allow: tuple = (), error: type[LGError] = CheckpointError) -> Any:
    """A weights file that is not a checkpoint of ours (a feature network's, an official one),
    loaded weights-only onto the CPU; `allow`: extra classes the file may hold. Errors are one
    `error` line: "<what> <path> holds objects that a weights-only load refuses (...); <refused>"
    or "<what> <path> is unreadable or truncated (...)"."""
    path = Path(path)
    name = f"{what} {path}" if what else str(path)
    if not path.is_file():
        raise error(f"{name} does not exist; check the path")
    try:
        return _weights_only_load(path, allow=allow)
    except pickle.UnpicklingError as e:
        raise error(f"{name} holds objects that a weights-only load refuses ({_first_line(e)}); "
                    f"{refused}") from None
    except _UNREADABLE as e:
        raise error(f"{name} is unreadable or truncated ({_first_line(e)})") from None


def load_tensors(path: str | os.PathLike, what: str = "weights file", refused: str = "give a plain state "
                 "dict (torch.save(module.state_dict()))", error: type[LGError] = CheckpointError) -> dict:
    """A plain state dict (name -> tensor; `{'state_dict': ...}` is unwrapped), weights-only."""
    sd = load_weights(path, what, refused, error=error)
    if isinstance(sd, dict) and isinstance(sd.get("state_dict"), dict):
        sd = sd["state_dict"]
    if not isinstance(sd, dict) or not all(torch.is_tensor(v) for v in sd.values()):
        raise error(f"{what + ' ' if what else ''}{path} does not hold a dict of tensors; {refused}")
    return sd


def load_bytes(payload: bytes, what: str = "a tensor storage inside the pickle") -> Any:
    """An in-memory torch.save payload (e.g. the legacy storage bytes inside an official
    pickle), weights-only; a refusal is one CheckpointError line "<what> is not plain data"."""
    if not isinstance(payload, bytes | bytearray):
        raise CheckpointError(f"{what} is {type(payload).__name__}, expected bytes")
    try:
        return _weights_only_load(io.BytesIO(payload))
    except pickle.UnpicklingError as e:
        raise CheckpointError(f"{what} is not plain data ({_first_line(e)})") from None
    except _UNREADABLE as e:
        raise CheckpointError(f"{what} is unreadable or truncated ({_first_line(e)})") from None


def _refusal(path: Path, message: str) -> str:
    """One line for a safe load's refusal: which global the file asks for, or that it is not a
    checkpoint at all. Never torch's advice to load with weights_only=False (that runs code)."""
    m = re.search(r"(?:Unsupported global: GLOBAL|unsupported GLOBAL) ([\w.]+)", message)
    if m:
        return (f"checkpoint {path} asks to unpickle {m.group(1)}, which a safe (weights-only) load "
                "refuses: it was not written by lightning-gans; if it is an official StyleGAN2-ADA/"
                "StarGAN v2 file, import it with `lightning-gans convert`, otherwise do not use it")
    m = re.search(r"Unsupported operand (\d+)|invalid load key[^\n]*", message)
    why = f"; {m.group(0)}" if m else ""
    return (f"checkpoint {path} is not a torch checkpoint (a safe load refuses it: not a torch file, "
            f"or damaged{why}); use another copy of it")


def tensor_shapes(state: dict) -> dict[str, tuple[int, ...]]:
    return {k: tuple(v.shape) for k, v in state.items() if torch.is_tensor(v)}


def shape_differences(want: dict, have: dict) -> tuple[list[str], list[str], list[str]]:
    """(keys of another shape, keys missing from `have`, keys `want` does not know) of two
    name -> shape maps: what a module needs and what a file holds."""
    return ([k for k in want if k in have and want[k] != have[k]], [k for k in want if k not in have],
            [k for k in have if k not in want])


def check_resume(module: torch.nn.Module, ckpt: dict, path: str | os.PathLike) -> None:
    """A resume (ckpt_path=) must build the model the checkpoint was trained as: one line naming
    both (instead of Lightning's list of every mismatched key) when it does not."""
    state = ckpt.get("state_dict")
    if not isinstance(state, dict):
        raise CheckpointError(f"ckpt_path={path} has no state_dict: not a training checkpoint of "
                              "lightning-gans (use init_from= for weights of other kinds)")
    want, have = tensor_shapes(module.state_dict()), tensor_shapes(state)
    differ, missing, unexpected = shape_differences(want, have)
    if not (differ or (missing and unexpected)):
        return  # the same architecture; only-missing / only-extra keys are Lightning's to judge

    def describe(cfg) -> str:
        if not isinstance(cfg, dict):
            return "?"
        kw = cfg.get("G_kwargs") or cfg.get("net_kwargs") or {}
        res = kw.get("img_resolution") or kw.get("img_size") or kw.get("resolution")
        return f"{cfg.get('kind', '?')} {cfg.get('name', '?')!r}" + (f" at {res} px" if res else "")

    mine = describe(getattr(module, "model_config", lambda: None)()) if hasattr(module, "model_config") else "?"
    k = (differ or missing or unexpected)[0]
    eg = (f"{k}: {have[k]} in the file, {want[k]} here" if differ else
          f"{'missing' if missing else 'unexpected'} {k}")
    raise CheckpointError(
        f"ckpt_path={path} holds a {describe(ckpt.get('model_config'))} model but this run builds a "
        f"{mine} one ({len(differ)} tensors of another shape, {len(missing)} missing, "
        f"{len(unexpected)} unexpected; e.g. {eg}): resume with the model settings it was trained "
        "with (model=..., model.resolution=...), or start a new run from its weights with init_from=")


def nonfinite_tensors(named) -> list[str]:
    """Names of floating tensors (parameters, buffers, a state dict's items) holding NaN or inf;
    one fused norm pass finds the suspects."""
    items = [(n, t) for n, t in named if torch.is_tensor(t) and t.is_floating_point() and t.numel()
             and t.device.type != "meta"]
    if not items:
        return []
    norms = torch._foreach_norm([t.detach() for _, t in items])
    finite = torch.isfinite(torch.stack([n.float() for n in norms]))
    suspects = (~finite).nonzero().flatten().tolist()
    return [items[i][0] for i in suspects if not torch.isfinite(items[i][1]).all()]
