"""Pieces every GAN module shares: EMA, gradient hygiene, RNG state for exact resume."""

from __future__ import annotations

import random
from collections.abc import Iterable

import numpy as np
import torch
from torch import nn


@torch.no_grad()
def ema_update(ema: nn.Module, src: nn.Module, beta: float) -> None:
    """ema <- beta * ema + (1 - beta) * src for parameters; buffers are copied (w_avg, noise)."""
    for p_ema, p in zip(ema.parameters(), src.parameters()):
        p_ema.copy_(p.detach().lerp(p_ema, beta))
    for b_ema, b in zip(ema.buffers(), src.buffers()):
        b_ema.copy_(b)


def ema_beta(batch_size: int, nimg: int, ema_kimg: float, ema_rampup: float | None) -> float:
    """Per-step EMA decay so the half-life is ema_kimg thousand images (ramped up early on)."""
    ema_nimg = ema_kimg * 1000
    if ema_rampup is not None:
        ema_nimg = min(ema_nimg, nimg * ema_rampup)
    return 0.5 ** (batch_size / max(ema_nimg, 1e-8))


@torch.no_grad()
def clean_grads(params: Iterable[nn.Parameter]) -> int:
    """Replace NaN/inf gradient entries (NaN -> 0, +-inf -> +-1e5); returns how many there were."""
    grads = [p.grad for p in params if p.grad is not None]
    if not grads:
        return 0
    # One fused pass finds the tensors that may hold a non-finite entry (a norm is NaN/inf then,
    # or on overflow); only those are counted and cleaned entry by entry.
    norms = torch._foreach_norm(grads)
    suspect = (~torch.isfinite(torch.stack([n.float() for n in norms]))).nonzero().flatten().tolist()
    bad = 0
    for i in suspect:
        n = int((~torch.isfinite(grads[i])).sum())
        if n:
            bad += n
            torch.nan_to_num(grads[i], nan=0.0, posinf=1e5, neginf=-1e5, out=grads[i])
    return bad


def adam(params: Iterable[nn.Parameter], **kwargs) -> torch.optim.Adam:
    """torch.optim.Adam, fused (one kernel for all tensors) where torch has that for the
    parameters' device: 3x faster steps for a small StyleGAN2 G on the CPU (bench/train_step.py)."""
    params = list(params)
    devices = {p.device.type for p in params}
    fused = len(devices) == 1 and devices <= {"cpu", "cuda"} and all(p.is_floating_point() for p in params)
    return torch.optim.Adam(params, fused=True if fused else None, **kwargs)


def set_requires_grad(module: nn.Module, flag: bool) -> None:
    for p in module.parameters():
        p.requires_grad_(flag)


def capture_rng() -> dict:
    """Every RNG the training step draws from, in a form torch.load(weights_only=True) accepts."""
    np_state = np.random.get_state()
    state = {
        "torch": torch.get_rng_state(),
        "numpy": [np_state[0], torch.from_numpy(np_state[1].astype(np.int64)), *np_state[2:]],
        "python": random.getstate(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def seed_all(seed: int) -> None:
    """Seed torch, numpy and python's random (each rank of a DDP run gets its own seed)."""
    seed = int(seed) % (2**32)
    torch.manual_seed(seed)
    np.random.seed(seed)
    random.seed(seed)


def restore_rng(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    kind, keys, pos, has_gauss, gauss = state["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, gauss))
    py = state["python"]
    random.setstate((py[0], tuple(py[1]), py[2]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
