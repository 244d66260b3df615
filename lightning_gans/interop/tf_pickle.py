"""Restricted reader for the official TensorFlow StyleGAN / StyleGAN2 network pickles.

`karras2019stylegan-*.pkl`, `stylegan2-*-config-*.pkl` and the TF `network-snapshot-*.pkl` are a
pickled tuple (G, D, Gs) of `dnnlib.tflib.network.Network`. Each network's state is a dict:
version (3 for StyleGAN, 4 for StyleGAN2), name, static_kwargs, components (mapping/synthesis
sub-networks), build_module_src (the full source of networks_stylegan*.py), build_func_name and
variables [(local name, ndarray)]. The official loader exec()s build_module_src; here it is never
executed, compiled or imported: `Network` maps to TFNetwork, which keeps the variables and kwargs
as data, and the only other globals allowed are the numpy ones that rebuild float arrays (both the
numpy-1.x `numpy.core.multiarray` names of 2019 files and the numpy-2 `numpy._core` ones). Any
other global is refused by name, through the same RestrictedUnpickler as the PyTorch pickles.
"""

from __future__ import annotations

import io
import os
import pickle
import re
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..errors import CheckpointError
from .safe_pickle import RestrictedUnpickler, _numpy_scalar

try:  # numpy >= 2
    from numpy._core.multiarray import _reconstruct as _np_reconstruct
except ImportError:  # pragma: no cover - numpy 1.x
    from numpy.core.multiarray import _reconstruct as _np_reconstruct

STATE_KEYS = ("version", "name", "static_kwargs", "components", "build_module_src", "build_func_name", "variables")


class TFNetwork:
    """What a pickled dnnlib.tflib.network.Network holds, as data (nothing of it runs).

    variables: {local name: float32 ndarray} of this network's own variables; components:
    sub-networks by role ('mapping', 'synthesis'). build_module_src is kept only as its length.
    """

    version: int
    name: str
    static_kwargs: dict
    components: dict[str, TFNetwork]
    build_func_name: str
    variables: dict[str, np.ndarray]
    source_chars: int

    def __setstate__(self, state: Any) -> None:
        if not isinstance(state, dict) or not {"version", "name", "variables"} <= set(state):
            keys = sorted(state) if isinstance(state, dict) else type(state).__name__
            raise CheckpointError(f"a pickled Network has state {keys}; expected the keys {list(STATE_KEYS)}")
        self.version = int(state["version"])
        self.name = str(state["name"])
        self.static_kwargs = dict(state.get("static_kwargs") or {})
        self.components = dict(state.get("components") or {})
        self.build_func_name = str(state.get("build_func_name", ""))
        src = state.get("build_module_src")
        self.source_chars = len(src) if isinstance(src, str) else 0  # never run: only measured
        self.variables = {}
        for item in state["variables"]:
            if not (isinstance(item, tuple | list) and len(item) == 2 and isinstance(item[0], str)):
                raise CheckpointError(f"network {self.name}: a variable entry is {type(item).__name__}, "
                                      "expected (name, array)")
            name, value = item
            arr = np.asarray(value)
            if arr.dtype.kind not in "fiub":
                raise CheckpointError(f"network {self.name}: variable {name} has dtype {arr.dtype}; "
                                      "only numeric arrays are accepted")
            self.variables[name] = arr
        for role, comp in self.components.items():
            if not isinstance(comp, TFNetwork):
                raise CheckpointError(f"network {self.name}: component {role} is a {type(comp).__name__}, "
                                      "not a Network")

    def all_variables(self, prefix: str = "") -> dict[str, np.ndarray]:
        """Own variables plus the components', the latter as 'role/name' (e.g. 'mapping/Dense0/weight')."""
        out = {prefix + k: v for k, v in self.variables.items()}
        for role, comp in self.components.items():
            out.update(comp.all_variables(f"{prefix}{role}/"))
        return out

    def __repr__(self) -> str:
        return f"TFNetwork({self.name}, {self.build_func_name}, version {self.version})"


def _ndarray_reconstruct(cls: Any, shape: Any, dtype: Any) -> Any:
    # numpy's ndarray.__reduce__: _reconstruct(ndarray, (0,), b'b'), then BUILD sets shape/dtype/data.
    if cls is not np.ndarray:
        raise CheckpointError(f"refusing to rebuild an array of class {cls!r} (only numpy.ndarray)")
    return _np_reconstruct(cls, shape, dtype)


def _dtype(spec: Any, align: bool = False, copy: bool = False) -> np.dtype:
    d = np.dtype(spec, align, copy)
    if d.hasobject:
        raise CheckpointError(f"refusing numpy dtype {spec!r} (object arrays could hold anything)")
    return d


TF_GLOBALS: dict[tuple[str, str], Any] = {
    ("dnnlib.tflib.network", "Network"): TFNetwork,
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): _dtype,
    ("numpy.core.multiarray", "_reconstruct"): _ndarray_reconstruct,
    ("numpy._core.multiarray", "_reconstruct"): _ndarray_reconstruct,
    ("numpy.core.multiarray", "scalar"): _numpy_scalar,
    ("numpy._core.multiarray", "scalar"): _numpy_scalar,
}


class TFRestrictedUnpickler(RestrictedUnpickler):
    """RestrictedUnpickler with the globals of a TF network pickle only."""

    def find_class(self, module: str, name: str) -> Any:
        try:
            return TF_GLOBALS[(module, name)]
        except KeyError:
            raise CheckpointError(
                f"{self.source}: refusing to load: it references {module}.{name}, which is not needed to "
                "rebuild TensorFlow StyleGAN network variables (nothing from the file was run); only official "
                "StyleGAN/StyleGAN2 TensorFlow network pickles are accepted"
            ) from None


def is_tf_pickle(data: bytes) -> bool:
    """Whether a pickle's globals name dnnlib.tflib (the TF network format), without unpickling it."""
    return b"dnnlib.tflib.network" in data[:4096]


def tf_unpickle(data: bytes, source: str = "pickle") -> Any:
    """Unpickle `data` (latin1 strings, as numpy-1.x/Python-2-era pickles need) with TF_GLOBALS only."""
    unpickler = TFRestrictedUnpickler(io.BytesIO(data), encoding="latin1")
    unpickler.source = source
    try:
        return unpickler.load()
    except CheckpointError as e:
        if str(e).startswith(source):
            raise
        raise CheckpointError(f"{source}: {e}") from None
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, RuntimeError, KeyError,
            IndexError, OverflowError) as e:
        raise CheckpointError(f"{source}: not a readable TensorFlow network pickle ({type(e).__name__}: {e})") from None


def load_tf_pickle(path: str | os.PathLike, data: bytes | None = None) -> dict[str, TFNetwork]:
    """{'G', 'D', 'Gs'} of an official TF network pickle (a bare Network comes back as 'Gs')."""
    path = Path(path)
    if data is None:
        if not path.is_file():
            raise CheckpointError(f"checkpoint {path} does not exist; check the path")
        data = path.read_bytes()
    obj = tf_unpickle(data, str(path))
    if isinstance(obj, TFNetwork):
        return {"Gs": obj}
    if not (isinstance(obj, tuple) and len(obj) == 3 and all(isinstance(n, TFNetwork) for n in obj)):
        raise CheckpointError(f"{path}: the pickle holds a {type(obj).__name__}, not the (G, D, Gs) tuple of "
                              "TensorFlow networks")
    return dict(zip(("G", "D", "Gs"), obj))


# A rule: (regex over our state-dict key, fn(match) -> (TF variable name, transform(ndarray) -> ndarray)).
Rule = tuple[str, Any]
FIXED_BUFFERS = re.compile(r"(.*\.)?(resample_filter|blur_filter)")  # constant FIR taps: ours, not in TF files


def kh_kw_in_out(a: np.ndarray) -> np.ndarray:
    """TF conv weight [kh, kw, in, out] -> ours [out, in, kh, kw] (both cross-correlations)."""
    return a.transpose(3, 2, 0, 1)


def in_out(a: np.ndarray) -> np.ndarray:
    """TF dense weight [in, out] -> ours [out, in]."""
    return a.T


def fill_state_dict(own: dict[str, torch.Tensor], tf_vars: dict[str, np.ndarray], rules: list[Rule],
                    what: str, ignore: tuple[str, ...] = ()) -> dict[str, torch.Tensor]:
    """Our state dict with every entry taken from the TF variables by `rules`.

    Every TF variable must be used (except the names in `ignore`) and every one of our tensors
    must come from one, with the same shape after its transform; a mismatch is a one-line
    CheckpointError naming the variable and why.
    """
    out: dict[str, torch.Tensor] = {}
    used: set[str] = set()
    for key, mine in own.items():
        found = next(((m, fn) for pattern, fn in rules if (m := re.fullmatch(pattern, key))), None)
        if found is None:
            if FIXED_BUFFERS.fullmatch(key):
                out[key] = mine.clone()
                continue
            raise CheckpointError(f"{what}: no rule maps a TF variable onto our {key} (this project's network "
                                  "has a tensor the TF architecture lacks)")
        m, fn = found
        tf_name, transform = fn(m)
        if tf_name not in tf_vars:
            raise CheckpointError(f"{what}: the file has no variable {tf_name} (needed for our {key}); the "
                                  "network's variables do not fit the architecture its kwargs describe")
        value = np.array(transform(np.asarray(tf_vars[tf_name], dtype=np.float32)), dtype=np.float32, order="C")
        if tuple(value.shape) != tuple(mine.shape):
            raise CheckpointError(f"{what}: variable {tf_name} has shape {tuple(tf_vars[tf_name].shape)}, which "
                                  f"gives {tuple(value.shape)} for our {key} of shape {tuple(mine.shape)}")
        out[key] = torch.from_numpy(value.copy()).to(mine.dtype)
        used.add(tf_name)
    extra = sorted(set(tf_vars) - used - set(ignore))
    if extra:
        raise CheckpointError(f"{what}: variable {extra[0]} {tuple(tf_vars[extra[0]].shape)} (and {len(extra) - 1} "
                              "more) has no place in the architecture the kwargs describe; not converted")
    return out


def network_kwargs(net: TFNetwork) -> dict:
    """A network's static_kwargs with its components' (mapping, synthesis) where it sets none."""
    merged = dict(net.static_kwargs)
    for comp in net.components.values():
        merged.update({k: v for k, v in comp.static_kwargs.items() if k not in merged})
    return merged


def check_kwargs(kwargs: dict, known: dict[str, Any], what: str, fixed: dict[str, Any] | None = None,
                 arch: str = "the official architecture") -> dict:
    """kwargs with defaults filled in; an unknown key, or a `fixed` key set otherwise, is an error
    naming it."""
    unknown = sorted(set(kwargs) - set(known))
    if unknown:
        raise CheckpointError(f"{what}: static_kwargs {unknown} are settings this converter does not know; "
                              "the network may not be the official architecture")
    kw = {**known, **kwargs}
    for k, want in (fixed or {}).items():
        got = list(kw[k]) if isinstance(kw[k], tuple) else kw[k]
        if got != want:
            raise CheckpointError(f"{what}: {k}={kw[k]!r}; only {want!r} ({arch}) is implemented here")
    return kw
