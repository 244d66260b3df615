"""Benchmark: compiled vs reference upfirdn2d and bias_act, StyleGAN2 shapes (batch 8), CPU or GPU.

Shapes are the largest calls of the StyleGAN2-ADA layout at 64 px (channel_base 2048,
channel_max 64, the bench/train_step.py setting) and at 256 px (channel_base 16384, channel_max
512): G's filter after the stride-2 transposed conv, the ToRGB skip upsample, D's filter before
the stride-2 conv and the skip downsample; the conv epilogue bias+lrelu(+clamp) and a mapping FC.
Prints a table, then a last line of JSON with the smallest compiled/reference speed ratio
(forward+backward) per group: upfirdn2d_speedup (up/down calls, target >= 3),
upfirdn2d_filter_speedup (filter-only calls), bias_act_speedup (feature-map epilogues, target
>= 2) and bias_act_fc_speedup (the [8, 512] mapping layer: per-call overhead of autograd
dominates there, ~1.1x).

On CUDA, `--upfirdn2d-impl` picks the compiled upfirdn2d kernel: direct (the default kernel),
tiled (the opt-in shared-memory kernel, LG_UPFIRDN2D=tiled) or both (the default there: a tiled
column and ratio are added, and the JSON gets upfirdn2d_tiled_speedup / upfirdn2d_filter_tiled_speedup
(tiled vs reference) and tiled_vs_direct (the smallest tiled/direct speed ratio): if tiled_vs_direct
> 1 and the tiled speedups beat the direct ones, the tiled kernel can become the default).

The ISA line and the JSON name the vector ISA the CPU kernels were built for (`isa`), the CPU's
best (`cpu_isa`) and the one torch's reference kernels run (`torch_isa`). To measure what an
AVX2-only machine gets on an AVX-512 one: `LG_CPU_ISA=avx2 ATEN_CPU_CAPABILITY=avx2`.

    OMP_WAIT_POLICY=PASSIVE python bench/ops.py [--quick] [--device cuda [--upfirdn2d-impl both]]
"""

from __future__ import annotations

import os

# Spinning OpenMP threads distort timings on a shared machine; must be set before torch loads.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import argparse  # noqa: E402
import json  # noqa: E402
import statistics  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable  # noqa: E402

import torch  # noqa: E402

from lightning_gans.ops import (  # noqa: E402
    _isa,  # noqa: E402
    _jit,  # noqa: E402
    bias_act,
    setup_filter,
    upfirdn2d,
)

F4 = setup_filter([1, 3, 3, 1])  # StyleGAN2's resampling filter, 4x4 (non-separable form)


def channels(res: int, base: int, cmax: int) -> int:
    return min(base // res, cmax)


def cases(quick: bool) -> list[tuple[str, str, str, tuple[int, ...], dict]]:
    """(op, kind, name, x shape, kwargs) for each benchmarked call."""
    out = []
    configs = [(64, 2048, 64)] if quick else [(64, 2048, 64), (256, 16384, 512)]
    for res, base, cmax in configs:
        c, n = channels(res, base, cmax), 8
        out += [
            ("upfirdn2d", "up", f"{res}px G torgb skip up2", (n, 3, res // 2, res // 2),
             dict(f=F4, up=2, padding=[2, 1, 2, 1], gain=4)),
            ("upfirdn2d", "down", f"{res}px D skip down2", (n, c, res, res),
             dict(f=F4, down=2, padding=1)),
            ("upfirdn2d", "filter", f"{res}px G filter after convT", (n, c, res + 1, res + 1),
             dict(f=F4, padding=1, gain=4)),
            ("upfirdn2d", "filter", f"{res}px D filter before conv/2", (n, c, res, res),
             dict(f=F4, padding=2)),
            ("bias_act", "conv", f"{res}px conv lrelu clamp", (n, c, res, res),
             dict(act="lrelu", clamp=256.0)),
        ]
    out.append(("bias_act", "fc", "mapping fc lrelu", (8, 512), dict(act="lrelu")))
    return out


def timed(fns: list[Callable[[], None]], min_time: float, sync: Callable[[], None]) -> list[float]:
    """Median seconds of each fn(), timed round-robin (so that load from other processes hits
    all alike), after a warm-up; at least 5 repeats each and about min_time in total."""
    for fn in fns:
        fn()
    times: list[list[float]] = [[] for _ in fns]
    while len(times[0]) < 5 or (sum(map(sum, times)) < min_time and len(times[0]) < 100):
        for fn, ts in zip(fns, times):
            sync()
            t0 = time.perf_counter()
            fn()
            sync()
            ts.append(time.perf_counter() - t0)
    return [statistics.median(ts) for ts in times]


def runner(op: str, shape: tuple[int, ...], kw: dict, impl: str, backward: bool, device: str,
           kernel: str | None = None):
    torch.manual_seed(0)
    x = torch.randn(shape, device=device, requires_grad=backward)
    b = torch.randn(shape[1], device=device, requires_grad=backward) if op == "bias_act" else None
    kw = {k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in kw.items()}

    def call() -> None:
        y = upfirdn2d(x, impl=impl, kernel=kernel, **kw) if op == "upfirdn2d" else bias_act(x, b, impl=impl, **kw)
        if backward:
            y.backward(torch.ones_like(y))

    return call


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="64 px shapes only, short timing")
    ap.add_argument("--device", default="cpu", help="cpu (the targets) or cuda")
    ap.add_argument("--upfirdn2d-impl", choices=("direct", "tiled", "both"), default="both",
                    help="CUDA upfirdn2d kernel(s) to time against the reference (both: direct and tiled)")
    args = ap.parse_args()
    device = torch.device(args.device)
    cuda = device.type == "cuda"
    sync = torch.cuda.synchronize if cuda else (lambda: None)
    min_time = 0.5 if args.quick else (1.0 if cuda else 2.0)  # GPU timings settle sooner
    # kernel of the 'comp' column, and whether a tiled column is added (CUDA only)
    comp_kernel = "tiled" if cuda and args.upfirdn2d_impl == "tiled" else "direct"
    tiled_col = cuda and args.upfirdn2d_impl == "both"
    module = _jit.get_module(device.type, required=True)  # build before timing
    isa = {"isa": getattr(module, "isa", device.type), "cpu_isa": _isa.detected_isa(),
           "torch_isa": torch.backends.cpu.get_cpu_capability().lower()}
    print(f"torch {torch.__version__}, {device}, {torch.get_num_threads()} CPU threads, "
          f"OMP_WAIT_POLICY={os.environ['OMP_WAIT_POLICY']}")
    print(f"ISA: kernels built for {isa['isa']} (CPU has {isa['cpu_isa']}"
          f"{', LG_CPU_ISA=' + os.environ['LG_CPU_ISA'] if os.environ.get('LG_CPU_ISA') else ''}), "
          f"torch reference ops use {isa['torch_isa']}")
    head = (f"{'op':<10}{'call':<32}{'shape':<22}{'pass':<9}{'isa':<8}{'ref ms':>9}{'comp ms':>9}"
            f"{'ratio':>7}" + (f"{'tiled ms':>10}{'ratio':>7}{'t/d':>6}" if tiled_col else ""))
    if cuda:
        print(f"upfirdn2d 'comp' column: the {comp_kernel} CUDA kernel"
              + ("; 'tiled': the shared-memory tiled kernel, t/d its speed-up over direct" if tiled_col else ""))
    print(head)
    print("-" * len(head))
    worst: dict[str, float] = {}
    for op, kind, name, shape, kw in cases(args.quick):
        for backward in (False, True):
            fns = [runner(op, shape, kw, "ref", backward, args.device),
                   runner(op, shape, kw, "compiled", backward, args.device, comp_kernel)]
            with_tiled = tiled_col and op == "upfirdn2d"
            if with_tiled:
                fns.append(runner(op, shape, kw, "compiled", backward, args.device, "tiled"))
            ref, comp, *tiled = timed(fns, min_time, sync)
            ratio = ref / comp
            passes = "fwd+bwd" if backward else "fwd"
            extra = f"{tiled[0] * 1e3:10.2f}{ref / tiled[0]:7.2f}{comp / tiled[0]:6.2f}" if with_tiled else ""
            print(f"{op:<10}{name:<32}{'x'.join(map(str, shape)):<22}{passes:<9}{isa['isa']:<8}"
                  f"{ref * 1e3:9.2f}{comp * 1e3:9.2f}{ratio:7.2f}{extra}")
            if backward:
                key = {"up": "upfirdn2d_speedup", "down": "upfirdn2d_speedup",
                       "filter": "upfirdn2d_filter_speedup", "conv": "bias_act_speedup",
                       "fc": "bias_act_fc_speedup"}[kind]
                worst[key] = min(worst.get(key, float("inf")), ratio)
                if with_tiled:
                    tkey = "upfirdn2d_filter_tiled_speedup" if kind == "filter" else "upfirdn2d_tiled_speedup"
                    worst[tkey] = min(worst.get(tkey, float("inf")), ref / tiled[0])
                    worst["tiled_vs_direct"] = min(worst.get("tiled_vs_direct", float("inf")), comp / tiled[0])
    upf = {"upfirdn2d_kernel": comp_kernel} if cuda else {}
    print(json.dumps({**{k: round(v, 2) for k, v in worst.items()}, **isa, **upf}))


if __name__ == "__main__":
    main()
