"""Time StyleGAN2 training iterations, in one process, round-robin: our reference ops, our
compiled kernels and (with --official DIR) the official StyleGAN2-ADA code.

    OMP_WAIT_POLICY=PASSIVE python bench/train_step.py --resolution 64 --batch 8 \
        --channel-base 2048 --channel-max 64
    python bench/train_step.py --device cuda --official ~/stylegan2-ada-pytorch

An iteration is what the official loop does every minibatch: G main step (through D), D main
step, G_ema update; style mixing 0.9, 8-layer mapping, z = w = 512. The R1 (every 16) and
path-length (every 4) steps are timed separately and amortized. Every configuration reports
ms per phase, sec/kimg and images/s of the amortized iteration and, on CUDA, the peak GPU memory
of each implementation as if it ran alone (torch.cuda.max_memory_allocated during its calls,
less what the other implementations hold). The last line is a JSON object.

Configurations (--configs): `custom` (the --resolution/--batch/... arguments; the CPU default),
and the GPU comparison's three (the CUDA default): `tiny64` (64 px, batch 8, channels 64, fp32),
`paper256` (StyleGAN2-ADA paper256: 256 px, batch 64, fmaps 0.5, mbstd 8, fp16 in the 4 highest
resolutions, conv_clamp 256) and `stylegan2` (config F at 1024 px, batch 4, fp16 4 res,
conv_clamp 256). Targets on the same card (checked in the JSON): our sec/kimg <= 0.8x the
official's and peak memory <= 1.0x.

`--official DIR` is a checkout of NVlabs/stylegan2-ada-pytorch that you provide (nothing of it
ships here); its CUDA ops are built by its own code on first use (the JSON says whether they
were, or whether it fell back to its reference ops). It runs with the phases of its training
loop (requires_grad toggled per phase, nan_to_num on grads, Adam, G_ema lerp). On CUDA both run
with the official loop's global settings (cudnn.benchmark on, TF32 off). A benchmark, not a test.
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

# name -> resolution, batch, channel_base, channel_max, num_fp16_res, conv_clamp, mbstd group, r1_gamma
CONFIGS = {
    "tiny64": dict(resolution=64, batch=8, channel_base=2048, channel_max=64, num_fp16_res=0, conv_clamp=None,
                   mbstd=4, r1_gamma=1.0),
    "paper256": dict(resolution=256, batch=64, channel_base=16384, channel_max=512, num_fp16_res=4,
                     conv_clamp=256, mbstd=8, r1_gamma=1.0),
    "stylegan2": dict(resolution=1024, batch=4, channel_base=32768, channel_max=512, num_fp16_res=4,
                      conv_clamp=256, mbstd=4, r1_gamma=10.0),
}


def build(cfg: dict, device: torch.device) -> StyleGAN2Module:
    torch.manual_seed(0)
    return StyleGAN2Module(
        resolution=cfg["resolution"], z_dim=512, w_dim=512, mapping_layers=8, channel_base=cfg["channel_base"],
        channel_max=cfg["channel_max"], conv_clamp=cfg["conv_clamp"], num_fp16_res=cfg["num_fp16_res"],
        mbstd_group_size=cfg["mbstd"], batch_size=cfg["batch"], style_mixing_prob=0.9, r1_gamma=cfg["r1_gamma"],
    ).to(device)


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

    fns = {"iter": iteration, "r1": r1, "pl": pl}
    fns["_owned"] = lambda: owned_bytes([m], [opt_g, opt_d], [real])
    return fns


def owned_bytes(modules, optimizers, tensors) -> int:
    """Bytes held by these modules (parameters, their gradients, buffers), optimizer states and
    tensors: what an implementation keeps between calls."""
    seen, total = set(), 0

    def add(t):
        nonlocal total
        if torch.is_tensor(t) and t.untyped_storage().data_ptr() not in seen:
            seen.add(t.untyped_storage().data_ptr())
            total += t.untyped_storage().nbytes()

    for mod in modules:
        for p in mod.parameters():
            add(p)
            add(p.grad)
        for b in mod.buffers():
            add(b)
    for opt in optimizers:
        for st in opt.state.values():
            for v in st.values():
                add(v)
    for t in tensors:
        add(t)
    return total


def official_modules(path: str):
    """The checkout's networks, loss and ops (imported from the user's DIR)."""
    import sys

    sys.path.insert(0, path)
    import dnnlib  # noqa: F401  (the checkout's own packages)
    from torch_utils.ops import bias_act, conv2d_gradfix, upfirdn2d
    from training.loss import StyleGAN2Loss
    from training.networks import Discriminator, Generator

    return Generator, Discriminator, StyleGAN2Loss, (bias_act, upfirdn2d, conv2d_gradfix)


def official_cuda_ops(path: str) -> dict:
    """Build (or load) the official CUDA ops as its training loop does; whether each one works.

    Its plugin loader builds with torch.utils.cpp_extension.load and then imports the module by
    name, which torch did register in sys.modules when that code was written and no longer does
    (the build succeeds, the import fails and it falls back to its slow reference ops). Here
    load() registers what it returns, as it used to; the official code itself is untouched."""
    import sys

    import torch.utils.cpp_extension as cpp

    real_load = cpp.load

    def load(*args, **kwargs):
        module = real_load(*args, **kwargs)
        sys.modules.setdefault(kwargs.get("name") or args[0], module)
        return module

    *_, (bias_act, upfirdn2d, conv2d_gradfix) = official_modules(path)
    conv2d_gradfix.enabled = True  # as training_loop.py sets it
    cpp.load = load
    try:
        return {"bias_act": bool(bias_act._init()), "upfirdn2d": bool(upfirdn2d._init())}
    finally:
        cpp.load = real_load


def official_phases(path: str, cfg: dict, device: torch.device):
    """The official training loop's phases on its own networks and loss, the configuration of
    build()."""
    Generator, Discriminator, StyleGAN2Loss, _ = official_modules(path)
    torch.manual_seed(0)
    R, batch = cfg["resolution"], cfg["batch"]
    common = dict(channel_base=cfg["channel_base"], channel_max=cfg["channel_max"],
                  num_fp16_res=cfg["num_fp16_res"], conv_clamp=cfg["conv_clamp"])
    G = Generator(z_dim=512, c_dim=0, w_dim=512, img_resolution=R, img_channels=3,
                  mapping_kwargs=dict(num_layers=8), synthesis_kwargs=common)
    D = Discriminator(c_dim=0, img_resolution=R, img_channels=3, **common,
                      epilogue_kwargs=dict(mbstd_group_size=cfg["mbstd"]))
    G, D = (m.train().requires_grad_(False).to(device) for m in (G, D))
    G_ema = copy.deepcopy(G).eval()
    loss = StyleGAN2Loss(device, G.mapping, G.synthesis, D, style_mixing_prob=0.9, r1_gamma=cfg["r1_gamma"])
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
            "pl": lambda: phase("Greg", G, opt_g, 4),
            "_owned": lambda: owned_bytes([G, D, G_ema], [opt_g, opt_d], [real])}


def interleaved_ms(modes: dict[str, tuple[str | None, dict]], warmup: int, repeats: int,
                   device: torch.device) -> tuple[dict, dict]:
    """ms of every (mode, phase) per round, timed round-robin, one call of each per round, so
    that load from other processes hits all modes alike (ratios stay meaningful on a busy
    machine, where absolute times drift by 10-20%). On CUDA also each mode's peak memory as if
    alone: the allocator's peak during its calls less what the other modes hold."""
    cuda = device.type == "cuda"
    sync = torch.cuda.synchronize if cuda else (lambda: None)

    def call(mode, ops, fns, k):
        if ops is not None:
            os.environ["LG_OPS"] = ops
        sync()
        if cuda:
            others = torch.cuda.memory_allocated() - fns["_owned"]()
            torch.cuda.reset_peak_memory_stats()
        t = time.perf_counter()
        fns[k]()
        sync()
        ms = (time.perf_counter() - t) * 1000
        if cuda:
            peak[mode] = max(peak[mode], torch.cuda.max_memory_allocated() - others)
        return ms

    peak = {mode: 0 for mode in modes}
    times = {mode: {k: [] for k in fns if not k.startswith("_")} for mode, (_, fns) in modes.items()}
    for r in range(warmup + repeats):
        for mode, (ops, fns) in modes.items():
            for k in times[mode]:
                ms = call(mode, ops, fns, k)
                if r >= warmup:
                    times[mode][k].append(ms)
    for t in times.values():
        t["amortized"] = [i + r / 16 + p / 4 for i, r, p in zip(t["iter"], t["r1"], t["pl"])]
    return times, peak


def run_config(name: str, cfg: dict, args) -> dict:
    """Time one configuration; print its table; return its figures."""
    device = args.device
    modes = {}
    for mode in args.modes:
        os.environ["LG_OPS"] = mode
        modes[mode] = (mode, phases(build(cfg, device), cfg["batch"], device))
    if args.official:
        modes["official"] = (args.modes[-1], official_phases(args.official, cfg, device))
    times, peak = interleaved_ms(modes, args.warmup, args.repeats, device)
    res = {mode: {k: statistics.median(v) for k, v in t.items()} for mode, t in times.items()}
    batch = cfg["batch"]
    out: dict = {"config": {k: v for k, v in cfg.items()}}
    print(f"== {name}: {cfg['resolution']} px, batch {batch}, num_fp16_res {cfg['num_fp16_res']}, "
          f"conv_clamp {cfg['conv_clamp']}")
    print(f"{'mode':10s} {'iter ms':>9s} {'r1 ms':>8s} {'pl ms':>8s} {'amort ms':>9s} {'sec/kimg':>9s} "
          f"{'img/s':>8s}" + (f" {'peak MiB':>9s}" if device.type == "cuda" else ""))
    for mode, r in res.items():
        fig = {f"{k}_ms": round(r[k], 2) for k in ("iter", "r1", "pl", "amortized")}
        fig["sec_per_kimg"] = round(r["amortized"] / batch, 3)  # ms per image = s per 1000 images
        fig["img_per_s"] = round(batch / (r["amortized"] / 1000), 1)
        if device.type == "cuda":
            fig["peak_mem_mib"] = round(peak[mode] / 2**20, 1)
        out[mode] = fig
        print(f"{mode:10s} {r['iter']:9.1f} {r['r1']:8.1f} {r['pl']:8.1f} {r['amortized']:9.1f} "
              f"{fig['sec_per_kimg']:9.3f} {fig['img_per_s']:8.1f}"
              + (f" {fig['peak_mem_mib']:9.1f}" if device.type == "cuda" else ""))
    ours = args.modes[-1]
    if "ref" in res and "compiled" in res:
        out["ref_over_compiled"] = round(res["ref"]["amortized"] / res["compiled"]["amortized"], 3)
    if "official" in res:
        for k in ("iter", "amortized"):  # median of the per-round ratios: robust to drifting load
            paired = [a / b for a, b in zip(times[ours][k], times["official"][k])]
            out[f"vs_official_{k}_paired"] = round(statistics.median(paired), 3)
        out["vs_official_sec_per_kimg"] = round(res[ours]["amortized"] / res["official"]["amortized"], 3)
        line = f"ours ({ours}) / official: sec/kimg {out['vs_official_sec_per_kimg']:.3f}x"
        if device.type == "cuda":
            out["vs_official_peak_mem"] = round(peak[ours] / max(peak["official"], 1), 3)
            out["targets_met"] = {"sec_per_kimg_le_0.8x": out["vs_official_sec_per_kimg"] <= 0.8,
                                  "peak_mem_le_1.0x": out["vs_official_peak_mem"] <= 1.0}
            line += f", peak memory {out['vs_official_peak_mem']:.3f}x; targets met: {out['targets_met']}"
        print(line)
    modes.clear()  # free this configuration's networks before the next one
    if device.type == "cuda":
        torch.cuda.empty_cache()
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--configs", nargs="+", choices=["custom", *CONFIGS],
                   help="configurations to time (default: custom on the CPU, the three named ones on CUDA)")
    p.add_argument("--resolution", type=int, default=64, help="custom configuration")
    p.add_argument("--batch", type=int, default=8, help="custom configuration")
    p.add_argument("--channel-base", type=int, default=2048, help="custom configuration")
    p.add_argument("--channel-max", type=int, default=64, help="custom configuration")
    p.add_argument("--num-fp16-res", type=int, default=0, help="custom configuration")
    p.add_argument("--conv-clamp", type=float, default=None, help="custom configuration (default: off)")
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--repeats", type=int, default=10)
    p.add_argument("--device", type=torch.device, default="cpu", help="cpu (the default) or cuda")
    p.add_argument("--modes", nargs="+", choices=["ref", "compiled"], default=None,
                   help="our op paths to time (default: ref and compiled on the CPU, compiled on CUDA); "
                        "the last one is compared with the official code")
    p.add_argument("--official", metavar="DIR", help="also time a stylegan2-ada-pytorch checkout")
    p.add_argument("--official-build-only", action="store_true",
                   help="only build the official CUDA ops into its cache (gpu_check.sh does this beside "
                        "our build, so the timed runs load them) and print whether each one works")
    args = p.parse_args()
    cuda = args.device.type == "cuda"
    if args.official_build_only:
        if not args.official:
            p.error("--official-build-only needs --official DIR")
        print(json.dumps({"official_cuda_ops": official_cuda_ops(args.official)}))
        return
    if args.modes is None:
        args.modes = ["compiled"] if cuda else ["ref", "compiled"]
    configs = args.configs or (list(CONFIGS) if cuda else ["custom"])
    extra: dict = {"device": str(args.device), "threads": torch.get_num_threads()}
    if cuda:
        # the official training loop's global settings, for both implementations
        torch.backends.cudnn.benchmark = True
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False
        extra["gpu"] = torch.cuda.get_device_name(args.device)
        if args.official:
            extra["official_cuda_ops"] = official_cuda_ops(args.official)
            print(f"official CUDA ops built: {extra['official_cuda_ops']}")
    results = {}
    for name in configs:
        cfg = CONFIGS.get(name) or dict(
            resolution=args.resolution, batch=args.batch, channel_base=args.channel_base,
            channel_max=args.channel_max, num_fp16_res=args.num_fp16_res, conv_clamp=args.conv_clamp,
            mbstd=4, r1_gamma=1.0)
        results[name] = run_config(name, cfg, args)
    summary: dict = {}
    if len(results) == 1:  # one configuration: its figures at the top level, as before
        r = next(iter(results.values()))
        ours = r[args.modes[-1]]
        summary = {"iter_ms": round(ours["iter_ms"], 1), "amortized_ms": round(ours["amortized_ms"], 1),
                   "sec_per_kimg": ours["sec_per_kimg"], "img_per_s": ours["img_per_s"]}
        if "ref" in r:
            summary.update(ref_iter_ms=round(r["ref"]["iter_ms"], 1),
                           ref_amortized_ms=round(r["ref"]["amortized_ms"], 1))
        if "official" in r:
            summary.update(official_iter_ms=round(r["official"]["iter_ms"], 1),
                           official_amortized_ms=round(r["official"]["amortized_ms"], 1),
                           vs_official_iter=round(ours["iter_ms"] / r["official"]["iter_ms"], 3),
                           vs_official_amortized=round(ours["amortized_ms"] / r["official"]["amortized_ms"], 3),
                           **{k: v for k, v in r.items() if k.startswith("vs_official_") and k.endswith("paired")})
    print(json.dumps({**summary, **extra, "configs": results}))


if __name__ == "__main__":
    main()
