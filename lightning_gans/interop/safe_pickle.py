"""Restricted unpickler for official StyleGAN2-ADA / StyleGAN3 `network-snapshot-*.pkl` files.

The official pickles rebuild every network through `torch_utils.persistence`, which exec()s
source code stored in the file. Here nothing from the file runs: `find_class` allows only the
globals needed to rebuild tensors, numbers and containers, and maps the persistence
reconstructor and `dnnlib.util.EasyDict` to inert placeholders that only record what the file
says (class name, init kwargs, parameters, buffers, children). Any other global is refused.
"""

from __future__ import annotations

import collections
import io
import os
import pickle
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch._utils

from ..checkpoint import load_bytes
from ..errors import CheckpointError

try:  # numpy >= 2
    from numpy._core.multiarray import scalar as _np_scalar
except ImportError:  # pragma: no cover - numpy 1.x
    from numpy.core.multiarray import scalar as _np_scalar


class EasyDict(dict):
    """Inert stand-in for dnnlib.util.EasyDict (a dict with attribute access; nothing more)."""


class PersistentRecord:
    """What the official persistence module would have rebuilt, kept as data.

    class_name is the bare class name (e.g. 'Generator'), state the object's __dict__ as pickled
    (nn.Module internals, network attributes, `_init_args`, `_init_kwargs`).
    """

    def __init__(self, class_name: str, state: dict, version: Any = None):
        self.class_name = class_name
        self.state = state
        self.version = version

    @property
    def init_args(self) -> list:
        return list(self.state.get("_init_args", ()))

    @property
    def init_kwargs(self) -> dict:
        return dict(self.state.get("_init_kwargs", {}))

    def children(self) -> dict[str, PersistentRecord]:
        """Child modules by name (None entries, e.g. an absent optional layer, are skipped)."""
        out = {}
        for name, child in (self.state.get("_modules") or {}).items():
            if child is None:
                continue
            if not isinstance(child, PersistentRecord):
                raise CheckpointError(f"module {self.class_name}.{name} is a {type(child).__name__}, "
                                      "not a recorded module")
            out[name] = child
        return out

    def named_tensors(self, prefix: str = "") -> Iterator[tuple[str, torch.Tensor]]:
        """(key, tensor) in the order of nn.Module.state_dict(): own params, own persistent buffers, children."""
        skip = set(self.state.get("_non_persistent_buffers_set") or ())
        for name, t in (self.state.get("_parameters") or {}).items():
            if t is not None:
                yield prefix + name, t.detach()
        for name, t in (self.state.get("_buffers") or {}).items():
            if t is not None and name not in skip:
                yield prefix + name, t.detach()
        for name, child in self.children().items():
            yield from child.named_tensors(f"{prefix}{name}.")

    def state_dict(self) -> dict[str, torch.Tensor]:
        return dict(self.named_tensors())

    def __repr__(self) -> str:
        return f"PersistentRecord({self.class_name})"


def _reconstruct_persistent_obj(meta: Any) -> PersistentRecord:
    # Stands in for torch_utils.persistence._reconstruct_persistent_obj: records, never exec()s module_src.
    if not isinstance(meta, dict) or meta.get("type") != "class" or not isinstance(meta.get("class_name"), str):
        raise CheckpointError(f"unexpected persistent-object record {type(meta).__name__} (expected type 'class')")
    state = meta.get("state")
    if not isinstance(state, dict):
        raise CheckpointError(f"persistent object {meta['class_name']} has no state dict")
    return PersistentRecord(meta["class_name"], state, meta.get("version"))


def _load_storage_from_bytes(b: bytes) -> Any:
    # torch.storage._load_from_bytes loads with weights_only=False; the inner legacy payload
    # only ever needs a storage, which the weights-only loader rebuilds.
    if not isinstance(b, bytes | bytearray):
        raise CheckpointError(f"tensor storage payload is {type(b).__name__}, expected bytes")
    return load_bytes(b, "a tensor storage inside the pickle")


def _numpy_scalar(dtype: np.dtype, data: Any = None) -> Any:
    if not isinstance(dtype, np.dtype) or dtype.hasobject:
        raise CheckpointError(f"refusing numpy scalar of dtype {dtype!r} (only numeric scalars are allowed)")
    return _np_scalar(dtype, data) if data is not None else _np_scalar(dtype)


def _codecs_encode(text: str, encoding: str = "utf-8") -> bytes:
    # Protocol-2 pickles spell bytes as _codecs.encode(str, 'latin1').
    if not isinstance(text, str) or encoding not in ("latin1", "latin-1"):
        raise CheckpointError(f"refusing _codecs.encode with encoding {encoding!r}")
    return text.encode("latin1")


ALLOWED_GLOBALS: dict[tuple[str, str], Any] = {
    ("collections", "OrderedDict"): collections.OrderedDict,
    ("builtins", "set"): set,
    ("builtins", "frozenset"): frozenset,
    ("_codecs", "encode"): _codecs_encode,
    ("numpy", "dtype"): np.dtype,
    ("numpy._core.multiarray", "scalar"): _numpy_scalar,
    ("numpy.core.multiarray", "scalar"): _numpy_scalar,
    ("torch._utils", "_rebuild_parameter"): torch._utils._rebuild_parameter,
    ("torch._utils", "_rebuild_tensor_v2"): torch._utils._rebuild_tensor_v2,
    ("torch.storage", "_load_from_bytes"): _load_storage_from_bytes,
    ("torch_utils.persistence", "_reconstruct_persistent_obj"): _reconstruct_persistent_obj,
    ("dnnlib.util", "EasyDict"): EasyDict,
}


class RestrictedUnpickler(pickle.Unpickler):
    """Unpickler that resolves only ALLOWED_GLOBALS; any other global raises CheckpointError."""

    source = "pickle"

    def find_class(self, module: str, name: str) -> Any:
        try:
            return ALLOWED_GLOBALS[(module, name)]
        except KeyError:
            raise CheckpointError(
                f"{self.source}: refusing to load: it references {module}.{name}, which is not needed to "
                "rebuild network weights (nothing from the file was run); only official StyleGAN2-ADA/"
                "StyleGAN3 network pickles are accepted"
            ) from None

    def persistent_load(self, pid: Any) -> Any:
        raise CheckpointError(f"{self.source}: refusing to load: unexpected persistent id {type(pid).__name__}")


def safe_unpickle(data: bytes, source: str = "pickle") -> Any:
    """Unpickle `data` with RestrictedUnpickler; errors name `source`."""
    unpickler = RestrictedUnpickler(io.BytesIO(data))
    unpickler.source = source
    try:
        return unpickler.load()
    except CheckpointError:
        raise
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, RuntimeError, KeyError,
            IndexError, OverflowError) as e:
        raise CheckpointError(f"{source}: not a readable network pickle ({type(e).__name__}: {e}); it is damaged "
                              "or not a pickle: use another copy of it") from None


def load_network_pickle(path: str | os.PathLike) -> dict[str, Any]:
    """Read an official `network-snapshot-*.pkl` (dict with G, D, G_ema, ...) without running it.

    Networks come back as PersistentRecord; other entries (training_set_kwargs, ...) as plain data.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist; check the path")
    obj = safe_unpickle(path.read_bytes(), source=str(path))
    if isinstance(obj, PersistentRecord):  # a bare pickled network
        obj = {"G_ema": obj} if obj.class_name == "Generator" else {obj.class_name: obj}
    if not isinstance(obj, dict):
        raise CheckpointError(f"{path}: the pickle holds a {type(obj).__name__}, not a network-snapshot dict")
    return obj
