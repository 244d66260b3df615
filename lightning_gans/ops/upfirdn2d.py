"""upfirdn2d: upsample (zero insertion), pad/crop, 2-D FIR filter, downsample.

The resampling primitive of StyleGAN2 (Karras et al., CVPR 2020): every up/down step in the
generator and discriminator is this op with a [1,3,3,1] filter. The reference path is plain
PyTorch, so autograd gives gradients of any order (R1 and path length need the second).
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import ENV_CHOICES
from . import _jit

IntOrPair = int | Sequence[int]
# The CUDA kernels: 'direct' (one thread per output, taps read from global memory; the default)
# and 'tiled' (shared-memory tiles, csrc/upfirdn2d_tiled.cu; opt-in until a GPU run of
# bench/gpu_check.sh shows it faster). Calls the tiled kernel has no instance for run 'direct'.
CUDA_KERNELS = ENV_CHOICES["LG_UPFIRDN2D"]


def cuda_kernel(kernel: str | None = None) -> str:
    """The CUDA kernel choice: `kernel` if given, else $LG_UPFIRDN2D, else 'direct'."""
    choice = (kernel if kernel is not None else os.environ.get("LG_UPFIRDN2D") or "direct").strip().lower()
    if choice not in CUDA_KERNELS:
        raise ValueError(f"LG_UPFIRDN2D / kernel must be one of {CUDA_KERNELS}, got {choice!r}")
    return choice


def parse_scaling(scaling: IntOrPair) -> tuple[int, int]:
    """An int or [x, y] -> (sx, sy), each >= 1."""
    if isinstance(scaling, int):
        scaling = [scaling, scaling]
    sx, sy = (int(s) for s in scaling)
    if sx < 1 or sy < 1:
        raise ValueError(f"up/down factors must be >= 1, got {scaling}")
    return sx, sy


def parse_padding(padding: IntOrPair) -> tuple[int, int, int, int]:
    """An int, [px, py] or [px0, px1, py0, py1] -> (px0, px1, py0, py1); negative crops."""
    if isinstance(padding, int):
        padding = [padding, padding]
    padding = [int(p) for p in padding]
    if len(padding) == 2:
        px, py = padding
        return px, px, py, py
    if len(padding) != 4:
        raise ValueError(f"padding must be an int, [px, py] or [px0, px1, py0, py1]: {padding}")
    px0, px1, py0, py1 = padding
    return px0, px1, py0, py1


def filter_size(f: torch.Tensor | None) -> tuple[int, int]:
    """(width, height) of a separable (1-D) or full (2-D) filter; (1, 1) for None."""
    if f is None:
        return 1, 1
    if f.ndim == 1:
        return f.shape[0], f.shape[0]
    if f.ndim != 2:
        raise ValueError(f"filter must be 1-D (separable) or 2-D, got shape {tuple(f.shape)}")
    return f.shape[1], f.shape[0]


def setup_filter(
    f: Sequence[float] | np.ndarray | torch.Tensor | None,
    device: torch.device | str = "cpu",
    normalize: bool = True,
    flip_filter: bool = False,
    gain: float = 1.0,
    separable: bool | None = None,
) -> torch.Tensor:
    """Turn filter taps into a float32 tensor, normalized to sum 1 (times gain).

    A 1-D filter is kept separable (applied along x then y) unless `separable=False` asks for
    its outer product; `gain` is split so the 2-D response is scaled by `gain` either way.
    """
    if f is None:
        f = 1
    f = torch.as_tensor(f, dtype=torch.float32)
    if f.ndim == 0:
        f = f[None]
    if f.ndim not in (1, 2) or f.numel() == 0:
        raise ValueError(f"filter must be non-empty 1-D or 2-D, got shape {tuple(f.shape)}")
    if separable is None:
        separable = f.ndim == 1 and f.numel() >= 8
    if f.ndim == 1 and not separable:
        f = f.ger(f)
    if normalize:
        f = f / f.sum()
    if flip_filter:
        f = f.flip(list(range(f.ndim)))
    f = f * (gain ** (f.ndim / 2))
    return f.to(device=device)


def upfirdn2d(
    x: torch.Tensor,
    f: torch.Tensor | None,
    up: IntOrPair = 1,
    down: IntOrPair = 1,
    padding: IntOrPair = 0,
    flip_filter: bool = False,
    gain: float = 1,
    impl: str | None = None,
    kernel: str | None = None,
) -> torch.Tensor:
    """Upsample, pad, filter and downsample a batch of images.

    x: [N, C, H, W]; f: 1-D (separable) or 2-D filter, or None for identity.
    up/down: int or [x, y]; padding: int, [px, py] or [px0, px1, py0, py1] (negative crops).
    flip_filter=False means true convolution (the filter is flipped before correlating).
    Output: [N, C, (H*up_y + py0 + py1 - fh) // down_y + 1, likewise for W].
    `impl` ("ref" or "compiled"; default from LG_OPS) picks the implementation; `kernel`
    ("direct" or "tiled"; default from LG_UPFIRDN2D) the compiled CUDA kernel.
    """
    if not isinstance(x, torch.Tensor) or x.ndim != 4:
        raise ValueError(f"upfirdn2d expects x of shape [N, C, H, W], got {getattr(x, 'shape', x)}")
    if f is None:
        f = torch.ones([1, 1], dtype=torch.float32, device=x.device)
    module = _jit.select(impl, x.device, _unsupported(x, f))
    if module is not None:
        return _upfirdn2d_compiled(module, x, f, up, down, padding, flip_filter, gain, kernel)
    return _upfirdn2d_ref(x, f, up, down, padding, flip_filter, gain)


_KERNEL_DTYPES = {
    "cpu": (torch.float32, torch.float64),
    "cuda": (torch.float32, torch.float64, torch.float16, torch.bfloat16),
}


def _unsupported(x: torch.Tensor, f: torch.Tensor) -> str | None:
    """Why the compiled kernels cannot take this call, or None if they can."""
    if x.dtype not in _KERNEL_DTYPES.get(x.device.type, ()):
        return f"upfirdn2d: no compiled kernel for {x.dtype} on {x.device.type}"
    if f.requires_grad:
        return "upfirdn2d: the compiled kernel gives no gradient w.r.t. the filter"
    return None


def _upfirdn2d_compiled(module, x, f, up, down, padding, flip_filter, gain, kernel=None):
    """Compiled path: argument checks as in the reference, then the autograd Function."""
    upx, upy = parse_scaling(up)
    downx, downy = parse_scaling(down)
    px0, px1, py0, py1 = parse_padding(padding)
    fw, fh = filter_size(f)
    ph, pw = x.shape[2] * upy + py0 + py1, x.shape[3] * upx + px0 + px1
    if ph < fh or pw < fw:
        raise ValueError(
            f"upfirdn2d: padded input {(ph, pw)} is smaller than the filter {(fh, fw)}"
        )
    run = module.upfirdn2d
    if x.device.type == "cuda":  # the CUDA kernel reads taps in its accumulation type
        acc = torch.float64 if x.dtype == torch.float64 else torch.float32
        f = f.to(device=x.device, dtype=acc)
        if cuda_kernel(kernel) == "tiled":
            run = _tiled(module)
    geom = (upx, upy, downx, downy, px0, px1, py0, py1)
    return _Upfirdn2dFn.apply(x, f, geom, bool(flip_filter), float(gain), run)


def _tiled(module):
    """The tiled kernel, falling back to the direct one for calls it has no instance for
    (its backward passes, e.g. up 2 -> down 2, go through the same choice)."""
    return lambda *args: module.upfirdn2d_tiled(*args, False)


class _Upfirdn2dFn(torch.autograd.Function):
    """upfirdn2d whose backward is upfirdn2d again (up<->down, flipped taps), so gradients of
    any order come from the same kernel."""

    @staticmethod
    def forward(ctx, x, f, geom, flip_filter, gain, run):
        y = run(x, f, *geom, flip_filter, gain)
        ctx.save_for_backward(f)
        ctx.geom, ctx.flip_filter, ctx.gain, ctx.run = geom, flip_filter, gain, run
        ctx.in_hw = (x.shape[2], x.shape[3])
        return y

    @staticmethod
    def backward(ctx, dy):
        if not ctx.needs_input_grad[0]:
            return None, None, None, None, None, None
        (f,) = ctx.saved_tensors
        upx, upy, downx, downy, px0, px1, py0, py1 = ctx.geom
        (H, W), (Ho, Wo), (fw, fh) = ctx.in_hw, dy.shape[2:], filter_size(f)
        # The adjoint: upsample dy by `down`, pad so that the flipped filter lines up with the
        # forward's taps, then keep every `up`-th sample; the far pads make the size exactly H, W.
        geom = (downx, downy, upx, upy,
                fw - px0 - 1, W * upx - Wo * downx + px0 - upx + 1,
                fh - py0 - 1, H * upy - Ho * downy + py0 - upy + 1)
        dx = _Upfirdn2dFn.apply(dy, f, geom, not ctx.flip_filter, ctx.gain, ctx.run)
        return dx, None, None, None, None, None


_LOW_PRECISION = (torch.float16, torch.bfloat16)


def _upfirdn2d_ref(x, f, up=1, down=1, padding=0, flip_filter=False, gain=1):
    """Reference path: the definition, written with differentiable PyTorch ops.

    float16/bfloat16 inputs are filtered in float32 and rounded once at the end, as the CUDA
    kernel accumulates (the result has the input's dtype; gradients flow through the casts)."""
    if x.dtype in _LOW_PRECISION:
        return _upfirdn2d_ref(x.float(), f, up, down, padding, flip_filter, gain).to(x.dtype)
    N, C, H, W = x.shape
    upx, upy = parse_scaling(up)
    downx, downy = parse_scaling(down)
    px0, px1, py0, py1 = parse_padding(padding)
    fw, fh = filter_size(f)

    # Upsample by inserting upx-1 / upy-1 zeros after every sample.
    x = x.reshape(N, C, H, 1, W, 1)
    x = F.pad(x, [0, upx - 1, 0, 0, 0, upy - 1])
    x = x.reshape(N, C, H * upy, W * upx)

    # Pad with zeros, then crop where the padding is negative.
    x = F.pad(x, [max(px0, 0), max(px1, 0), max(py0, 0), max(py1, 0)])
    x = x[:, :, max(-py0, 0) : x.shape[2] - max(-py1, 0), max(-px0, 0) : x.shape[3] - max(-px1, 0)]
    if x.shape[2] < fh or x.shape[3] < fw:
        raise ValueError(
            f"upfirdn2d: padded input {tuple(x.shape[2:])} is smaller than the filter {(fh, fw)}"
        )

    # FIR filter as a depthwise convolution (conv2d correlates, so flip for convolution).
    f = f.to(dtype=x.dtype, device=x.device) * (gain ** (f.ndim / 2))
    if not flip_filter:
        f = f.flip(list(range(f.ndim)))
    if f.ndim == 2:
        x = F.conv2d(x, f[None, None].expand(C, 1, fh, fw), groups=C)
    else:
        x = F.conv2d(x, f[None, None, None, :].expand(C, 1, 1, fw), groups=C)
        x = F.conv2d(x, f[None, None, :, None].expand(C, 1, fh, 1), groups=C)

    # Downsample by keeping every down-th sample.
    return x[:, :, ::downy, ::downx]


def upsample2d(x, f, up=2, padding=0, flip_filter=False, gain=1, impl=None):
    """Upsample by `up` with filter f, keeping the image centred (gain up**2 keeps the DC level)."""
    upx, upy = parse_scaling(up)
    px0, px1, py0, py1 = parse_padding(padding)
    fw, fh = filter_size(f)
    p = [
        px0 + (fw + upx - 1) // 2,
        px1 + (fw - upx) // 2,
        py0 + (fh + upy - 1) // 2,
        py1 + (fh - upy) // 2,
    ]
    return upfirdn2d(x, f, up=up, padding=p, flip_filter=flip_filter, gain=gain * upx * upy, impl=impl)


def downsample2d(x, f, down=2, padding=0, flip_filter=False, gain=1, impl=None):
    """Filter with f, then downsample by `down`, keeping the image centred."""
    downx, downy = parse_scaling(down)
    px0, px1, py0, py1 = parse_padding(padding)
    fw, fh = filter_size(f)
    p = [
        px0 + (fw - downx + 1) // 2,
        px1 + (fw - downx) // 2,
        py0 + (fh - downy + 1) // 2,
        py1 + (fh - downy) // 2,
    ]
    return upfirdn2d(x, f, down=down, padding=p, flip_filter=flip_filter, gain=gain, impl=impl)


def filter2d(x, f, padding=0, flip_filter=False, gain=1, impl=None):
    """Filter with f, padding so the output keeps the input's size."""
    px0, px1, py0, py1 = parse_padding(padding)
    fw, fh = filter_size(f)
    p = [px0 + fw // 2, px1 + (fw - 1) // 2, py0 + fh // 2, py1 + (fh - 1) // 2]
    return upfirdn2d(x, f, padding=p, flip_filter=flip_filter, gain=gain, impl=impl)
