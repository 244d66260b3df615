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
    return _bias_act_ref(x, b, dim, act, alpha, gain, clamp)


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
