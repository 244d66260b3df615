"""scaled_bias_act: the epilogue of a modulated convolution, y = clamp(act(x * scale + noise + b) * gain).

After StyleGAN2's (non-fused) modulated conv come demodulation (x * scale[n, c]), noise
(noise[n, 1, h, w]), bias and lrelu * gain. As separate ops that is two passes over the
generator's largest tensors forward and about six backward; the compiled CPU kernel does one
each way. Elsewhere (CUDA, other dtypes or activations, third-order gradients) it is the same
composition of ops as before: addcmul + bias_act, which dispatches to its own kernels.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from . import _jit
from .bias_act import bias_act, resolve_args

_FUSED_ACTS = {"linear": 1, "relu": 2, "lrelu": 3}  # piecewise linear: act' from the sign of y


def scaled_bias_act(
    x: torch.Tensor,
    scale: torch.Tensor | None = None,
    noise: torch.Tensor | None = None,
    b: torch.Tensor | None = None,
    act: str = "linear",
    alpha: float | None = None,
    gain: float | None = None,
    clamp: float | None = None,
    impl: str | None = None,
) -> torch.Tensor:
    """x [N, C, H, W]; scale [N, C] (demodulation) or None; noise broadcastable to
    [N, 1, H, W] or None; b [C] or None. `act`, `alpha`, `gain`, `clamp` as in bias_act."""
    if x.ndim != 4:
        raise ValueError(f"scaled_bias_act expects x [N, C, H, W], got {tuple(x.shape)}")
    N, C, H, W = x.shape
    if scale is not None and scale.shape != (N, C):
        raise ValueError(f"scaled_bias_act: scale {tuple(scale.shape)} must be [N={N}, C={C}]")
    _, alpha_, gain_, clamp_ = resolve_args(act, alpha, gain, clamp)
    if noise is not None:
        noise = noise.to(x.dtype).expand(N, 1, H, W)
    # Where the fused kernel does not apply, the composition is the implementation (not a
    # fallback to complain about): bias_act then picks its own kernel or reference.
    module = _jit.select(impl, x.device, None) if _fusable(x, act, gain_) else None
    if module is None:
        if scale is not None:
            s = scale.to(x.dtype).reshape(N, C, 1, 1)
            x = torch.addcmul(noise, x, s) if noise is not None else x * s
        elif noise is not None:
            x = x + noise
        return bias_act(x, b.to(x.dtype) if b is not None else None, act=act, alpha=alpha, gain=gain,
                        clamp=clamp, impl=impl)
    args = _Args(_FUSED_ACTS[act], alpha_, gain_, clamp_, module)
    cast = lambda t: t.to(x.dtype) if t is not None else None  # noqa: E731
    return _ScaledBiasActFn.apply(x, cast(scale), cast(noise), cast(b), args)


def _fusable(x: torch.Tensor, act: str, gain: float) -> bool:
    """The fused kernel: CPU, float32/64, a piecewise-linear activation, a positive gain."""
    return (x.device.type == "cpu" and x.dtype in (torch.float32, torch.float64)
            and act in _FUSED_ACTS and gain > 0)


@dataclass(frozen=True)
class _Args:
    act: int
    alpha: float
    gain: float
    clamp: float  # < 0: off
    module: object


class _ScaledBiasActFn(torch.autograd.Function):
    """Forward and first-order backward are one kernel each. A create_graph backward (path
    length regularization) computes the same gradients with differentiable ops instead."""

    @staticmethod
    def forward(ctx, x, scale, noise, b, args):
        y = args.module.scaled_bias_act_fwd(x, scale, noise, b, args.act, args.alpha, args.gain, args.clamp)
        ctx.save_for_backward(x, y, scale)
        ctx.args = args
        ctx.has = (scale is not None, noise is not None, b is not None)
        return y

    @staticmethod
    def backward(ctx, dy):
        x, y, scale = ctx.saved_tensors
        args = ctx.args
        need = [ctx.needs_input_grad[0], ctx.needs_input_grad[1] and ctx.has[0],
                ctx.needs_input_grad[2] and ctx.has[1], ctx.needs_input_grad[3] and ctx.has[2]]
        if torch.is_grad_enabled():
            return (*_grads_differentiable(dy, x, y, scale, need, args), None)
        grads = args.module.scaled_bias_act_bwd(dy, x, y, scale, need, args.act, args.alpha, args.gain,
                                                args.clamp)
        return (*(g if n else None for g, n in zip(grads, need)), None)


def _grads_differentiable(dy, x, y, scale, need, args):
    """The backward in torch ops, so that autograd can differentiate it again. act' is
    piecewise constant (read from y, detached): its own derivative is zero."""
    with torch.no_grad():
        g = torch.full_like(y, args.gain)
        if args.act == 2:
            g = torch.where(y > 0, g, 0.0)
        elif args.act == 3:
            g = torch.where(y > 0, g, args.gain * args.alpha)
        if args.clamp >= 0:
            g = torch.where((y > -args.clamp) & (y < args.clamp), g, 0.0)
    t = dy * g
    N, C = x.shape[:2]
    dx = t * scale.reshape(N, C, 1, 1) if need[0] and scale is not None else (t if need[0] else None)
    dscale = (t * x).sum(dim=[2, 3]) if need[1] else None
    dnoise = t.sum(dim=1, keepdim=True) if need[2] else None
    db = t.sum(dim=[0, 2, 3]) if need[3] else None
    return dx, dscale, dnoise, db
