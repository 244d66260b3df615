"""Equalized-learning-rate layers and minibatch stddev (ProGAN/StyleGAN2, Karras et al.).

Weights are stored with unit variance and scaled at run time by 1/sqrt(fan_in) (times the lr
multiplier), so Adam's per-parameter step sizes treat every layer alike.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence

import numpy as np
import torch
from torch import nn

from ..ops.bias_act import activation as activation_spec
from ..ops.bias_act import bias_act
from ..ops.upfirdn2d import setup_filter
from .resample import conv2d_resample


def preferred_layout(x: torch.Tensor) -> torch.Tensor:
    """x in the memory layout the convolutions on its device run fastest in.

    CPU: channels-last. oneDNN's convolutions take 25-60% less time forward+backward on NHWC at
    StyleGAN2's training shapes (bench/train_step.py), and the CPU kernels of ops/ read and
    write NHWC natively. GPU: NCHW, the layout of the CUDA kernels. LG_CHANNELS_LAST=0 or 1
    overrides the choice (for comparisons); the values do not depend on it.
    """
    env = os.environ.get("LG_CHANNELS_LAST", "")
    nhwc = env == "1" or (env != "0" and x.device.type == "cpu")
    if x.ndim != 4:
        return x
    return x.contiguous(memory_format=torch.channels_last if nhwc else torch.contiguous_format)


def relayout_conv_weights(module: nn.Module) -> None:
    """Store every 4-D parameter in the layout preferred_layout gives its device, so that a
    convolution never reorders its weight (on the CPU, oneDNN would copy an NCHW weight for an
    NHWC input in every forward and backward). Values are untouched; called after moves."""
    for p in module.parameters():
        if p.ndim == 4:
            want = preferred_layout(p.detach())
            if want.stride() != p.stride():
                p.data = want


class PreferredLayout:
    """Mixin for whole networks: conv weights follow preferred_layout across .to()/.cuda()."""

    def _apply(self, fn, *args, **kwargs):
        out = super()._apply(fn, *args, **kwargs)
        relayout_conv_weights(self)
        return out


def normalize_2nd_moment(x: torch.Tensor, dim: int = 1, eps: float = 1e-8) -> torch.Tensor:
    """Scale each vector to unit root-mean-square (the mapping network's input normalization)."""
    return x * (x.square().mean(dim=dim, keepdim=True) + eps).rsqrt()


class FullyConnectedLayer(nn.Module):
    """Linear layer with equalized lr; lr_multiplier < 1 slows it (mapping network: 0.01)."""

    def __init__(
        self,
        in_features: int,
        out_features: int,
        bias: bool = True,
        activation: str = "linear",  # any of ops.bias_act.ACTIVATIONS
        lr_multiplier: float = 1.0,  # learning-rate multiplier
        bias_init: float = 0.0,  # initial bias value (1 for style affines)
    ):
        super().__init__()
        activation_spec(activation)
        self.in_features = in_features
        self.out_features = out_features
        self.activation = activation
        self.weight = nn.Parameter(torch.randn([out_features, in_features]) / lr_multiplier)
        self.bias = nn.Parameter(torch.full([out_features], float(bias_init))) if bias else None
        self.weight_gain = lr_multiplier / math.sqrt(in_features)
        self.bias_gain = lr_multiplier

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = self.weight.to(x.dtype)
        b = self.bias
        if b is not None:
            b = b.to(x.dtype)
            if self.bias_gain != 1:
                b = b * self.bias_gain
        if x.ndim == 2:
            # The weight gain rides on the matmul (alpha): no scaled copy of the weight and no
            # extra backward pass over it.
            if b is not None:
                x = torch.addmm(b.unsqueeze(0), x, w.t(), alpha=self.weight_gain)
            else:
                x = torch.mm(x, w.t()).mul_(self.weight_gain)
            return x if self.activation == "linear" else bias_act(x, None, act=self.activation)
        x = x.matmul(w.t() * self.weight_gain)
        return bias_act(x, b, act=self.activation)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, activation={self.activation}"


class Conv2dLayer(nn.Module):
    """Conv with equalized lr, optional FIR up/down-sampling, bias, activation and clamp."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        bias: bool = True,
        activation: str = "linear",
        up: int = 1,  # upsampling factor
        down: int = 1,  # downsampling factor
        resample_filter: Sequence[float] = (1, 3, 3, 1),  # FIR taps for up/down
        conv_clamp: float | None = None,  # clamp the output to +-X (None = off)
    ):
        super().__init__()
        self.activation = activation
        self.up = up
        self.down = down
        self.conv_clamp = conv_clamp
        self.register_buffer("resample_filter", setup_filter(list(resample_filter)))
        self.padding = kernel_size // 2
        self.weight_gain = 1 / math.sqrt(in_channels * kernel_size**2)
        self.act_gain = activation_spec(activation).def_gain
        self.weight = nn.Parameter(torch.randn([out_channels, in_channels, kernel_size, kernel_size]))
        self.bias = nn.Parameter(torch.zeros([out_channels])) if bias else None

    def forward(self, x: torch.Tensor, gain: float = 1) -> torch.Tensor:
        act_gain = self.act_gain * gain
        # A linear layer without bias or clamp (D's skip convs): the gain rides on the weight
        # instead of costing a pass over the output.
        folded = self.activation == "linear" and self.bias is None and self.conv_clamp is None
        w = self.weight.to(x.dtype) * (self.weight_gain * (act_gain if folded else 1))
        b = self.bias.to(x.dtype) if self.bias is not None else None
        x = conv2d_resample(
            x, w, f=self.resample_filter, up=self.up, down=self.down, padding=self.padding,
            flip_weight=(self.up == 1),  # true convolution when upsampling (transposed conv)
        )
        if folded:
            return x
        act_clamp = self.conv_clamp * gain if self.conv_clamp is not None else None
        return bias_act(x, b, act=self.activation, gain=act_gain, clamp=act_clamp)

    def extra_repr(self) -> str:
        o, i, k, _ = self.weight.shape
        return f"in={i}, out={o}, k={k}, act={self.activation}, up={self.up}, down={self.down}"


class MinibatchStdLayer(nn.Module):
    """Append the stddev over groups of samples as extra feature maps (ProGAN, section 3).

    Sample i joins group i % (N / G), the layout of the official implementations.
    """

    def __init__(self, group_size: int | None, num_channels: int = 1):
        super().__init__()
        self.group_size = group_size
        self.num_channels = num_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        N, C, H, W = x.shape
        G = min(self.group_size, N) if self.group_size is not None else N
        F = self.num_channels
        if N % G != 0 or C % F != 0:
            raise ValueError(
                f"minibatch stddev: batch {N} must be divisible by the group size {G} and "
                f"channels {C} by mbstd_num_channels {F}; change the batch size or mbstd_group_size"
            )
        y = x.reshape(G, -1, F, C // F, H, W)
        y = y - y.mean(dim=0)
        y = (y.square().mean(dim=0) + 1e-8).sqrt()
        y = y.mean(dim=[2, 3, 4]).reshape(-1, F, 1, 1)
        y = y.repeat(G, 1, H, W)
        return torch.cat([x, y], dim=1)

    def extra_repr(self) -> str:
        return f"group_size={self.group_size}, num_channels={self.num_channels}"


def count_params(module: nn.Module) -> int:
    """Number of trainable-or-not parameters (buffers excluded), the count papers report."""
    return int(sum(np.prod(p.shape) for p in module.parameters()))
