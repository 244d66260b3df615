"""Builds, caches, locks and loads the compiled kernels of csrc/ (torch cpp_extension + ninja).

Dispatch: `LG_OPS` (or an op's `impl=`) is `auto` (default: compiled when it builds, else one
warning and the reference path), `compiled` (a failed build is an error naming the compiler
log) or `ref`. Builds go to `$LG_EXTENSIONS_DIR` (default $LG_CACHE_DIR/ext), one
folder per source hash + torch version + Python + device arch, guarded by a lock file that
names its holder (pid, host) so that a lock left by a killed process is recovered, not waited on.
CPU builds target the CPU's best vector ISA (AVX-512, AVX2 or generic); `LG_CPU_ISA=avx2` (or
`generic`) builds for a lower one, e.g. to measure what an AVX2-only machine gets. The ISA is part
of the cache key, and the built module reports it (`module.isa`).
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import importlib.util
import json
import logging
import os
import platform
import shutil
import socket
import subprocess
import sys
import sysconfig
import threading
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

import torch

from ..errors import ENV_CHOICES
from . import _lock
from ._isa import BuildError, cpu_id, cpu_isa_flags, target_isa
from ._lock import BuildLock

log = logging.getLogger(__name__)


def _find_csrc() -> Path:
    """The kernel sources: lightning_gans/csrc in an installed wheel (the build copies them in),
    else the checkout's top-level csrc/ (source tree, editable install)."""
    package = Path(__file__).resolve().parents[1]
    for path in (package / "csrc", package.parent / "csrc"):
        if (path / "bind_common.h").is_file():
            return path
    return package.parent / "csrc"  # doctor reports the missing sources under this path


CSRC = _find_csrc()
MODES = ENV_CHOICES["LG_OPS"]
_HEADERS = ("bind_common.h", "upfirdn2d.h", "bias_act.h", "bias_act_math.h")
# -march=native is safe because the CPU's feature flags and the target ISA are in the cache key.
_CPU = dict(sources=("bind_cpu.cpp", "upfirdn2d.cpp", "bias_act.cpp", "scaled_bias_act.cpp"),
            headers=("scaled_bias_act.h",),
            cflags=("-O3", "-march=native", "-fopenmp", "-fno-math-errno", "-fno-trapping-math"),
            ldflags=("-fopenmp",))
# -fno-trapping-math: without it GCC may not evaluate both arms of a select such as lrelu's
# `z > 0 ? z : z * alpha` (the unused product could raise an FP exception flag), so below
# AVX-512 (which has masked ops) those loops stay scalar: the bias_act forward ran 3x slower on
# AVX2. The kernels never read FP exception flags; values and NaN/inf handling are unchanged.
_CUDA = dict(sources=("bind_cuda.cpp", "upfirdn2d.cu", "upfirdn2d_tiled.cu", "bias_act.cu"),
             headers=("cuda_types.cuh",), cflags=("-O3",),
             cuda_cflags=("-O3", "-lineinfo"))
LOCK_TIMEOUT_S = 900.0  # default of LG_LOCK_TIMEOUT: longest wait for another process's build
_LIB_EXT = ".pyd" if os.name == "nt" else ".so"


LockTimeout = _lock.LockTimeout


class KernelFallbackWarning(UserWarning):
    """Compiled kernels are unavailable; the reference PyTorch path is used instead."""


def ops_mode(impl: str | None = None) -> str:
    """The implementation choice: `impl` if given, else $LG_OPS, else 'auto'."""
    mode = (impl if impl is not None else os.environ.get("LG_OPS") or "auto").strip().lower()
    if mode not in MODES:
        raise ValueError(f"LG_OPS / impl must be one of {MODES}, got {mode!r}")
    return mode


def cache_root() -> Path:
    """Where builds are cached: $LG_EXTENSIONS_DIR, else $LG_CACHE_DIR/ext (the project's cache,
    default ~/.cache/lightning_gans)."""
    env = os.environ.get("LG_EXTENSIONS_DIR")
    if env:
        return Path(env).expanduser()
    base = os.environ.get("LG_CACHE_DIR") or Path.home() / ".cache" / "lightning_gans"
    return Path(base).expanduser() / "ext"


@functools.cache
def cuda_home() -> str | None:
    """CUDA toolkit root: $CUDA_HOME / $CUDA_PATH, else the folder above the real nvcc's bin/."""
    env = os.environ.get("CUDA_HOME") or os.environ.get("CUDA_PATH")
    if env:
        return env
    nvcc = shutil.which("nvcc")
    if nvcc:
        root = Path(os.path.realpath(nvcc)).parent.parent
        if (root / "include" / "cuda_runtime.h").is_file():
            return str(root)
        # nvcc on PATH can be a wrapper script (/usr/local/bin/nvcc): ask nvcc where it lives.
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            out = subprocess.run([nvcc, "--dryrun", "-x", "cu", os.devnull], capture_output=True,
                                 text=True, timeout=60)
            for line in (out.stdout + out.stderr).splitlines():
                if line.startswith("#$ _HERE_="):
                    return str(Path(line.split("=", 1)[1].strip()).parent)
    return "/usr/local/cuda" if Path("/usr/local/cuda/bin/nvcc").is_file() else None


def cuda_arch_list() -> str | None:
    """$TORCH_CUDA_ARCH_LIST, else the compute capabilities of the visible GPUs, else None."""
    env = os.environ.get("TORCH_CUDA_ARCH_LIST")
    if env:
        return env.strip()
    if torch.cuda.is_available():
        n = torch.cuda.device_count()
        caps = sorted({torch.cuda.get_device_capability(i) for i in range(n)})
        return ";".join(f"{a}.{b}" for a, b in caps)
    return None


@dataclass(frozen=True)
class ExtensionSpec:
    """What to compile: the sources, the flags, and the arch the binary is tied to."""

    name: str  # prefix of the module name; the cache key is appended
    sources: tuple[Path, ...]
    headers: tuple[Path, ...] = ()
    cflags: tuple[str, ...] = ()
    cuda_cflags: tuple[str, ...] = ()
    ldflags: tuple[str, ...] = ()
    arch: str = ""
    cuda: bool = False
    isa: str = ""  # CPU builds: the vector ISA targeted (CPU_ISAS)

    @functools.cached_property
    def key(self) -> str:
        h = hashlib.sha256()
        for p in sorted(self.sources + self.headers):
            h.update(p.name.encode() + b"\0" + p.read_bytes() + b"\0")
        meta = [torch.__version__, torch.version.cuda, sys.implementation.cache_tag,
                platform.machine(), self.cflags, self.cuda_cflags, self.ldflags, self.arch]
        if self.isa:
            meta.append(self.isa)
        h.update(json.dumps(meta).encode())
        return h.hexdigest()

    @property
    def module_name(self) -> str:
        return f"{self.name}_{self.key[:12]}"


def spec_for(device_type: str) -> ExtensionSpec:
    """The extension holding the kernels for one device type ('cpu' or 'cuda')."""
    if device_type not in ("cpu", "cuda"):
        raise BuildError(f"there are no compiled kernels for {device_type!r} tensors")
    cfg = _CPU if device_type == "cpu" else _CUDA
    files = [CSRC / n for n in cfg["sources"] + _HEADERS + cfg.get("headers", ())]
    if missing := [str(p) for p in files if not p.is_file()]:
        raise BuildError(f"kernel sources missing: {missing}; install lightning_gans from a source "
                         "checkout (pip install -e .) or set LG_OPS=ref")
    n = len(cfg["sources"])
    common = dict(sources=tuple(files[:n]), headers=tuple(files[n:]), cflags=cfg["cflags"],
                  cuda_cflags=cfg.get("cuda_cflags", ()), ldflags=cfg.get("ldflags", ()))
    if device_type == "cpu":
        isa = target_isa()
        common["cflags"] = tuple(common["cflags"]) + cpu_isa_flags(isa)
        return ExtensionSpec("lg_ops_cpu", arch=cpu_id(), isa=isa, **common)
    arch = cuda_arch_list()
    if not arch:
        raise BuildError("no GPU is visible and TORCH_CUDA_ARCH_LIST is not set: set it to the "
                         "target GPUs' compute capabilities, e.g. TORCH_CUDA_ARCH_LIST='8.0;9.0'")
    return ExtensionSpec("lg_ops_cuda", arch=arch, cuda=True, **common)


def build_dir(spec: ExtensionSpec, root: Path | None = None) -> Path:
    """The cache folder of one spec."""
    return (root or cache_root()) / f"{spec.name}-{spec.key[:16]}"


def is_built(spec: ExtensionSpec, root: Path | None = None) -> bool:
    """Whether a finished build of `spec` is in the cache."""
    d = build_dir(spec, root)
    return (d / "built.json").is_file() and (d / f"{spec.module_name}{_LIB_EXT}").is_file()


def check_toolchain(spec: ExtensionSpec) -> None:
    """Fail fast, with the fix in the message, when a tool the build needs is missing."""
    cxx = os.environ.get("CXX", "c++")
    if shutil.which(cxx) is None:
        raise BuildError(f"no C++ compiler: {cxx!r} is not on PATH (install g++, or set CXX)")
    if shutil.which("ninja") is None:
        try:  # the pip package puts its binary next to itself; the venv may not be on PATH
            import ninja  # type: ignore[import-not-found]

            os.environ["PATH"] = f"{ninja.BIN_DIR}{os.pathsep}{os.environ.get('PATH', '')}"
        except ImportError:
            raise BuildError("ninja is not installed: pip install ninja") from None
    inc = Path(sysconfig.get_paths()["include"])
    if not (inc / "Python.h").is_file():
        raise BuildError(f"Python headers are missing ({inc}/Python.h): install python3-dev")
    if spec.cuda:
        if torch.version.cuda is None:
            raise BuildError(f"torch {torch.__version__} is built without CUDA")
        home = cuda_home()
        if home is None or not (Path(home) / "bin" / "nvcc").is_file():
            raise BuildError(f"nvcc not found (CUDA_HOME={home}): install the CUDA toolkit "
                             f"{torch.version.cuda} and set CUDA_HOME to its root")


def _import(path: Path, name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise BuildError(f"cannot import {path}")
    module = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(module)
    except ImportError as e:
        raise BuildError(f"cannot load {path} ({e}); delete {path.parent} to rebuild it") from e
    return module


@contextlib.contextmanager
def _build_env(spec: ExtensionSpec) -> Iterator[None]:
    """TORCH_CUDA_ARCH_LIST and CUDA_HOME as the key says, for the duration of one build."""
    if not spec.cuda:
        yield
        return
    cpp = _import_cpp_extension()
    old_env, old_home = os.environ.get("TORCH_CUDA_ARCH_LIST"), cpp.CUDA_HOME
    os.environ["TORCH_CUDA_ARCH_LIST"] = spec.arch
    # torch guesses CUDA_HOME once at import, from the folder above `which nvcc`: wrong when
    # nvcc is a wrapper script; its builder reads this module attribute at build time.
    cpp.CUDA_HOME = cuda_home()
    try:
        yield
    finally:
        cpp.CUDA_HOME = old_home
        if old_env is None:
            os.environ.pop("TORCH_CUDA_ARCH_LIST", None)
        else:
            os.environ["TORCH_CUDA_ARCH_LIST"] = old_env


def _import_cpp_extension() -> ModuleType:
    # On import torch logs "No CUDA runtime is found, using CUDA_HOME=<its guess>" on machines
    # without a GPU: noise for the CPU build, and the guess is replaced in _build_env anyway.
    logger = logging.getLogger("torch.utils.cpp_extension")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        from torch.utils import cpp_extension
    finally:
        logger.setLevel(level)
    return cpp_extension


def _summary(output: str) -> str:
    """The first compiler diagnostic (gcc `file:line:col: error:`, nvcc `file(line): error:`)."""
    lines = [ln.strip() for ln in output.splitlines() if ln.strip()]
    errors = [ln for ln in lines if "error:" in ln or "fatal error" in ln]
    return (errors or lines[-1:] or ["no output"])[0][:300]


def build_or_load(spec: ExtensionSpec, root: Path | None = None,
                  timeout: float | None = None) -> tuple[ModuleType, bool]:
    """Load `spec` from the cache, building it first if needed; returns (module, built_now).

    Several processes may call this at once: one builds under the lock, the rest wait and load.
    """
    d = build_dir(spec, root)
    so = d / f"{spec.module_name}{_LIB_EXT}"
    if is_built(spec, root):
        return _import(so, spec.module_name), False
    check_toolchain(spec)
    d.mkdir(parents=True, exist_ok=True)
    if timeout is None:
        timeout = float(os.environ.get("LG_LOCK_TIMEOUT", LOCK_TIMEOUT_S))
    try:
        lock = BuildLock(d.parent / f"{d.name}.lock", timeout=timeout)
        lock.acquire()
    except LockTimeout as e:
        raise BuildError(str(e)) from e
    try:
        if is_built(spec, root):  # another process built it while we waited
            return _import(so, spec.module_name), False
        # We hold our lock, so any torch lock in this folder is left over from a killed build;
        # torch 2.13 waits forever on one.
        (d / "lock").unlink(missing_ok=True)
        logfile = d / "build.log"
        t0 = time.time()
        cpp_extension = _import_cpp_extension()

        try:
            with _build_env(spec):
                module = cpp_extension.load(
                    name=spec.module_name, sources=[str(s) for s in spec.sources],
                    extra_cflags=list(spec.cflags), extra_cuda_cflags=list(spec.cuda_cflags),
                    extra_ldflags=list(spec.ldflags), extra_include_paths=[str(CSRC)],
                    build_directory=str(d), with_cuda=spec.cuda, verbose=False)
        except Exception as e:  # torch raises RuntimeError/OSError/IndexError with the output
            logfile.write_text(f"{type(e).__name__}: {e}\n")
            raise BuildError(f"building {spec.module_name} failed: {_summary(str(e))}; "
                             f"compiler output: {logfile}") from e
        seconds = time.time() - t0
        logfile.write_text(f"built in {seconds:.1f} s\n")
        info = {"pid": os.getpid(), "host": socket.gethostname(), "seconds": round(seconds, 1),
                "torch": torch.__version__, "arch": spec.arch}
        if spec.isa:
            info["isa"] = getattr(module, "isa", spec.isa)
        (d / "built.json").write_text(json.dumps(info))
        return module, True
    finally:
        lock.release()


_mutex = threading.Lock()
_loaded: dict[str, ModuleType] = {}
_failed: dict[str, BuildError] = {}
_warned: set[str] = set()


def get_module(device_type: str, required: bool = False) -> ModuleType | None:
    """The compiled kernels for a device type, built on first use; None (after one warning) if
    they cannot be built, or BuildError when `required`."""
    module = _loaded.get(device_type)
    if module is not None:
        return module
    with _mutex:
        if device_type not in _loaded and device_type not in _failed:
            try:
                _loaded[device_type] = build_or_load(spec_for(device_type))[0]
            except BuildError as e:
                _failed[device_type] = e
            except OSError as e:
                _failed[device_type] = BuildError(
                    f"cannot use the kernel cache {cache_root()} ({e}); set LG_EXTENSIONS_DIR to "
                    "a writable folder")
        if device_type in _loaded:
            return _loaded[device_type]
        err = _failed[device_type]
        if required:
            raise err
        if device_type not in _warned:
            _warned.add(device_type)
            warnings.warn(f"lightning_gans: compiled {device_type} kernels unavailable, using the "
                          f"slower reference ops. {err} (LG_OPS=ref skips the build; "
                          "`lightning-gans doctor --build` retries it)",
                          KernelFallbackWarning, stacklevel=4)
        return None


def select(
    impl: str | None, device: torch.device, unsupported: str | None = None
) -> ModuleType | None:
    """The compiled module for one op call, or None for the reference path.

    `unsupported` names why the kernels cannot take this call (dtype, ...): the reference path
    is used under 'auto', and it is an error under 'compiled'.
    """
    mode = ops_mode(impl)
    if mode == "ref":
        return None
    if unsupported is None and device.type not in ("cpu", "cuda"):
        unsupported = f"no compiled kernels for {device.type} tensors"
    if unsupported:
        if mode == "compiled":
            raise ValueError(f"{unsupported} (impl/LG_OPS is 'compiled'; use 'auto' or 'ref')")
        return None
    return get_module(device.type, required=mode == "compiled")


def forget_loaded() -> None:
    """Forget loaded modules and failures in this process (tests change the environment)."""
    with _mutex:
        _loaded.clear()
        _failed.clear()
        _warned.clear()
