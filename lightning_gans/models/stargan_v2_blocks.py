"""StarGAN v2 building blocks (Choi et al., CVPR 2020): residual blocks, AdaIN, high-pass filter.

Parameter and buffer names follow the official clovaai/stargan-v2 state dicts (`conv1`, `conv2`,
`norm1`, `norm2`, `conv1x1`, `norm*.fc`, `filter`), so its checkpoints load without renaming.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F

LRELU_SLOPE = 0.2  # every activation in the StarGAN v2 networks (except the mapping's ReLU)


class ResBlk(nn.Module):
    """Pre-activation residual block of the generator encoder, style encoder and discriminator.

    [N, dim_in, H, W] -> [N, dim_out, H/2, W/2] if downsample else [N, dim_out, H, W].
    """

    def __init__(
        self,
        dim_in: int,               # input channels
        dim_out: int,              # output channels; != dim_in adds a learned 1x1 shortcut
        normalize: bool = False,   # InstanceNorm (affine) before each activation (generator)
        downsample: bool = False,  # 2x2 average pooling in both paths
    ) -> None:
        super().__init__()
        self.dim_in = dim_in
        self.dim_out = dim_out
        self.normalize = normalize
        self.downsample = downsample
        self.learned_sc = dim_in != dim_out
        self.conv1 = nn.Conv2d(dim_in, dim_in, 3, 1, 1)
        self.conv2 = nn.Conv2d(dim_in, dim_out, 3, 1, 1)
        if normalize:
            # Both norms have dim_in features: norm2 acts before conv2, which still sees dim_in.
            self.norm1 = nn.InstanceNorm2d(dim_in, affine=True)
            self.norm2 = nn.InstanceNorm2d(dim_in, affine=True)
        if self.learned_sc:
            self.conv1x1 = nn.Conv2d(dim_in, dim_out, 1, 1, 0, bias=False)

    def _shortcut(self, x: torch.Tensor) -> torch.Tensor:
        if self.learned_sc:
            x = self.conv1x1(x)  # 1x1 conv before pooling: same result, 4x fewer pixels after
        if self.downsample:
            x = F.avg_pool2d(x, 2)
        return x

    def _residual(self, x: torch.Tensor) -> torch.Tensor:
        if self.normalize:
            x = self.norm1(x)
        x = self.conv1(F.leaky_relu(x, LRELU_SLOPE))
        if self.downsample:
            x = F.avg_pool2d(x, 2)
        if self.normalize:
            x = self.norm2(x)
        return self.conv2(F.leaky_relu(x, LRELU_SLOPE))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # Dividing the sum of two (roughly independent) unit-variance paths keeps unit variance.
        return (self._shortcut(x) + self._residual(x)) / math.sqrt(2)

    def extra_repr(self) -> str:
        return f"{self.dim_in}, {self.dim_out}, normalize={self.normalize}, down={self.downsample}"


class AdaIN(nn.Module):
    """Adaptive instance norm: (1 + gamma(s)) * IN(x) + beta(s), gamma/beta from one linear layer.

    x [N, C, H, W], s [N, style_dim] -> [N, C, H, W].
    """

    def __init__(self, style_dim: int, num_features: int) -> None:
        super().__init__()
        self.norm = nn.InstanceNorm2d(num_features, affine=False)
        self.fc = nn.Linear(style_dim, num_features * 2)  # [gamma | beta], gamma first

    def forward(self, x: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
        h = self.fc(s)[:, :, None, None]
        gamma, beta = torch.chunk(h, chunks=2, dim=1)
        # "1 +": a zero-initialised gamma (he_init zeroes fc.bias) starts as the identity scale.
        return (1 + gamma) * self.norm(x) + beta


class AdainResBlk(nn.Module):
    """Residual block of the generator decoder, styled by AdaIN; nearest 2x upsampling if asked.

    x [N, dim_in, H, W], s [N, style_dim] -> [N, dim_out, 2H, 2W] if upsample else [.., H, W].

    With w_hpf > 0 the block returns only the residual path: the official generator drops the
    shortcut there and lets the high-pass skip connections carry the identity details instead.
    The `conv1x1` of a learned shortcut is still created (the official checkpoints hold it), so
    with w_hpf > 0 those weights never receive a gradient (DDP needs find_unused_parameters).
    """

    def __init__(
        self,
        dim_in: int,             # input channels
        dim_out: int,            # output channels; != dim_in adds a learned 1x1 shortcut
        style_dim: int = 64,     # style code size
        w_hpf: float = 0,        # > 0: no shortcut (see above)
        upsample: bool = False,  # nearest-neighbour 2x upsampling in both paths
    ) -> None:
        super().__init__()
        self.dim_in = dim_in
        self.dim_out = dim_out
        self.w_hpf = w_hpf
        self.upsample = upsample
        self.learned_sc = dim_in != dim_out
        self.conv1 = nn.Conv2d(dim_in, dim_out, 3, 1, 1)
        self.conv2 = nn.Conv2d(dim_out, dim_out, 3, 1, 1)
        self.norm1 = AdaIN(style_dim, dim_in)
        self.norm2 = AdaIN(style_dim, dim_out)
        if self.learned_sc:
            self.conv1x1 = nn.Conv2d(dim_in, dim_out, 1, 1, 0, bias=False)

    def _shortcut(self, x: torch.Tensor) -> torch.Tensor:
        if self.upsample:
            x = F.interpolate(x, scale_factor=2, mode="nearest")
        if self.learned_sc:
            x = self.conv1x1(x)
        return x

    def _residual(self, x: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
        x = F.leaky_relu(self.norm1(x, s), LRELU_SLOPE)
        if self.upsample:
            x = F.interpolate(x, scale_factor=2, mode="nearest")
        x = self.conv1(x)
        x = F.leaky_relu(self.norm2(x, s), LRELU_SLOPE)
        return self.conv2(x)

    def forward(self, x: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
        out = self._residual(x, s)
        if self.w_hpf == 0:
            out = (out + self._shortcut(x)) / math.sqrt(2)
        return out

    def extra_repr(self) -> str:
        return f"{self.dim_in}, {self.dim_out}, w_hpf={self.w_hpf}, up={self.upsample}"


class HighPass(nn.Module):
    """Depthwise 3x3 Laplacian-style high-pass filter, scaled by 1 / w_hpf.

    [N, C, H, W] -> [N, C, H, W] (zero padding). The kernel is a buffer named `filter` [3, 3], as
    in the official state dict; files from before it was a buffer lack the key, so a missing
    `filter` is filled with the computed kernel on load (strict loading still works).
    """

    def __init__(self, w_hpf: float) -> None:
        super().__init__()
        if w_hpf <= 0:
            raise ValueError(f"HighPass needs w_hpf > 0, got {w_hpf}")
        self.w_hpf = w_hpf
        self.register_buffer("filter", self.make_kernel(w_hpf))

    @staticmethod
    def make_kernel(w_hpf: float) -> torch.Tensor:
        kernel = torch.full((3, 3), -1.0)
        kernel[1, 1] = 8.0  # taps sum to 0: constant regions give 0, only edges pass
        return kernel / w_hpf

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        c = x.shape[1]
        weight = self.filter.to(x.dtype)[None, None].expand(c, 1, 3, 3)
        return F.conv2d(x, weight, padding=1, groups=c)

    def _load_from_state_dict(
        self, state_dict: dict[str, Any], prefix: str, *args: Any, **kwargs: Any
    ) -> None:
        key = prefix + "filter"
        if key not in state_dict:
            state_dict[key] = self.make_kernel(self.w_hpf)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)
