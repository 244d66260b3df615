"""StyleGAN2 discriminator (Karras et al., CVPR 2020), config F: resnet blocks, minibatch-stddev
epilogue; 'orig' blocks for the official cifar config. Module names follow the official
StyleGAN2-ADA networks (b64.conv0, b4.fc, ...), so official checkpoints map onto them by name.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn

from ..nn import Conv2dLayer, FullyConnectedLayer, MinibatchStdLayer, preferred_layout
from ..nn.layers import PreferredLayout, relayout_conv_weights
from ..nn.precision import (
    block_dtype,
    float32_output,
    float32_region,
    fp16_resolutions,
    to_block_dtype,
)
from .stylegan2 import MappingNetwork, channels_at, check_resolution

D_ARCHITECTURES = ("resnet", "orig")


class DiscriminatorBlock(nn.Module):
    """D block: [fromRGB], conv, conv with 2x down; 'resnet' (StyleGAN2's) adds a 1x1 down skip and
    scales the sum by sqrt(1/2), 'orig' (the official cifar config's) has no skip and no scaling."""

    def __init__(
        self,
        in_channels: int,  # 0 = first block (takes the image through fromrgb)
        tmp_channels: int,
        out_channels: int,
        img_channels: int,
        activation: str = "lrelu",
        resample_filter: Sequence[float] = (1, 3, 3, 1),
        conv_clamp: float | None = None,
        use_fp16: bool = False,  # compute in float16 (on the CPU only with fp16_on_cpu)
        fp16_on_cpu: bool = False,
        architecture: str = "resnet",
    ):
        super().__init__()
        if architecture not in D_ARCHITECTURES:
            raise ValueError(f"D architecture {architecture!r}: give one of {', '.join(D_ARCHITECTURES)}")
        self.in_channels = in_channels
        self.architecture = architecture
        self.use_fp16 = use_fp16
        self.fp16_on_cpu = fp16_on_cpu
        kw = dict(activation=activation, conv_clamp=conv_clamp)
        if in_channels == 0:
            self.fromrgb = Conv2dLayer(img_channels, tmp_channels, kernel_size=1, **kw)
        self.conv0 = Conv2dLayer(tmp_channels, tmp_channels, kernel_size=3, **kw)
        self.conv1 = Conv2dLayer(
            tmp_channels, out_channels, kernel_size=3, down=2, resample_filter=resample_filter, **kw
        )
        if architecture == "resnet":
            self.skip = Conv2dLayer(
                tmp_channels, out_channels, kernel_size=1, bias=False, down=2, resample_filter=resample_filter
            )

    def forward(self, x, img, force_fp32=False):
        dtype = block_dtype(self.use_fp16, img.device, force_fp32, self.fp16_on_cpu)
        if self.in_channels == 0:
            x = self.fromrgb(to_block_dtype(img, dtype))
        else:
            x = to_block_dtype(x, dtype)
        if self.architecture == "orig":
            return self.conv1(self.conv0(x))
        y = self.skip(x, gain=math.sqrt(0.5))
        x = self.conv0(x)
        x = self.conv1(x, gain=math.sqrt(0.5))
        return y + x


class DiscriminatorEpilogue(nn.Module):
    """4x4 head: minibatch stddev, conv, fc, output (projected onto the label embedding when conditional)."""

    def __init__(
        self,
        in_channels: int,
        cmap_dim: int,  # label embedding size (0 = unconditional)
        resolution: int = 4,
        img_channels: int | None = None,  # set when the image is 4x4: the epilogue takes it directly
        mbstd_group_size: int | None = 4,
        mbstd_num_channels: int = 1,
        activation: str = "lrelu",
        conv_clamp: float | None = None,
    ):
        super().__init__()
        self.cmap_dim = cmap_dim
        if img_channels is not None:
            self.fromrgb = Conv2dLayer(img_channels, in_channels, kernel_size=1, activation=activation)
        self.mbstd = MinibatchStdLayer(mbstd_group_size, mbstd_num_channels) if mbstd_num_channels else None
        self.conv = Conv2dLayer(
            in_channels + mbstd_num_channels, in_channels, kernel_size=3, activation=activation,
            conv_clamp=conv_clamp,
        )
        self.fc = FullyConnectedLayer(in_channels * resolution**2, in_channels, activation=activation)
        self.out = FullyConnectedLayer(in_channels, cmap_dim if cmap_dim > 0 else 1)

    def forward(self, x, img=None, cmap=None):
        # float32 throughout, autocast or not (official): the logits every loss reduces.
        with float32_region(img if x is None else x):
            if hasattr(self, "fromrgb"):
                x = self.fromrgb(float32_output(img))
            x = float32_output(x)
            if self.mbstd is not None:
                x = self.mbstd(x)
            x = self.conv(x)
            x = self.out(self.fc(x.flatten(1)))
            if self.cmap_dim > 0:
                x = (x * float32_output(cmap)).sum(dim=1, keepdim=True) * (1 / math.sqrt(self.cmap_dim))
        return x


class Discriminator(PreferredLayout, nn.Module):
    """image [N, C, R, R] (+ label) -> logit [N, 1]."""

    def __init__(
        self,
        c_dim: int = 0,
        img_resolution: int = 1024,
        img_channels: int = 3,
        channel_base: int = 32768,
        channel_max: int = 512,
        cmap_dim: int | None = None,  # label embedding size (default: channels at 4x4)
        conv_clamp: float | None = None,
        mbstd_group_size: int | None = 4,
        mbstd_num_channels: int = 1,
        mapping_kwargs: dict | None = None,
        num_fp16_res: int = 0,  # the N highest resolutions compute in float16 (nn/precision.py)
        fp16_on_cpu: bool = False,  # ... also on the CPU (else float32 there)
        architecture: str = "resnet",  # or 'orig' (no residual skips: the official cifar config)
    ):
        super().__init__()
        self.c_dim = c_dim
        self.architecture = architecture
        self.img_resolution = check_resolution(img_resolution)
        self.img_channels = img_channels
        self.block_resolutions = [2**i for i in range(int(math.log2(img_resolution)), 2, -1)]
        self.num_fp16_res = num_fp16_res
        self.fp16_resolutions = [r for r in fp16_resolutions(img_resolution, num_fp16_res) if r > 4]
        ch = {res: channels_at(res, channel_base, channel_max) for res in self.block_resolutions + [4]}
        if cmap_dim is None:
            cmap_dim = ch[4]
        if c_dim == 0:
            cmap_dim = 0
        for res in self.block_resolutions:
            in_channels = ch[res] if res < img_resolution else 0
            block = DiscriminatorBlock(
                in_channels, ch[res], ch[res // 2], img_channels=img_channels, conv_clamp=conv_clamp,
                use_fp16=res in self.fp16_resolutions, fp16_on_cpu=fp16_on_cpu, architecture=architecture,
            )
            setattr(self, f"b{res}", block)
        if c_dim > 0:
            self.mapping = MappingNetwork(
                z_dim=0, c_dim=c_dim, w_dim=cmap_dim, num_ws=None, w_avg_beta=None,
                **(mapping_kwargs or {}),
            )
        self.b4 = DiscriminatorEpilogue(
            ch[4], cmap_dim=cmap_dim, img_channels=img_channels if img_resolution == 4 else None,
            mbstd_group_size=mbstd_group_size,
            mbstd_num_channels=mbstd_num_channels, conv_clamp=conv_clamp,
        )
        relayout_conv_weights(self)

    def forward(self, img: torch.Tensor, c: torch.Tensor | None = None, force_fp32: bool = False) -> torch.Tensor:
        R = self.img_resolution
        if img.ndim != 4 or img.shape[1:] != (self.img_channels, R, R):
            raise ValueError(f"D expects images [N, {self.img_channels}, {R}, {R}], got {tuple(img.shape)}")
        x = None
        img = preferred_layout(img)
        for res in self.block_resolutions:
            x = getattr(self, f"b{res}")(x, img, force_fp32=force_fp32)
        cmap = self.mapping(None, c) if self.c_dim > 0 else None
        return self.b4(x, img, cmap)
