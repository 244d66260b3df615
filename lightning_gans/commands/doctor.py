"""`lightning-gans doctor [--build]`: versions, toolchain, kernel cache, and which implementation
(compiled or reference) each op uses on each device. Exit status 1 when a build failed."""

from __future__ import annotations

from ..ops.doctor import report
from . import _args


def main(argv: list[str] | None = None) -> int:
    p = _args.parser("doctor", __doc__, "--build")
    p.add_argument("--build", action="store_true",
                   help="build the compiled kernels now (CUDA too when nvcc and a GPU or TORCH_CUDA_ARCH_LIST "
                        "are present)")
    return report(build_first=_args.parse(p, argv).build)
