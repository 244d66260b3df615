"""StyleGAN2 generator (Karras et al., "Analyzing and Improving the Image Quality of StyleGAN",
CVPR 2020), config F: skip generator (the discriminator: stylegan2_discriminator.py).

Module names and tensor layouts follow the official StyleGAN2-ADA networks (mapping.fc0,
synthesis.b4.conv1, b8.torgb, ...), so official checkpoints map onto these modules by name.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn

from ..nn import (
    FullyConnectedLayer,
    SynthesisLayer,
    ToRGBLayer,
    normalize_2nd_moment,
    preferred_layout,
)
from ..nn.layers import PreferredLayout, relayout_conv_weights
from ..nn.precision import (
    block_dtype,
    float32_output,
    float32_region,
    fp16_resolutions,
    refuse_float16_autocast,
    to_block_dtype,
)
from ..ops.upfirdn2d import setup_filter, upsample2d


def check_resolution(resolution: int) -> int:
    """Resolutions are powers of two from 4 to 1024 (what the architecture is defined for)."""
    if not (isinstance(resolution, int) and 4 <= resolution <= 1024 and resolution & (resolution - 1) == 0):
        raise ValueError(f"resolution must be a power of two in [4, 1024], got {resolution!r}")
    return resolution


def channels_at(res: int, channel_base: int, channel_max: int) -> int:
    """Feature maps at a resolution: min(channel_base // res, channel_max)."""
    return min(channel_base // res, channel_max)


class MappingNetwork(nn.Module):
    """z (+ class embedding) -> w, with a running w_avg for the truncation trick."""

    def __init__(
        self,
        z_dim: int,  # latent z size (0 = none)
        c_dim: int,  # conditioning label size (0 = unconditional)
        w_dim: int,  # intermediate latent w size
        num_ws: int | None,  # number of ws to broadcast to (None = return [N, w_dim])
        num_layers: int = 8,
        embed_features: int | None = None,  # label embedding size (default w_dim)
        layer_features: int | None = None,  # hidden width (default w_dim)
        activation: str = "lrelu",
        lr_multiplier: float = 0.01,
        w_avg_beta: float | None = 0.995,  # decay of the w_avg tracking (None = no tracking)
    ):
        super().__init__()
        self.z_dim, self.c_dim, self.w_dim = z_dim, c_dim, w_dim
        self.num_ws = num_ws
        self.num_layers = num_layers
        self.w_avg_beta = w_avg_beta
        embed_features = (w_dim if c_dim else 0) if embed_features is None else embed_features
        layer_features = w_dim if layer_features is None else layer_features
        features = [z_dim + embed_features] + [layer_features] * (num_layers - 1) + [w_dim]
        if c_dim > 0:
            self.embed = FullyConnectedLayer(c_dim, embed_features)
        for idx in range(num_layers):
            layer = FullyConnectedLayer(
                features[idx], features[idx + 1], activation=activation, lr_multiplier=lr_multiplier
            )
            setattr(self, f"fc{idx}", layer)
        if num_ws is not None and w_avg_beta is not None:
            self.register_buffer("w_avg", torch.zeros([w_dim]))

    def forward(
        self,
        z: torch.Tensor | None,  # [N, z_dim]
        c: torch.Tensor | None,  # [N, c_dim]
        truncation_psi: float = 1,
        truncation_cutoff: int | None = None,  # truncate only the first ws (None = all)
        update_w_avg: bool = True,
        w_avg_rows: int | None = None,  # only the first rows update w_avg (None = all)
    ) -> torch.Tensor:
        # float32 throughout, autocast or not: w, its statistics and w_avg (official).
        anchor = z if z is not None else (c if c is not None else self.fc0.weight)
        if self.training:
            refuse_float16_autocast(anchor)
        with float32_region(anchor):
            return self._forward(z, c, truncation_psi, truncation_cutoff, update_w_avg, w_avg_rows)

    def _forward(self, z, c, truncation_psi, truncation_cutoff, update_w_avg, w_avg_rows):
        x = None
        if self.z_dim > 0:
            if z is None or z.ndim != 2 or z.shape[1] != self.z_dim:
                raise ValueError(f"z must be [N, {self.z_dim}], got {None if z is None else tuple(z.shape)}")
            x = normalize_2nd_moment(z.to(torch.float32))
        if self.c_dim > 0:
            if c is None or c.ndim != 2 or c.shape[1] != self.c_dim:
                raise ValueError(f"c must be [N, {self.c_dim}], got {None if c is None else tuple(c.shape)}")
            y = normalize_2nd_moment(self.embed(c.to(torch.float32)))
            x = torch.cat([x, y], dim=1) if x is not None else y
        for idx in range(self.num_layers):
            x = getattr(self, f"fc{idx}")(x)

        if self.training and update_w_avg and self.w_avg_beta is not None and self.num_ws is not None:
            self.w_avg.copy_(x.detach()[:w_avg_rows].float().mean(dim=0).lerp(self.w_avg, self.w_avg_beta))
        if self.num_ws is not None:
            x = x.unsqueeze(1).repeat([1, self.num_ws, 1])
        if truncation_psi != 1:
            if self.num_ws is None or self.w_avg_beta is None:
                raise ValueError("truncation needs a mapping network with num_ws and w_avg")
            cutoff = self.num_ws if truncation_cutoff is None else truncation_cutoff
            x = torch.cat([self.w_avg.to(x.dtype).lerp(x[:, :cutoff], truncation_psi), x[:, cutoff:]], dim=1)
        return x


class SynthesisBlock(nn.Module):
    """One resolution of the skip generator: [2x up conv], conv, toRGB added to the upsampled image."""

    def __init__(
        self,
        in_channels: int,  # 0 = first block (learned constant input)
        out_channels: int,
        w_dim: int,
        resolution: int,
        img_channels: int,
        is_last: bool,
        resample_filter: Sequence[float] = (1, 3, 3, 1),
        conv_clamp: float | None = None,
        use_noise: bool = True,
        use_fp16: bool = False,  # compute in float16 (on the CPU only with fp16_on_cpu)
        fp16_on_cpu: bool = False,
    ):
        super().__init__()
        self.in_channels = in_channels
        self.resolution = resolution
        self.use_fp16 = use_fp16
        self.fp16_on_cpu = fp16_on_cpu
        self.register_buffer("resample_filter", setup_filter(list(resample_filter)))
        layer_kwargs = dict(w_dim=w_dim, resolution=resolution, conv_clamp=conv_clamp, use_noise=use_noise)
        self.num_conv = 0
        if in_channels == 0:
            self.const = nn.Parameter(torch.randn([out_channels, resolution, resolution]))
        else:
            self.conv0 = SynthesisLayer(
                in_channels, out_channels, up=2, resample_filter=resample_filter, **layer_kwargs
            )
            self.num_conv += 1
        self.conv1 = SynthesisLayer(out_channels, out_channels, **layer_kwargs)
        self.num_conv += 1
        self.torgb = ToRGBLayer(out_channels, img_channels, w_dim=w_dim, conv_clamp=conv_clamp)
        self.num_torgb = 1

    def forward(self, x, img, ws, noise_mode="random", fused_modconv=None, force_fp32=False):
        # ws: [N, num_conv + num_torgb, w_dim]
        dtype = block_dtype(self.use_fp16, ws.device, force_fp32, self.fp16_on_cpu)
        if fused_modconv is None:
            # grouped conv is faster, activation scaling trains faster; float16 keeps the
            # per-sample weights unfused (as the official) unless there is one sample
            fused_modconv = not self.training and (dtype == torch.float32 or ws.shape[0] == 1)
        w_iter = iter(ws.unbind(dim=1))
        if self.in_channels == 0:
            const = self.const.to(dtype if dtype == torch.float16 else ws.dtype)
            x = preferred_layout(const.unsqueeze(0).repeat([ws.shape[0], 1, 1, 1]))
        else:
            x = to_block_dtype(x, dtype)
            x = self.conv0(x, next(w_iter), noise_mode=noise_mode, fused_modconv=fused_modconv)
        x = self.conv1(x, next(w_iter), noise_mode=noise_mode, fused_modconv=fused_modconv)
        if img is not None:
            with float32_region(img):  # the image sum stays float32 (also under autocast)
                img = upsample2d(img, self.resample_filter)
        y = self.torgb(x, next(w_iter), fused_modconv=fused_modconv)
        y = float32_output(y)  # float32 (float64 stays)
        img = img + y if img is not None else y
        return x, img


class SynthesisNetwork(nn.Module):
    """ws [N, num_ws, w_dim] -> image [N, img_channels, R, R] in ~[-1, 1]."""

    def __init__(
        self,
        w_dim: int,
        img_resolution: int,
        img_channels: int = 3,
        channel_base: int = 32768,  # capacity: channels = min(channel_base // res, channel_max)
        channel_max: int = 512,
        num_fp16_res: int = 0,  # the N highest resolutions compute in float16 (nn/precision.py)
        fp16_on_cpu: bool = False,  # ... also on the CPU (else float32 there)
        **block_kwargs,
    ):
        super().__init__()
        self.w_dim = w_dim
        self.img_resolution = check_resolution(img_resolution)
        self.img_channels = img_channels
        self.block_resolutions = [2**i for i in range(2, int(math.log2(img_resolution)) + 1)]
        self.num_fp16_res = num_fp16_res
        self.fp16_resolutions = fp16_resolutions(img_resolution, num_fp16_res)
        self.num_ws = 0
        for res in self.block_resolutions:
            in_channels = channels_at(res // 2, channel_base, channel_max) if res > 4 else 0
            block = SynthesisBlock(
                in_channels, channels_at(res, channel_base, channel_max), w_dim=w_dim,
                resolution=res, img_channels=img_channels, is_last=(res == img_resolution),
                use_fp16=res in self.fp16_resolutions, fp16_on_cpu=fp16_on_cpu, **block_kwargs,
            )
            self.num_ws += block.num_conv
            setattr(self, f"b{res}", block)
        self.num_ws += 1  # the last toRGB; earlier toRGBs share their w with the next conv

    def forward(self, ws: torch.Tensor, noise_mode: str = "random", fused_modconv: bool | None = None,
                force_fp32: bool = False):
        if ws.ndim != 3 or ws.shape[1:] != (self.num_ws, self.w_dim):
            raise ValueError(f"ws must be [N, {self.num_ws}, {self.w_dim}], got {tuple(ws.shape)}")
        ws = float32_output(ws)
        x = img = None
        w_idx = 0
        for res in self.block_resolutions:
            block = getattr(self, f"b{res}")
            cur_ws = ws.narrow(1, w_idx, block.num_conv + block.num_torgb)
            w_idx += block.num_conv
            x, img = block(x, img, cur_ws, noise_mode=noise_mode, fused_modconv=fused_modconv,
                           force_fp32=force_fp32)
        return img.contiguous()  # the layout users expect, whatever the blocks ran in


class Generator(PreferredLayout, nn.Module):
    """z, c -> image: mapping network then synthesis network."""

    def __init__(
        self,
        z_dim: int = 512,
        c_dim: int = 0,
        w_dim: int = 512,
        img_resolution: int = 1024,
        img_channels: int = 3,
        mapping_kwargs: dict | None = None,  # MappingNetwork arguments (num_layers, lr_multiplier, ...)
        **synthesis_kwargs,  # SynthesisNetwork arguments (channel_base, channel_max, conv_clamp,
        # num_fp16_res, fp16_on_cpu, ...)
    ):
        super().__init__()
        self.z_dim, self.c_dim, self.w_dim = z_dim, c_dim, w_dim
        self.img_resolution = img_resolution
        self.img_channels = img_channels
        self.synthesis = SynthesisNetwork(w_dim, img_resolution, img_channels, **synthesis_kwargs)
        self.num_ws = self.synthesis.num_ws
        self.mapping = MappingNetwork(z_dim, c_dim, w_dim, num_ws=self.num_ws, **(mapping_kwargs or {}))
        relayout_conv_weights(self)

    def forward(
        self, z, c=None, truncation_psi=1, truncation_cutoff=None, noise_mode="random",
        fused_modconv=None, update_w_avg=True, force_fp32=False,
    ):
        ws = self.mapping(z, c, truncation_psi, truncation_cutoff, update_w_avg=update_w_avg)
        return self.synthesis(ws, noise_mode=noise_mode, fused_modconv=fused_modconv, force_fp32=force_fp32)
