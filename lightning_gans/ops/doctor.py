"""What `lightning-gans doctor` reports: versions, toolchain, kernel cache, and which implementation
(compiled or reference) each op uses on each device; it can build the kernels first."""

from __future__ import annotations

import json
import os
import platform
import shutil
import subprocess
import sys
import time
from pathlib import Path

import torch

from . import _isa, _jit
from .bias_act import _KERNEL_DTYPES

OPS = ("upfirdn2d", "bias_act")


def _first_line(cmd: list[str], containing: str = "") -> str:
    """First line of a tool's --version output (containing a word, if given), or why none."""
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.SubprocessError) as e:
        return f"unavailable ({e.__class__.__name__})"
    lines = [ln.strip() for ln in (out.stdout or out.stderr).splitlines() if containing in ln]
    return lines[0] if lines else "unknown"


def toolchain() -> list[tuple[str, str]]:
    """(name, description) of every tool and setting the kernels depend on."""
    cxx = os.environ.get("CXX", "c++")
    cxx_path = shutil.which(cxx)
    ninja = shutil.which("ninja")
    home = _jit.cuda_home()
    nvcc = Path(home) / "bin" / "nvcc" if home else None
    gpus = []
    for i in range(torch.cuda.device_count() if torch.cuda.is_available() else 0):
        major, minor = torch.cuda.get_device_capability(i)
        gpus.append(f"{torch.cuda.get_device_name(i)} (sm {major}.{minor})")
    import lightning_gans

    return [
        ("lightning_gans", lightning_gans.__version__),
        ("python", f"{platform.python_version()} ({sys.executable})"),
        ("torch", f"{torch.__version__} (CUDA {torch.version.cuda or 'none'}), "
                  f"{torch.get_num_threads()} CPU threads"),
        ("GPUs", ", ".join(gpus) or "none visible"),
        ("C++ compiler", f"{cxx_path}: {_first_line([cxx_path, '--version'])}" if cxx_path
         else f"{cxx!r} not found on PATH"),
        ("ninja", f"{ninja}: {_first_line([ninja, '--version'])}" if ninja else "not on PATH"),
        ("nvcc", f"{nvcc}: {_first_line([str(nvcc), '--version'], 'release')}"
         if nvcc and nvcc.is_file() else "not found"),
        ("CUDA_HOME", home or "unset"),
        ("TORCH_CUDA_ARCH_LIST", os.environ.get("TORCH_CUDA_ARCH_LIST") or
         f"unset (GPUs seen: {_jit.cuda_arch_list() or 'none'})"),
        ("CPU ISA", cpu_isa()),
        ("LG_OPS", os.environ.get("LG_OPS") or "unset (auto)"),
        ("LG_UPFIRDN2D", upfirdn2d_cuda_kernel()),
        ("kernel cache", f"{_jit.cache_root()} (LG_EXTENSIONS_DIR, else LG_CACHE_DIR/ext)"),
    ]


def upfirdn2d_cuda_kernel() -> str:
    """Which CUDA upfirdn2d kernel is selected (LG_UPFIRDN2D=direct|tiled), or why none is."""
    from .upfirdn2d import cuda_kernel

    env = os.environ.get("LG_UPFIRDN2D")
    try:
        kernel = cuda_kernel()
    except ValueError as e:
        return f"invalid: {e}"
    return f"{kernel} CUDA kernel" + (f" (LG_UPFIRDN2D={env})" if env else " (unset; tiled is opt-in)")


def cpu_isa() -> str:
    """The CPU's vector ISA, the one the CPU kernels target, and torch's own kernels' choice."""
    have = _isa.detected_isa()
    try:
        target = _isa.target_isa()
    except _jit.BuildError as e:
        target = f"none: {e}"
    env = os.environ.get("LG_CPU_ISA")
    why = f" (LG_CPU_ISA={env})" if env else ""
    return (f"{have} (CPU); kernels target {target}{why}; torch's own CPU kernels use "
            f"{torch.backends.cpu.get_cpu_capability()}")


def built_isa(spec: _jit.ExtensionSpec) -> str:
    """The ISA a cached CPU build reports in its built.json (the module's own `isa`)."""
    try:
        info = json.loads((_jit.build_dir(spec) / "built.json").read_text())
    except (OSError, ValueError):
        info = {}
    return str(info.get("isa") or spec.isa)


def device_state(device_type: str) -> tuple[str, str]:
    """(implementation, detail) for one device type, without building anything."""
    mode = _jit.ops_mode()
    if mode == "ref":
        return "reference", "LG_OPS=ref"
    no_gpu = device_type == "cuda" and not torch.cuda.is_available()
    try:
        spec = _jit.spec_for(device_type)
        if _jit.is_built(spec):
            where = _jit.build_dir(spec)
            if no_gpu:
                return "reference", f"no GPU visible (kernels for sm {spec.arch} cached in {where})"
            if device_type == "cpu":
                return "compiled", f"built for {built_isa(spec)}, cached in {where}"
            return "compiled", f"cached in {where}"
        if no_gpu:
            return "reference", "no GPU visible"
        _jit.check_toolchain(spec)
    except _jit.BuildError as e:
        if no_gpu:
            return "reference", "no GPU visible"
        return ("error" if mode == "compiled" else "reference"), str(e)
    what = f"for {spec.isa} " if device_type == "cpu" else ""
    return "compiled", f"built {what}on first use (a minute or two), then cached"


def build(device_type: str) -> bool:
    """Build (or load from the cache) one device's kernels now; print and return success."""
    t0 = time.time()
    try:
        spec = _jit.spec_for(device_type)
        _, built = _jit.build_or_load(spec)
    except _jit.BuildError as e:
        print(f"  {device_type}: FAILED: {e}")
        return False
    what = "built" if built else "already cached"
    isa = f" for {built_isa(spec)}" if device_type == "cpu" else ""
    print(f"  {device_type}: {what}{isa} in {time.time() - t0:.1f} s: {_jit.build_dir(spec)}")
    return True


def report(build_first: bool = False) -> int:
    """Print the report; with build_first, build the kernels first. Returns 1 if a build failed."""
    width = max(len(k) for k, _ in toolchain())
    for key, value in toolchain():
        print(f"{key:<{width}}  {value}")
    ok = True
    if build_first:
        print("building kernels:")
        ok = build("cpu")
        cuda_target = torch.cuda.is_available() or os.environ.get("TORCH_CUDA_ARCH_LIST")
        if cuda_target and torch.version.cuda:
            ok = build("cuda") and ok
        else:
            print("  cuda: skipped (no GPU visible and TORCH_CUDA_ARCH_LIST unset)")
    print(f"\n{'device':<8}{'op':<11}{'implementation':<16}detail")
    for device_type in ("cpu", "cuda"):
        impl, detail = device_state(device_type)
        dtypes = ", ".join(str(d).replace("torch.", "") for d in _KERNEL_DTYPES[device_type])
        if impl == "compiled":
            detail = f"{detail}; {dtypes} (others use the reference)"
        for op in OPS:
            extra = ""
            if device_type == "cuda" and op == "upfirdn2d" and impl == "compiled":
                extra = f"; {upfirdn2d_cuda_kernel()}"
            print(f"{device_type:<8}{op:<11}{impl:<16}{detail}{extra}")
    return 0 if ok else 1

