"""Projection of a photo into W or W+ (GAN inversion), the schedule of the StyleGAN2 projector.

Karras et al., "Analyzing and Improving the Image Quality of StyleGAN" (CVPR 2020), Sec. 5:
optimise w (one for all layers in W, one per layer in W+) and the per-layer noise maps, from
w_avg (the mean of 10,000 mapped z), with Adam; the learning rate ramps up over the first 5%
and down (cosine) over the last 25%; Gaussian noise of 5% of W's spread, shrinking
quadratically to zero at 75% of the run, is added to w so early steps explore; noise maps are
regularized toward white noise (multi-scale autocorrelation) and renormalized every step.
The distance is LPIPS on images downsampled to at most 256 px, or MSE when no LPIPS weights
are given (a weaker fallback: blurrier reconstructions; the caller says so).
"""

from __future__ import annotations

import copy
import math
import os
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import DataError
from ..model_file import LoadedGenerator
from .common import SynthesisError, class_label
from .generate import as_generator


@dataclass
class ProjectSchedule:
    """The optimisation schedule; defaults are the StyleGAN2 paper's projector."""

    steps: int = 1000
    initial_learning_rate: float = 0.1
    lr_rampdown_length: float = 0.25          # fraction of the run with the cosine ramp-down
    lr_rampup_length: float = 0.05            # fraction of the run with the linear ramp-up
    initial_noise_factor: float = 0.05        # std of the noise added to w, in units of W's spread
    noise_ramp_length: float = 0.75           # that noise reaches 0 at this fraction of the run
    regularize_noise_weight: float = 1e5
    w_avg_samples: int = 10000
    max_distance_resolution: int = 256        # images are area-downsampled to this for the distance

    def learning_rate(self, step: int) -> float:
        t = step / self.steps
        ramp = min(1.0, (1.0 - t) / self.lr_rampdown_length)
        ramp = 0.5 - 0.5 * math.cos(ramp * math.pi)
        return self.initial_learning_rate * ramp * min(1.0, t / self.lr_rampup_length)

    def w_noise_scale(self, step: int, w_std: float) -> float:
        t = step / self.steps
        return w_std * self.initial_noise_factor * max(0.0, 1.0 - t / self.noise_ramp_length) ** 2


@dataclass
class Projection:
    """The result: ws to feed generate/style-mix/interpolate, the image, the fitted noise maps."""

    ws: torch.Tensor                     # [1, num_ws, w_dim]
    image: torch.Tensor                  # [1, C, R, R], synthesised with the fitted noise maps
    noise: dict[str, torch.Tensor]       # buffer name -> [r, r]
    distance: str                        # "lpips" or "mse"
    losses: list[float] = field(default_factory=list)  # distance per step
    snapshots: list[torch.Tensor] = field(default_factory=list)  # images for an optimisation video


def noise_regularization(noise_maps: list[torch.Tensor]) -> torch.Tensor:
    """Sum over maps and scales (down to 8x8) of squared 1-pixel autocorrelations (0 for white noise)."""
    reg = noise_maps[0].new_zeros([])
    for n in noise_maps:
        x = n[None, None]
        while True:
            reg = reg + (x * x.roll(1, dims=3)).mean() ** 2 + (x * x.roll(1, dims=2)).mean() ** 2
            if x.shape[2] <= 8:
                break
            x = F.avg_pool2d(x, 2)
    return reg


def _downsample(img: torch.Tensor, max_res: int) -> torch.Tensor:
    return F.interpolate(img, size=(max_res, max_res), mode="area") if img.shape[2] > max_res else img


def project(
    model: LoadedGenerator | str | os.PathLike,
    target: torch.Tensor,                       # [C, R, R] or [1, C, R, R] in [-1, 1], at G's resolution
    *,
    space: str = "w",                           # "w" (one w for all layers) or "w+" (one per layer)
    schedule: ProjectSchedule | None = None,
    lpips: torch.nn.Module | None = None,       # pretrained.lpips.LPIPS; None = MSE
    class_idx: int | None = None,
    seed: int = 0,
    snapshot_every: int = 0,                    # keep an image every N steps (0 = none)
    progress: Callable[[int, float], None] | None = None,
    network: str = "G_ema",
    device: torch.device | str = "cpu",
) -> Projection:
    """Fit ws (and noise maps) so that G's image matches `target`."""
    gen = as_generator(model, network, device)
    sched = schedule or ProjectSchedule()
    if space not in ("w", "w+"):
        raise SynthesisError(f"--space {space!r} is not one of w, w+")
    if sched.steps < 1:
        raise SynthesisError(f"--steps {sched.steps}: need at least 1 step")
    G = copy.deepcopy(gen.G).eval().requires_grad_(False)  # its noise maps get optimized in place
    dev = G.mapping.w_avg.device
    R, C = G.synthesis.img_resolution, G.synthesis.img_channels
    target = target.float().to(dev)
    target = target[None] if target.ndim == 3 else target
    if tuple(target.shape) != (1, C, R, R):
        raise DataError(f"target image is {tuple(target.shape)}; the generator makes [1, {C}, {R}, {R}]")
    gen_rng = torch.Generator(device="cpu").manual_seed(seed)

    # Centre and spread of W from mapped random z (numpy RandomState, as the official scripts).
    with torch.no_grad():
        z = torch.from_numpy(np.random.RandomState(seed).randn(sched.w_avg_samples, G.z_dim)).float().to(dev)
        c = class_label(G, class_idx, z.shape[0], dev)
        w = G.mapping(z, c, update_w_avg=False)[:, :1]           # [N, 1, w_dim]
        w_avg = w.mean(0, keepdim=True)                          # [1, 1, w_dim]
        w_std = float(((w - w_avg).square().sum() / z.shape[0]).sqrt())

    noise_bufs = {name: buf for name, buf in G.synthesis.named_buffers() if name.endswith("noise_const")}
    for buf in noise_bufs.values():
        buf.copy_(torch.randn(buf.shape, generator=gen_rng))
        buf.requires_grad_(True)
    w_opt = (w_avg if space == "w" else w_avg.repeat(1, G.num_ws, 1)).clone().requires_grad_(True)
    opt = torch.optim.Adam([w_opt, *noise_bufs.values()], betas=(0.9, 0.999), lr=sched.initial_learning_rate)

    use_lpips = lpips is not None
    if use_lpips:
        embed = lpips.embed
        target_feat = embed(_downsample(target, sched.max_distance_resolution)).detach()
    else:
        target_small = _downsample(target, sched.max_distance_resolution)

    losses, snapshots = [], []
    for step in range(sched.steps):
        for group in opt.param_groups:
            group["lr"] = sched.learning_rate(step)
        w_noise = torch.randn(w_opt.shape, generator=gen_rng).to(dev) * sched.w_noise_scale(step, w_std)
        ws = (w_opt + w_noise).expand(-1, G.num_ws, -1)
        synth = _downsample(G.synthesis(ws, noise_mode="const"), sched.max_distance_resolution)
        if use_lpips:
            dist = (embed(synth) - target_feat).square().sum()
        else:
            dist = (synth - target_small).square().mean()
        loss = dist + sched.regularize_noise_weight * noise_regularization(list(noise_bufs.values()))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        with torch.no_grad():  # keep the noise maps zero-mean, unit-variance
            for buf in noise_bufs.values():
                buf.sub_(buf.mean()).div_(buf.square().mean().sqrt())
        losses.append(float(dist.detach()))
        if progress is not None:
            progress(step, losses[-1])
        if snapshot_every and (step % snapshot_every == 0 or step == sched.steps - 1):
            with torch.no_grad():
                snapshots.append(G.synthesis(w_opt.expand(-1, G.num_ws, -1), noise_mode="const").cpu())

    with torch.no_grad():
        ws = w_opt.detach().expand(-1, G.num_ws, -1).clone()
        image = G.synthesis(ws, noise_mode="const").float().cpu()
    noise = {k: v.detach().cpu().clone() for k, v in noise_bufs.items()}
    return Projection(ws.cpu(), image, noise, "lpips" if use_lpips else "mse", losses, snapshots)
