"""Modulated convolution with weight demodulation and the synthesis layers built on it.

StyleGAN2 (Karras et al., CVPR 2020), section 2.2: the style scales the conv weights per input
channel (modulation) and each output channel is renormalized to unit expected variance
(demodulation), which replaces AdaIN and removes its droplet artifacts.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn

from ..ops.bias_act import activation as activation_spec
from ..ops.bias_act import bias_act
from ..ops.scaled_bias_act import scaled_bias_act
from ..ops.upfirdn2d import setup_filter
from .layers import FullyConnectedLayer
from .precision import float32_output, float32_region
from .resample import conv2d_resample

NOISE_MODES = ("random", "const", "none")


def modulated_conv2d(
    x: torch.Tensor,  # [N, C_in, H, W]
    weight: torch.Tensor,  # [C_out, C_in, kh, kw]
    styles: torch.Tensor,  # [N, C_in]
    noise: torch.Tensor | None = None,  # broadcastable to the output [N, C_out, H', W']
    up: int = 1,
    down: int = 1,
    padding: int = 0,
    resample_filter: torch.Tensor | None = None,
    demodulate: bool = True,
    flip_weight: bool = True,
    fused_modconv: bool = True,
    epilogue: dict | None = None,  # bias_act arguments (b, act, gain, clamp) applied last
) -> torch.Tensor:
    """Convolve each sample with its own modulated (and demodulated) weights.

    fused_modconv=True builds the per-sample weights and runs one grouped conv (fast for
    inference); False scales activations instead (x * s, conv, * dcoef), which is the same
    function and cheaper to differentiate during training. With `epilogue`, the bias and
    activation follow; on the non-fused path demodulation, noise and the epilogue are one op
    (ops.scaled_bias_act).
    """
    N = x.shape[0]
    out_channels, in_channels, kh, kw = weight.shape
    if styles.shape != (N, in_channels):
        raise ValueError(f"styles {tuple(styles.shape)} must be [N={N}, C_in={in_channels}]")

    if x.dtype == torch.float16 and demodulate:
        # float16 blocks: scale weights and styles to max |.| ~ 1 first, so that the modulated
        # activations cannot overflow (official). Demodulation cancels both scales: the same
        # function up to the 1e-8 epsilon.
        weight = weight * (1 / math.sqrt(in_channels * kh * kw)
                           / weight.norm(float("inf"), dim=[1, 2, 3], keepdim=True))
        styles = styles / styles.norm(float("inf"), dim=1, keepdim=True)

    dcoefs = None
    if demodulate:
        # sum over (i, k) of (W[o,i,k] s[n,i])^2 = (s^2 @ sum_k W^2 .T)[n, o]: a matmul instead
        # of materializing the [N, O, I, k, k] modulated weights. At least float32 (autocast off here).
        with float32_region(x):
            s32, w32 = float32_output(styles), float32_output(weight)
            dcoefs = (s32.square() @ w32.square().sum(dim=[2, 3]).t() + 1e-8).rsqrt()  # [N, O]

    if not fused_modconv:
        x = x * styles.to(x.dtype).reshape(N, -1, 1, 1)
        x = conv2d_resample(
            x, weight.to(x.dtype), f=resample_filter, up=up, down=down, padding=padding,
            flip_weight=flip_weight,
        )
        if epilogue is None and dcoefs is None and noise is None:
            return x
        return scaled_bias_act(x, dcoefs, noise, **(epilogue or {}))

    w = weight.unsqueeze(0) * styles.reshape(N, 1, -1, 1, 1)  # [N, O, I, k, k]
    if demodulate:
        w = w * dcoefs.reshape(N, -1, 1, 1, 1)
    x = x.reshape(1, -1, *x.shape[2:])
    w = w.reshape(-1, in_channels, kh, kw)
    x = conv2d_resample(
        x, w.to(x.dtype), f=resample_filter, up=up, down=down, padding=padding, groups=N,
        flip_weight=flip_weight,
    )
    x = x.reshape(N, -1, *x.shape[2:])
    if noise is not None:
        x = x + noise.to(x.dtype)
    return bias_act(x, **epilogue) if epilogue is not None else x


class SynthesisLayer(nn.Module):
    """Style affine -> modulated 3x3 conv (optionally 2x up) -> noise -> bias + lrelu."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        w_dim: int,
        resolution: int,  # output resolution
        kernel_size: int = 3,
        up: int = 1,
        use_noise: bool = True,
        activation: str = "lrelu",
        resample_filter: Sequence[float] = (1, 3, 3, 1),
        conv_clamp: float | None = None,
    ):
        super().__init__()
        self.resolution = resolution
        self.up = up
        self.use_noise = use_noise
        self.activation = activation
        self.conv_clamp = conv_clamp
        self.register_buffer("resample_filter", setup_filter(list(resample_filter)))
        self.padding = kernel_size // 2
        self.act_gain = activation_spec(activation).def_gain
        self.affine = FullyConnectedLayer(w_dim, in_channels, bias_init=1)
        self.weight = nn.Parameter(torch.randn([out_channels, in_channels, kernel_size, kernel_size]))
        if use_noise:
            # Fixed noise for reproducible images (noise_mode='const'); strength is learned.
            self.register_buffer("noise_const", torch.randn([resolution, resolution]))
            self.noise_strength = nn.Parameter(torch.zeros([]))
        self.bias = nn.Parameter(torch.zeros([out_channels]))

    def forward(
        self, x: torch.Tensor, w: torch.Tensor, noise_mode: str = "random",
        fused_modconv: bool = True, gain: float = 1,
    ) -> torch.Tensor:
        if noise_mode not in NOISE_MODES:
            raise ValueError(f"noise_mode must be one of {NOISE_MODES}, got {noise_mode!r}")
        with float32_region(w):
            styles = self.affine(w)
        noise = None
        if self.use_noise and noise_mode == "random":
            noise = torch.randn(
                [x.shape[0], 1, self.resolution, self.resolution], device=x.device, dtype=x.dtype
            ) * self.noise_strength
        elif self.use_noise and noise_mode == "const":
            noise = self.noise_const * self.noise_strength
        act_clamp = self.conv_clamp * gain if self.conv_clamp is not None else None
        return modulated_conv2d(
            x, self.weight, styles, noise=noise, up=self.up, padding=self.padding,
            resample_filter=self.resample_filter, flip_weight=(self.up == 1),
            fused_modconv=fused_modconv,
            epilogue=dict(b=self.bias.to(x.dtype), act=self.activation, gain=self.act_gain * gain,
                          clamp=act_clamp),
        )

    def extra_repr(self) -> str:
        o, i, k, _ = self.weight.shape
        return f"in={i}, out={o}, resolution={self.resolution}, up={self.up}"


class ToRGBLayer(nn.Module):
    """Style affine -> modulated 1x1 conv without demodulation -> bias: features to an image."""

    def __init__(
        self, in_channels: int, out_channels: int, w_dim: int, kernel_size: int = 1,
        conv_clamp: float | None = None,
    ):
        super().__init__()
        self.conv_clamp = conv_clamp
        self.affine = FullyConnectedLayer(w_dim, in_channels, bias_init=1)
        self.weight = nn.Parameter(torch.randn([out_channels, in_channels, kernel_size, kernel_size]))
        self.bias = nn.Parameter(torch.zeros([out_channels]))
        self.weight_gain = 1 / math.sqrt(in_channels * kernel_size**2)

    def forward(self, x: torch.Tensor, w: torch.Tensor, fused_modconv: bool = True) -> torch.Tensor:
        with float32_region(w):
            styles = self.affine(w) * self.weight_gain
        x = modulated_conv2d(x, self.weight, styles, demodulate=False, fused_modconv=fused_modconv)
        return bias_act(x, self.bias.to(x.dtype), clamp=self.conv_clamp)
