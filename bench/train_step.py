"""Time one StyleGAN2 training iteration, reference ops vs compiled kernels, in one process.

    OMP_WAIT_POLICY=PASSIVE python bench/train_step.py --resolution 64 --batch 8 \
        --channel-base 2048 --channel-max 64

An iteration is what the official loop does every minibatch: G main step (through D), D main
step, G_ema update; fp32, style mixing 0.9, 8-layer mapping, z = w = 512, mbstd group 4. The R1
(every 16) and path-length (every 4) steps are timed separately and amortized. Prints a table
and, as its last line, a JSON object with `iter_ms` and `amortized_ms` of the compiled path.
A benchmark, not a test.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time

import torch

from lightning_gans.modules.common import ema_beta, ema_update, set_requires_grad
from lightning_gans.modules.stylegan2 import StyleGAN2Module


def build(args) -> StyleGAN2Module:
    torch.manual_seed(0)
    return StyleGAN2Module(
        resolution=args.resolution, z_dim=512, w_dim=512, mapping_layers=8, channel_base=args.channel_base,
        channel_max=args.channel_max, mbstd_group_size=4, batch_size=args.batch, style_mixing_prob=0.9,
    )


def phases(m: StyleGAN2Module, batch: int):
    """Closures running one phase each with plain torch optimizers (no Trainer in the loop)."""
    opt_g, opt_d = (torch.optim.Adam(m.G.parameters(), lr=0.002, betas=(0.0, 0.99)),
                    torch.optim.Adam(m.D.parameters(), lr=0.002, betas=(0.0, 0.99)))
    real = torch.rand(batch, 3, m.hparams.resolution, m.hparams.resolution) * 2 - 1
    z = lambda: torch.randn(batch, 512)  # noqa: E731

    def step(opt, net, loss):
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    def g_main():
        set_requires_grad(m.G, True), set_requires_grad(m.D, False)
        step(opt_g, m.G, m.loss.g_main(z(), None)[0])

    def d_main():
        set_requires_grad(m.G, False), set_requires_grad(m.D, True)
        step(opt_d, m.D, m.loss.d_main(real, None, z(), None)[0])

    def iteration():
        g_main()
        d_main()
        ema_update(m.G_ema, m.G, ema_beta(batch, 10_000, 10, None))

    def r1():
        set_requires_grad(m.D, True)
        step(opt_d, m.D, m.loss.d_r1(real, None, gain=16)[0])

    def pl():
        set_requires_grad(m.G, True), set_requires_grad(m.D, False)
        step(opt_g, m.G, m.loss.g_pl(z(), None, gain=4)[0])

    return {"iter": iteration, "r1": r1, "pl": pl}


def median_ms(fn, warmup: int, repeats: int) -> float:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t) * 1000)
    return statistics.median(times)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--resolution", type=int, default=64)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--channel-base", type=int, default=2048)
    p.add_argument("--channel-max", type=int, default=64)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--repeats", type=int, default=10)
    args = p.parse_args()
    results = {}
    for mode in ("ref", "compiled"):
        os.environ["LG_OPS"] = mode
        m = build(args)
        fns = phases(m, args.batch)
        results[mode] = {k: median_ms(f, args.warmup, args.repeats) for k, f in fns.items()}
        r = results[mode]
        r["amortized"] = r["iter"] + r["r1"] / 16 + r["pl"] / 4
    print(f"{'phase':10s} {'ref ms':>10s} {'compiled ms':>12s} {'ratio':>7s}")
    for k in ("iter", "r1", "pl", "amortized"):
        a, b = results["ref"][k], results["compiled"][k]
        print(f"{k:10s} {a:10.1f} {b:12.1f} {a / b:7.2f}")
    c = results["compiled"]
    print(json.dumps({"iter_ms": round(c["iter"], 1), "amortized_ms": round(c["amortized"], 1),
                      "ref_iter_ms": round(results["ref"]["iter"], 1),
                      "ref_amortized_ms": round(results["ref"]["amortized"], 1),
                      "threads": torch.get_num_threads()}))


if __name__ == "__main__":
    main()
