"""StyleGAN v1 building blocks: AdaIN, per-channel noise, [1,2,1] blur, nearest/box resampling
(Karras, Laine, Aila, "A Style-Based Generator Architecture for GANs", CVPR 2019).

Gains follow the official TF code: a conv folds the lrelu gain sqrt(2) into its runtime weight
scale (He init), then noise, bias and activation are applied without further scaling.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Literal

import torch
from torch import nn

from ..ops.bias_act import bias_act
from ..ops.upfirdn2d import downsample2d, filter2d, setup_filter, upsample2d
from .layers import Conv2dLayer, FullyConnectedLayer
from .modulated import NOISE_MODES
from .precision import float32_region

BOX_FILTER = (1, 1)  # 2x2 box: nearest-neighbour upsampling, 2x2 average pooling
BLUR_FILTER = (1, 2, 1)  # the paper's low-pass around every resampling (section 2, after ProGAN)


def upscale2d(x: torch.Tensor) -> torch.Tensor:
    """[N, C, H, W] -> [N, C, 2H, 2W], nearest neighbour (the official upscale2d)."""
    return upsample2d(x, setup_filter(BOX_FILTER, device=x.device))


def downscale2d(x: torch.Tensor) -> torch.Tensor:
    """[N, C, H, W] -> [N, C, H/2, W/2], 2x2 average (the official downscale2d)."""
    return downsample2d(x, setup_filter(BOX_FILTER, device=x.device))


def instance_norm(x: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """Each feature map of each sample to zero mean, unit variance (AdaIN's first half)."""
    x = x - x.mean(dim=[2, 3], keepdim=True)
    return x * (x.square().mean(dim=[2, 3], keepdim=True) + eps).rsqrt()


class AdaIN(nn.Module):
    """AdaIN(x, w) = instance_norm(x) * (1 + y_s) + y_b, with (y_s, y_b) = A(w) (paper eq. 1).

    The affine A starts at zero bias and its scale is offset by 1, as in the official style_mod
    (rosinality's port starts the scale half of the bias at 1 instead: the same function).
    """

    def __init__(self, num_channels: int, w_dim: int):
        super().__init__()
        self.num_channels = num_channels
        self.affine = FullyConnectedLayer(w_dim, 2 * num_channels, bias_init=0)

    def forward(self, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        # x: [N, C, H, W], w: [N, w_dim]
        if x.dtype in (torch.float16, torch.bfloat16):
            # low precision (bf16-mixed): the statistics and the style in float32, the result
            # back in x's dtype
            with float32_region(x):
                return self.forward(x.float(), w.float()).to(x.dtype)
        style = self.affine(w).reshape(-1, 2, self.num_channels, 1, 1).to(x.dtype)
        return instance_norm(x) * (style[:, 0] + 1) + style[:, 1]


class NoiseInput(nn.Module):
    """x + B * noise: one noise image per sample, scaled per channel by learned B (init 0)."""

    def __init__(self, num_channels: int, resolution: int):
        super().__init__()
        self.resolution = resolution
        self.weight = nn.Parameter(torch.zeros([num_channels]))
        # Fixed noise for reproducible images (noise_mode='const'); the official noise variables.
        self.register_buffer("noise_const", torch.randn([resolution, resolution]))

    def forward(self, x: torch.Tensor, noise_mode: str = "random") -> torch.Tensor:
        if noise_mode not in NOISE_MODES:
            raise ValueError(f"noise_mode must be one of {NOISE_MODES}, got {noise_mode!r}")
        if noise_mode == "none":
            return x
        R = self.resolution
        if noise_mode == "random":
            noise = torch.randn([x.shape[0], 1, R, R], device=x.device, dtype=x.dtype)
        else:
            noise = self.noise_const.to(x.dtype).reshape(1, 1, R, R)
        return x + noise * self.weight.to(x.dtype).reshape(1, -1, 1, 1)


class StyleLayer(nn.Module):
    """One of the generator's 2*log2(R)-2 layers, each driven by its own w (paper fig. 1b):
    [conv 3x3 (after 2x nearest up) -> blur] -> noise -> bias, lrelu -> AdaIN(w).

    in_channels=0 makes the conv-less layer that follows the learned 4x4 constant.
    """

    def __init__(
        self,
        in_channels: int,  # 0 = no conv (input is the learned constant)
        out_channels: int,
        w_dim: int,
        resolution: int,  # output resolution
        up: int = 1,  # 2 = upsample first
        fused_scale: bool | Literal["auto"] = "auto",  # official: 'auto' = fused when output >= 128
        blur_filter: Sequence[float] | None = BLUR_FILTER,  # applied after upsampling; None = off
        use_noise: bool = True,
    ):
        super().__init__()
        if up not in (1, 2):
            raise ValueError(f"StyleLayer: up must be 1 or 2, got {up}")
        if fused_scale == "auto":
            fused_scale = resolution >= 128
        self.up = up
        self.fused = bool(fused_scale) and up == 2
        self.conv = None
        if in_channels > 0:
            # Fused: a transposed conv, cheaper at high resolution. It equals nearest-up + conv
            # with the kernel flipped, as in the official graph (where both are used).
            self.conv = Conv2dLayer(
                in_channels, out_channels, kernel_size=3, bias=False, up=2 if self.fused else 1,
                resample_filter=BOX_FILTER,
            )
        self.use_blur = up == 2 and blur_filter is not None
        if self.use_blur:
            self.register_buffer("blur_filter", setup_filter(list(blur_filter)))
        self.noise = NoiseInput(out_channels, resolution) if use_noise else None
        self.bias = nn.Parameter(torch.zeros([out_channels]))
        self.adain = AdaIN(out_channels, w_dim)

    def forward(self, x: torch.Tensor, w: torch.Tensor, noise_mode: str = "random") -> torch.Tensor:
        if self.conv is not None:
            if self.up == 2 and not self.fused:
                x = upscale2d(x)
            x = self.conv(x, gain=math.sqrt(2))  # v1: the lrelu gain lives in the weight scale
            if self.use_blur:
                x = filter2d(x, self.blur_filter)
        if self.noise is not None:
            x = self.noise(x, noise_mode)
        x = bias_act(x, self.bias.to(x.dtype), act="lrelu", gain=1)
        return self.adain(x, w)

    def extra_repr(self) -> str:
        return f"up={self.up}, fused={self.fused}"
