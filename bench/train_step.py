"""Time one StyleGAN2 training iteration, reference ops vs compiled kernels, in one process.

    OMP_WAIT_POLICY=PASSIVE python bench/train_step.py --resolution 64 --batch 8 \
        --channel-base 2048 --channel-max 64

An iteration is what the official loop does every minibatch: G main step (through D), D main
step, G_ema update; fp32, style mixing 0.9, 8-layer mapping, z = w = 512, mbstd group 4. The R1
(every 16) and path-length (every 4) steps are timed separately and amortized. Prints a table
and, as its last line, a JSON object with `iter_ms` and `amortized_ms` of the compiled path.

`--official DIR` also times the official StyleGAN2-ADA code (a checkout of
NVlabs/stylegan2-ada-pytorch that you provide; nothing of it ships here) on the same
configuration in the same process, with the phases of its training loop (requires_grad toggled
per phase, nan_to_num on grads, Adam, G_ema lerp), and prints our time as a fraction of its.
A benchmark, not a test.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import statistics
import time

import torch

from lightning_gans.modules.common import clean_grads, ema_beta, ema_update, set_requires_grad
from lightning_gans.modules.stylegan2 import StyleGAN2Module


def build(args) -> StyleGAN2Module:
    torch.manual_seed(0)
    return StyleGAN2Module(
        resolution=args.resolution, z_dim=512, w_dim=512, mapping_layers=8, channel_base=args.channel_base,
        channel_max=args.channel_max, mbstd_group_size=4, batch_size=args.batch, style_mixing_prob=0.9,
    ).to(args.device)


def phases(m: StyleGAN2Module, batch: int, device: torch.device):
    """Closures running one phase each as the module's training_step does (its optimizers,
    non-finite gradient cleaning), without a Trainer in the loop."""
    opt_g, opt_d = m.configure_optimizers()
    real = torch.rand(batch, 3, m.hparams.resolution, m.hparams.resolution, device=device) * 2 - 1
    z = lambda: torch.randn(batch, 512, device=device)  # noqa: E731

    def step(opt, net, loss):
        opt.zero_grad(set_to_none=True)
        loss.backward()
        clean_grads(net.parameters())
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


def official_phases(args, batch: int, device: torch.device):
    """The official training loop's phases on its own networks and loss (imported from the
    user's checkout), same configuration as build()."""
    import sys

    sys.path.insert(0, args.official)
    import dnnlib  # noqa: F401  (the checkout's own packages)
    from training.loss import StyleGAN2Loss
    from training.networks import Discriminator, Generator

    torch.manual_seed(0)
    R = args.resolution
    G = Generator(z_dim=512, c_dim=0, w_dim=512, img_resolution=R, img_channels=3,
                  mapping_kwargs=dict(num_layers=8),
                  synthesis_kwargs=dict(channel_base=args.channel_base, channel_max=args.channel_max,
                                        num_fp16_res=0, conv_clamp=None))
    D = Discriminator(c_dim=0, img_resolution=R, img_channels=3, channel_base=args.channel_base,
                      channel_max=args.channel_max, num_fp16_res=0, conv_clamp=None,
                      epilogue_kwargs=dict(mbstd_group_size=4))
    G, D = (m.train().requires_grad_(False).to(device) for m in (G, D))
    G_ema = copy.deepcopy(G).eval()
    loss = StyleGAN2Loss(device, G.mapping, G.synthesis, D, style_mixing_prob=0.9, r1_gamma=1)
    opt_g = torch.optim.Adam(G.parameters(), lr=0.002, betas=(0.0, 0.99))
    opt_d = torch.optim.Adam(D.parameters(), lr=0.002, betas=(0.0, 0.99))
    real = torch.rand(batch, 3, R, R, device=device) * 2 - 1
    c = torch.zeros(batch, 0, device=device)

    def phase(name, module, opt, gain):
        opt.zero_grad(set_to_none=True)
        module.requires_grad_(True)
        loss.accumulate_gradients(phase=name, real_img=real, real_c=c,
                                  gen_z=torch.randn(batch, 512, device=device), gen_c=c, sync=True,
                                  gain=gain)
        module.requires_grad_(False)
        for p in module.parameters():
            if p.grad is not None:
                torch.nan_to_num(p.grad, nan=0, posinf=1e5, neginf=-1e5, out=p.grad)
        opt.step()

    def iteration():
        phase("Gmain", G, opt_g, 1)
        phase("Dmain", D, opt_d, 1)
        beta = ema_beta(batch, 10_000, 10, None)
        with torch.no_grad():
            for p_ema, p in zip(G_ema.parameters(), G.parameters()):
                p_ema.copy_(p.lerp(p_ema, beta))
            for b_ema, b in zip(G_ema.buffers(), G.buffers()):
                b_ema.copy_(b)

    return {"iter": iteration, "r1": lambda: phase("Dreg", D, opt_d, 16),
            "pl": lambda: phase("Greg", G, opt_g, 4)}


def interleaved_ms(modes: dict[str, tuple[str | None, dict]], warmup: int, repeats: int, sync) -> dict:
    """ms of every (mode, phase) per round, timed round-robin, one call of each per round, so
    that load from other processes hits all modes alike (ratios stay meaningful on a busy
    machine, where absolute times drift by 10-20%)."""
    def call(ops, fn):
        if ops is not None:
            os.environ["LG_OPS"] = ops
        sync()
        t = time.perf_counter()
        fn()
        sync()
        return (time.perf_counter() - t) * 1000

    times = {mode: {k: [] for k in fns} for mode, (_, fns) in modes.items()}
    for r in range(warmup + repeats):
        for mode, (ops, fns) in modes.items():
            for k, fn in fns.items():
                ms = call(ops, fn)
                if r >= warmup:
                    times[mode][k].append(ms)
    for t in times.values():
        t["amortized"] = [i + r / 16 + p / 4 for i, r, p in zip(t["iter"], t["r1"], t["pl"])]
    return times


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--resolution", type=int, default=64)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--channel-base", type=int, default=2048)
    p.add_argument("--channel-max", type=int, default=64)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--repeats", type=int, default=10)
    p.add_argument("--device", type=torch.device, default="cpu", help="cpu (the target) or cuda")
    p.add_argument("--official", metavar="DIR", help="also time a stylegan2-ada-pytorch checkout")
    args = p.parse_args()
    sync = torch.cuda.synchronize if args.device.type == "cuda" else (lambda: None)
    modes = {}
    for mode in ("ref", "compiled"):
        os.environ["LG_OPS"] = mode
        modes[mode] = (mode, phases(build(args), args.batch, args.device))
    if args.official:
        modes["official"] = ("ref", official_phases(args, args.batch, args.device))
    times = interleaved_ms(modes, args.warmup, args.repeats, sync)
    results = {mode: {k: statistics.median(v) for k, v in t.items()} for mode, t in times.items()}
    off = results.get("official")
    print(f"{'phase':10s} {'ref ms':>10s} {'compiled ms':>12s} {'ref/comp':>9s}"
          + (f" {'official ms':>12s} {'comp/official':>14s}" if off else ""))
    for k in ("iter", "r1", "pl", "amortized"):
        a, b = results["ref"][k], results["compiled"][k]
        print(f"{k:10s} {a:10.1f} {b:12.1f} {a / b:9.2f}"
              + (f" {off[k]:12.1f} {b / off[k]:14.2f}" if off else ""))
    c = results["compiled"]
    extra = {}
    if off:
        extra = {"official_iter_ms": round(off["iter"], 1), "official_amortized_ms": round(off["amortized"], 1),
                 "vs_official_iter": round(c["iter"] / off["iter"], 3),
                 "vs_official_amortized": round(c["amortized"] / off["amortized"], 3)}
        for k in ("iter", "amortized"):  # median of the per-round ratios: robust to drifting load
            paired = [a / b for a, b in zip(times["compiled"][k], times["official"][k])]
            extra[f"vs_official_{k}_paired"] = round(statistics.median(paired), 3)
    print(json.dumps({"iter_ms": round(c["iter"], 1), "amortized_ms": round(c["amortized"], 1),
                      "ref_iter_ms": round(results["ref"]["iter"], 1),
                      "ref_amortized_ms": round(results["ref"]["amortized"], 1), **extra,
                      "device": str(args.device), "threads": torch.get_num_threads()}))


if __name__ == "__main__":
    main()
