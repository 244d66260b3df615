"""bias_act: bias add, activation, gain and clamp in one call.

The epilogue of every StyleGAN2 layer. The reference path is plain PyTorch, so autograd gives
gradients of any order.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from . import _jit


@dataclass(frozen=True)
class Activation:
    func: Callable[[torch.Tensor, float], torch.Tensor]
    def_alpha: float  # default slope / parameter
    def_gain: float  # default gain: sqrt(2) keeps the variance of He-initialised layers
    cuda_idx: int  # index understood by the compiled kernels
    ref: str  # 'x' or 'y': which tensor the derivative is cheapest to compute from
    has_2nd_grad: bool


ACTIVATIONS: dict[str, Activation] = {
    "linear": Activation(lambda x, a: x, 0.0, 1.0, 1, "", False),
    "relu": Activation(lambda x, a: F.relu(x), 0.0, math.sqrt(2), 2, "y", False),
    "lrelu": Activation(lambda x, a: F.leaky_relu(x, a), 0.2, math.sqrt(2), 3, "y", False),
    "tanh": Activation(lambda x, a: torch.tanh(x), 0.0, 1.0, 4, "y", True),
    "sigmoid": Activation(lambda x, a: torch.sigmoid(x), 0.0, 1.0, 5, "y", True),
    "elu": Activation(lambda x, a: F.elu(x), 0.0, 1.0, 6, "y", True),
    "selu": Activation(lambda x, a: F.selu(x), 0.0, 1.0, 7, "y", True),
    "softplus": Activation(lambda x, a: F.softplus(x), 0.0, 1.0, 8, "y", True),
    "swish": Activation(lambda x, a: torch.sigmoid(x) * x, 0.0, math.sqrt(2), 9, "x", True),
}


def activation(name: str) -> Activation:
    """Look up an activation by name, with a clear error for unknown names."""
    try:
        return ACTIVATIONS[name]
    except KeyError:
        raise ValueError(f"unknown activation {name!r}; choose one of {sorted(ACTIVATIONS)}") from None


def resolve_args(act: str, alpha: float | None, gain: float | None, clamp: float | None):
    """Fill in the activation's defaults: returns (spec, alpha, gain, clamp) with clamp -1 = off."""
    spec = activation(act)
    alpha = float(alpha if alpha is not None else spec.def_alpha)
    gain = float(gain if gain is not None else spec.def_gain)
    clamp = float(clamp if clamp is not None else -1)
    return spec, alpha, gain, clamp


def bias_act(
    x: torch.Tensor,
    b: torch.Tensor | None = None,
    dim: int = 1,
    act: str = "linear",
    alpha: float | None = None,
    gain: float | None = None,
    clamp: float | None = None,
    impl: str | None = None,
) -> torch.Tensor:
    """y = clamp(act(x + b) * gain, -clamp, clamp).

    x: any shape; b: 1-D of size x.shape[dim] (or None); alpha: the activation's parameter
    (lrelu slope, default 0.2); gain: default the activation's def_gain; clamp: None = off.
    `impl` ("ref" or "compiled"; default from LG_OPS) picks the implementation.
    """
    spec, alpha_, gain_, clamp_ = resolve_args(act, alpha, gain, clamp)
    dtype = x.dtype if b is None else torch.promote_types(x.dtype, b.dtype)
    module = _jit.select(impl, x.device, _unsupported(x, dtype))
    if module is None:
        return _bias_act_ref(x, b, dim, act, alpha, gain, clamp)
    if b is not None:
        if b.ndim != 1 or b.shape[0] != x.shape[dim]:
            raise ValueError(
                f"bias_act: bias of shape {tuple(b.shape)} does not match "
                f"x.shape[{dim}]={x.shape[dim]}"
            )
        # x + b promotes in the reference; the kernel wants one dtype.
        if x.dtype != dtype or b.dtype != dtype:
            x, b = x.to(dtype), b.to(dtype)
    elif spec.cuda_idx == 1 and gain_ == 1 and clamp_ < 0:
        return x  # the identity, as in the reference
    args = _Args(dim % x.ndim, spec.cuda_idx, alpha_, gain_, clamp_, spec.has_2nd_grad, module)
    return _BiasActFn.apply(x, b, args)


_KERNEL_DTYPES = {
    "cpu": (torch.float32, torch.float64),
    "cuda": (torch.float32, torch.float64, torch.float16, torch.bfloat16),
}


def _unsupported(x: torch.Tensor, dtype: torch.dtype) -> str | None:
    """Why the compiled kernels cannot take this call, or None if they can."""
    if dtype not in _KERNEL_DTYPES.get(x.device.type, ()):
        return f"bias_act: no compiled kernel for {dtype} on {x.device.type}"
    if x.ndim == 0:
        return "bias_act: the compiled kernel needs x with at least one dimension"
    return None


@dataclass(frozen=True)
class _Args:
    dim: int
    act: int  # Activation.cuda_idx
    alpha: float
    gain: float
    clamp: float  # < 0: off
    has_2nd_grad: bool
    module: object

    def run(self, mode: int, x, b, dy=None, ddz=None) -> torch.Tensor:
        """One kernel call; mode 0 forward, 1 gradient, 2 second-order term (csrc/bias_act.h)."""
        if dy is not None and dy.dtype != x.dtype:
            dy = dy.to(x.dtype)
        if ddz is not None and ddz.dtype != x.dtype:
            ddz = ddz.to(x.dtype)
        return self.module.bias_act(
            x, b, dy, ddz, mode, self.dim, self.act, self.alpha, self.gain, self.clamp
        )

    def grad(self, x, b, dy) -> tuple[torch.Tensor, torch.Tensor]:
        """(dx, db) of a first-order backward in one kernel pass where the module has one (CPU),
        else mode 1 and a sum."""
        if dy.dtype != x.dtype:
            dy = dy.to(x.dtype)
        fused = getattr(self.module, "bias_act_grad", None)
        if fused is not None:
            dx, db = fused(x, b, dy, self.dim, self.act, self.alpha, self.gain, self.clamp)
            return dx, db
        dz = self.run(1, x, b, dy=dy)
        return dz, self.sum_to_bias(dz)

    def sum_to_bias(self, t: torch.Tensor) -> torch.Tensor:
        dims = [i for i in range(t.ndim) if i != self.dim]
        return t.sum(dims) if dims else t  # sum([]) would reduce everything


class _BiasActFn(torch.autograd.Function):
    """y = bias_act(x, b); the backward is _BiasActGradFn, itself differentiable."""

    @staticmethod
    def forward(ctx, x, b, args):
        ctx.save_for_backward(x, b)
        ctx.args = args
        return args.run(0, x, b)

    @staticmethod
    def backward(ctx, dy):
        x, b = ctx.saved_tensors
        # Only a create_graph backward (grad mode on) needs dz to be differentiable; plain
        # training steps skip the second Function's overhead (it shows on small FC layers).
        if torch.is_grad_enabled():
            dz = _BiasActGradFn.apply(dy, x, b, ctx.args)
        elif b is not None and ctx.needs_input_grad[1]:
            dz, db = ctx.args.grad(x, b, dy)  # db summed in the same pass as dz
            return (dz if ctx.needs_input_grad[0] else None), db, None
        else:
            dz = ctx.args.run(1, x, b, dy=dy)
        dx = dz if ctx.needs_input_grad[0] else None
        db = ctx.args.sum_to_bias(dz) if b is not None and ctx.needs_input_grad[1] else None
        return dx, db, None


class _BiasActGradFn(torch.autograd.Function):
    """dz = dy * gain * act'(x + b) * [not clamped]: linear in dy, so its gradient w.r.t. dy is
    itself; w.r.t. x (and b) it is the act'' term, which R1 and path length need."""

    @staticmethod
    def forward(ctx, dy, x, b, args):
        ctx.save_for_backward(dy, x, b)
        ctx.args = args
        return args.run(1, x, b, dy=dy)

    @staticmethod
    def backward(ctx, ddz):
        dy, x, b = ctx.saved_tensors
        args = ctx.args
        d_dy = _BiasActGradFn.apply(ddz, x, b, args) if ctx.needs_input_grad[0] else None
        d_x = d_b = None
        if args.has_2nd_grad and (ctx.needs_input_grad[1] or ctx.needs_input_grad[2]):
            d_z = _BiasActGrad2Fn.apply(ddz, dy, x, b, args)
            d_x = d_z if ctx.needs_input_grad[1] else None
            d_b = args.sum_to_bias(d_z) if b is not None and ctx.needs_input_grad[2] else None
        return d_dy, d_x, d_b, None


class _BiasActGrad2Fn(torch.autograd.Function):
    """ddz * dy * gain * act''(x + b): the end of the chain (third order is not implemented)."""

    @staticmethod
    def forward(ctx, ddz, dy, x, b, args):
        return args.run(2, x, b, dy=dy, ddz=ddz)

    @staticmethod
    def backward(ctx, *grads):
        raise NotImplementedError(
            "bias_act: third-order gradients are not implemented by the compiled kernel; "
            "use impl='ref' (or LG_OPS=ref) for them"
        )


def _bias_act_ref(x, b=None, dim=1, act="linear", alpha=None, gain=None, clamp=None):
    """Reference path: the definition in differentiable PyTorch ops."""
    spec, alpha, gain, clamp = resolve_args(act, alpha, gain, clamp)
    if b is not None:
        if b.ndim != 1 or b.shape[0] != x.shape[dim]:
            raise ValueError(
                f"bias_act: bias of shape {tuple(b.shape)} does not match x.shape[{dim}]={x.shape[dim]}"
            )
        x = x + b.reshape([-1 if i == dim % x.ndim else 1 for i in range(x.ndim)])
    x = spec.func(x, alpha)
    if gain != 1:
        x = x * gain
    if clamp >= 0:
        x = x.clamp(-clamp, clamp)
    return x
