"""Which vector ISA the CPU kernels are built for: what the CPU has (/proc/cpuinfo flags) and
what $LG_CPU_ISA asks for, and the compiler flags that limit a -march=native build to it."""

from __future__ import annotations

import contextlib
import hashlib
import os
import platform

from ..errors import LGError


class BuildError(LGError, RuntimeError):
    """The kernels could not be built or loaded; the message says why and where the log is."""


# The vector ISA the CPU kernels are built for (LG_CPU_ISA; default: the best the CPU has).
CPU_ISAS = ("avx512", "avx2", "generic")
# Extra flags after -march=native per target below the CPU's own ISA (an AVX2 build on an
# AVX-512 CPU: what an AVX2-only machine such as an AMD EPYC Zen 2/3 compiles to).
_ISA_LIMIT = {"avx2": ("-mno-avx512f",), "generic": ("-mno-avx512f", "-mno-avx2", "-mno-fma")}


def cpu_id() -> str:
    """A short hash of the CPU's feature flags (the -march=native build depends on them)."""
    with contextlib.suppress(OSError):
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("flags"):
                    return hashlib.sha1(line.encode()).hexdigest()[:12]
    return platform.processor() or platform.machine()


def _cpu_flags() -> set[str]:
    with contextlib.suppress(OSError):
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("flags"):
                    return set(line.split(":", 1)[1].split())
    return set()


def detected_isa() -> str:
    """The best vector ISA of this CPU: 'avx512' (F+BW+VL), 'avx2' (with FMA) or 'generic'."""
    flags = _cpu_flags()
    if {"avx512f", "avx512bw", "avx512vl"} <= flags:
        return "avx512"
    if {"avx2", "fma"} <= flags:
        return "avx2"
    return "generic"


def target_isa() -> str:
    """The ISA the CPU kernels are built for: $LG_CPU_ISA (avx512|avx2|generic, at most what the
    CPU has), else detected_isa()."""
    have = detected_isa()
    want = (os.environ.get("LG_CPU_ISA") or "").strip().lower() or have
    if want == "native":
        want = have
    if want not in CPU_ISAS:
        raise BuildError(f"LG_CPU_ISA={want!r} is not one of {CPU_ISAS} (or 'native'); unset it "
                         "to build for this CPU's best ISA")
    if CPU_ISAS.index(want) < CPU_ISAS.index(have):
        raise BuildError(f"LG_CPU_ISA={want} but this CPU only has {have}: the kernels would crash "
                         f"with an illegal instruction; set LG_CPU_ISA={have} or unset it")
    return want


def cpu_isa_flags(isa: str) -> tuple[str, ...]:
    """Compiler flags that limit a -march=native build to `isa`."""
    return _ISA_LIMIT.get(isa, ()) if CPU_ISAS.index(isa) > CPU_ISAS.index(detected_isa()) else ()
