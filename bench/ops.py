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

The ISA line and the JSON name the vector ISA the CPU kernels were built for (`isa`), the CPU's
best (`cpu_isa`) and the one torch's reference kernels run (`torch_isa`). To measure what an
AVX2-only machine gets on an AVX-512 one: `LG_CPU_ISA=avx2 ATEN_CPU_CAPABILITY=avx2`.

    OMP_WAIT_POLICY=PASSIVE python bench/ops.py [--quick] [--device cuda]
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


def timed_pair(a: Callable[[], None], b: Callable[[], None], min_time: float, sync: Callable[[], None]):
    """Median seconds of a() and of b(), timed alternately (so that load from other processes
    hits both alike), after a warm-up; at least 5 repeats each and about min_time in total."""
    a(), b()
    ta: list[float] = []
    tb: list[float] = []
    while len(ta) < 5 or (sum(ta) + sum(tb) < min_time and len(ta) < 100):
        for fn, times in ((a, ta), (b, tb)):
            sync()
            t0 = time.perf_counter()
            fn()
            sync()
            times.append(time.perf_counter() - t0)
    return statistics.median(ta), statistics.median(tb)


def runner(op: str, shape: tuple[int, ...], kw: dict, impl: str, backward: bool, device: str):
    torch.manual_seed(0)
    x = torch.randn(shape, device=device, requires_grad=backward)
    b = torch.randn(shape[1], device=device, requires_grad=backward) if op == "bias_act" else None
    kw = {k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in kw.items()}

    def call() -> None:
        y = upfirdn2d(x, impl=impl, **kw) if op == "upfirdn2d" else bias_act(x, b, impl=impl, **kw)
        if backward:
            y.backward(torch.ones_like(y))

    return call


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="64 px shapes only, short timing")
    ap.add_argument("--device", default="cpu", help="cpu (the targets) or cuda")
    args = ap.parse_args()
    device = torch.device(args.device)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    min_time = 0.5 if args.quick else 2.0
    module = _jit.get_module(device.type, required=True)  # build before timing
    isa = {"isa": getattr(module, "isa", device.type), "cpu_isa": _jit.detected_isa(),
           "torch_isa": torch.backends.cpu.get_cpu_capability().lower()}
    print(f"torch {torch.__version__}, {device}, {torch.get_num_threads()} CPU threads, "
          f"OMP_WAIT_POLICY={os.environ['OMP_WAIT_POLICY']}")
    print(f"ISA: kernels built for {isa['isa']} (CPU has {isa['cpu_isa']}"
          f"{', LG_CPU_ISA=' + os.environ['LG_CPU_ISA'] if os.environ.get('LG_CPU_ISA') else ''}), "
          f"torch reference ops use {isa['torch_isa']}")
    head = (f"{'op':<10}{'call':<32}{'shape':<22}{'pass':<9}{'isa':<8}{'ref ms':>9}{'comp ms':>9}"
            f"{'ratio':>7}")
    print(head)
    print("-" * len(head))
    worst: dict[str, float] = {}
    for op, kind, name, shape, kw in cases(args.quick):
        for backward in (False, True):
            ref, comp = timed_pair(runner(op, shape, kw, "ref", backward, args.device),
                                   runner(op, shape, kw, "compiled", backward, args.device),
                                   min_time, sync)
            ratio = ref / comp
            passes = "fwd+bwd" if backward else "fwd"
            print(f"{op:<10}{name:<32}{'x'.join(map(str, shape)):<22}{passes:<9}{isa['isa']:<8}"
                  f"{ref * 1e3:9.2f}{comp * 1e3:9.2f}{ratio:7.2f}")
            if backward:
                key = {"up": "upfirdn2d_speedup", "down": "upfirdn2d_speedup",
                       "filter": "upfirdn2d_filter_speedup", "conv": "bias_act_speedup",
                       "fc": "bias_act_fc_speedup"}[kind]
                worst[key] = min(worst.get(key, float("inf")), ratio)
    print(json.dumps({**{k: round(v, 2) for k, v in worst.items()}, **isa}))


if __name__ == "__main__":
    main()
