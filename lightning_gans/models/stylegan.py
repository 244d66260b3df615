"""StyleGAN (v1) generator and discriminator with progressive growing (Karras, Laine, Aila,
"A Style-Based Generator Architecture for Generative Adversarial Networks", CVPR 2019).

Layout and initialization follow the official TF networks (training/networks_stylegan.py:
G_mapping, G_synthesis, D_basic) at its FFHQ configuration. Progressive growing: both networks
take the current `resolution` R and the fade-in `alpha`; while a new resolution fades in,

    G: img = lerp(upscale2d(torgb_{R/2}(x_{R/2})), torgb_R(x_R), alpha)
    D: x   = lerp(fromrgb_{R/2}(downscale2d(img)), block_R(fromrgb_R(img)), alpha)

(the official lerp with t = lod - floor(lod) = 1 - alpha). Images are [N, C, R, R] at the
current resolution, not upscaled to the final one as in the official graph.

Parameter counts at 1024 (z_dim = w_dim = 512): G 26,219,627 = mapping 2,101,248 + synthesis
24,118,379, which includes all nine toRGB layers (7,659) and the per-channel noise weights; it is
the "Total" that the official code prints for the FFHQ generator. rosinality's PyTorch port
has 26,219,115: 512 fewer, because it has no bias after the learned constant (official
4x4/Const/bias, here synthesis.b4.layer0.bias). D: 23,087,249 (official D_basic; rosinality's
D differs in layout, 25,444,737). Noise images and w_avg are buffers and are not counted.

Reuse of the StyleGAN2 layers (FullyConnectedLayer, Conv2dLayer, MappingNetwork): they apply the
lrelu gain sqrt(2) after the bias, where v1 folds it into the weight before the bias. lrelu is
positively homogeneous, so it is the same function with b_official = sqrt(2) * b_here for the
mapping and discriminator biases (same init, zero); an importer of official weights divides
those by sqrt(2). The synthesis layers (nn/adain.py) use the v1 placement exactly.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Literal

import torch
from torch import nn

from ..nn.adain import BLUR_FILTER, BOX_FILTER, StyleLayer, downscale2d, upscale2d
from ..nn.layers import Conv2dLayer, FullyConnectedLayer, MinibatchStdLayer
from ..nn.precision import float32_output, float32_region
from ..ops.upfirdn2d import filter2d, setup_filter
from .stylegan2 import MappingNetwork, check_resolution

TRUNCATION_PSI = 0.7  # the official G_style's sampling default (figures); training and FID use 1
TRUNCATION_CUTOFF = 8  # truncate ws 0..7: resolutions 4..32 (paper, fig. 8 and appendix B)


def nf(stage: int, fmap_base: int = 8192, fmap_decay: float = 1.0, fmap_max: int = 512) -> int:
    """Feature maps at a stage (official): min(fmap_base / 2^(stage * fmap_decay), fmap_max).

    Resolution 2^r has nf(r - 1) maps: 512 up to 32x32, then 256, 128, 64, 32, 16 at 1024.
    """
    return min(int(fmap_base / (2.0 ** (stage * fmap_decay))), fmap_max)


def num_ws_at(resolution: int) -> int:
    """ws that drive a generator grown to `resolution`: two per resolution from 4x4."""
    return 2 * int(math.log2(resolution)) - 2


def check_progress(resolution: int | None, alpha: float, max_resolution: int) -> int:
    """Validate a progressive-growing state; returns the current resolution (None = final)."""
    R = max_resolution if resolution is None else resolution
    if not (isinstance(R, int) and 4 <= R <= max_resolution and R & (R - 1) == 0):
        raise ValueError(
            f"resolution must be a power of two in [4, {max_resolution}] (the network's "
            f"img_resolution), got {resolution!r}"
        )
    if not 0 <= alpha <= 1:
        raise ValueError(f"alpha (fade-in of the new resolution) must be in [0, 1], got {alpha!r}")
    if alpha < 1 and R == 4:
        raise ValueError("alpha < 1 at resolution 4: there is no lower resolution to fade from")
    return R


def mix_styles(ws: torch.Tensor, ws2: torch.Tensor, crossover: int) -> torch.Tensor:
    """Style mixing (paper section 3.1): layers < crossover take ws, the rest take ws2.

    ws, ws2: [N, num_ws, w_dim]. The training regularizer draws crossover from
    [1, num_ws_at(current resolution)); crossover 0 or num_ws gives ws2 or ws alone.
    """
    if ws.shape != ws2.shape or ws.ndim != 3:
        raise ValueError(
            f"mix_styles: ws {tuple(ws.shape)} and ws2 {tuple(ws2.shape)} must both be "
            "[N, num_ws, w_dim]"
        )
    if not 0 <= crossover <= ws.shape[1]:
        raise ValueError(f"crossover must be in [0, num_ws={ws.shape[1]}], got {crossover}")
    return torch.cat([ws[:, :crossover], ws2[:, crossover:]], dim=1)


def fade_in_reals(img: torch.Tensor, alpha: float) -> torch.Tensor:
    """Reals as D must see them while resolution R fades in (official process_reals, FadeLOD):
    lerp(upscale2d(downscale2d(img)), img, alpha), the counterpart of G's blended output."""
    if alpha >= 1:
        return img
    return torch.lerp(upscale2d(downscale2d(img)), img, alpha)


class StyleMappingNetwork(MappingNetwork):
    """The StyleGAN2 mapping network, with a default truncation cutoff for calls that pass none.

    default_truncation_cutoff None (the default) keeps MappingNetwork's meaning of a None cutoff:
    all ws. A generator loaded for sampling sets it to the official G_style default (8, or the
    value an official file records) so that `--truncation psi` alone samples as Gs.run(z, psi) does.
    """

    default_truncation_cutoff: int | None = None

    def forward(self, z, c, truncation_psi: float = 1, truncation_cutoff: int | None = None, **kwargs):
        if truncation_cutoff is None:
            truncation_cutoff = self.default_truncation_cutoff
        return super().forward(z, c, truncation_psi, truncation_cutoff, **kwargs)


class SynthesisBlock(nn.Module):
    """One resolution: (learned constant | 2x up conv) and a conv, each a StyleLayer, plus toRGB."""

    def __init__(
        self,
        in_channels: int,  # 0 = the 4x4 block (starts from the learned constant)
        out_channels: int,
        w_dim: int,
        resolution: int,
        img_channels: int,
        **layer_kwargs,  # StyleLayer: fused_scale, blur_filter, use_noise
    ):
        super().__init__()
        self.in_channels = in_channels
        self.resolution = resolution
        if in_channels == 0:
            # Ones, as the official init (rosinality: randn).
            self.const = nn.Parameter(torch.ones([out_channels, resolution, resolution]))
            self.layer0 = StyleLayer(0, out_channels, w_dim, resolution, **layer_kwargs)
        else:
            self.layer0 = StyleLayer(
                in_channels, out_channels, w_dim, resolution, up=2, **layer_kwargs
            )
        self.layer1 = StyleLayer(out_channels, out_channels, w_dim, resolution, **layer_kwargs)
        self.torgb = Conv2dLayer(out_channels, img_channels, kernel_size=1)  # linear, gain 1

    def forward(
        self, x: torch.Tensor | None, ws: torch.Tensor, noise_mode: str = "random"
    ) -> torch.Tensor:
        # x: [N, in_channels, R/2, R/2] (None for 4x4), ws: [N, 2, w_dim] -> [N, out_channels, R, R]
        if self.in_channels == 0:
            x = self.const.to(ws.dtype).unsqueeze(0).expand(ws.shape[0], -1, -1, -1)
        x = self.layer0(x, ws[:, 0], noise_mode)
        return self.layer1(x, ws[:, 1], noise_mode)


class SynthesisNetwork(nn.Module):
    """ws [N, num_ws, w_dim] -> image [N, img_channels, R, R] at the current resolution R."""

    def __init__(
        self,
        w_dim: int = 512,
        img_resolution: int = 1024,  # final resolution
        img_channels: int = 3,
        fmap_base: int = 8192,  # capacity: maps at 2^r = nf(r - 1)
        fmap_decay: float = 1.0,
        fmap_max: int = 512,
        fused_scale: bool | Literal["auto"] = "auto",  # fused up-conv ('auto': output >= 128 px)
        blur_filter: Sequence[float] | None = BLUR_FILTER,
        use_noise: bool = True,
    ):
        super().__init__()
        self.w_dim = w_dim
        self.img_resolution = check_resolution(img_resolution)
        self.img_channels = img_channels
        self.num_ws = num_ws_at(img_resolution)
        self.block_resolutions = [2**r for r in range(2, int(math.log2(img_resolution)) + 1)]
        for res in self.block_resolutions:
            r = int(math.log2(res))
            in_channels = nf(r - 2, fmap_base, fmap_decay, fmap_max) if res > 4 else 0
            block = SynthesisBlock(
                in_channels, nf(r - 1, fmap_base, fmap_decay, fmap_max), w_dim, res, img_channels,
                fused_scale=fused_scale, blur_filter=blur_filter, use_noise=use_noise,
            )
            setattr(self, f"b{res}", block)

    def forward(
        self,
        ws: torch.Tensor,  # [N, num_ws, w_dim]; ws past num_ws_at(resolution) are unused
        resolution: int | None = None,  # current resolution (None = img_resolution)
        alpha: float = 1.0,  # fade-in of `resolution`: 0 = upsampled previous output, 1 = new
        noise_mode: str = "random",
    ) -> torch.Tensor:
        if ws.ndim != 3 or ws.shape[1:] != (self.num_ws, self.w_dim):
            raise ValueError(f"ws must be [N, {self.num_ws}, {self.w_dim}], got {tuple(ws.shape)}")
        R = check_progress(resolution, alpha, self.img_resolution)
        x = None
        img_prev = None
        for i, res in enumerate(self.block_resolutions):
            if res > R:
                break
            if res == R and alpha < 1:
                img_prev = upscale2d(getattr(self, f"b{res // 2}").torgb(x))
            x = getattr(self, f"b{res}")(x, ws[:, 2 * i : 2 * i + 2], noise_mode)
        img = float32_output(getattr(self, f"b{R}").torgb(x))
        if img_prev is not None:
            img = torch.lerp(float32_output(img_prev), img, alpha)
        return img  # float32 under bf16-mixed: the losses and R1 / path-length grads see float32


class Generator(nn.Module):
    """z -> image at the current resolution: mapping network (8 fc, lr x0.01) then synthesis."""

    def __init__(
        self,
        z_dim: int = 512,
        w_dim: int = 512,
        img_resolution: int = 1024,  # final resolution
        img_channels: int = 3,
        mapping_layers: int = 8,
        mapping_lr_multiplier: float = 0.01,
        w_avg_beta: float = 0.995,  # decay of the w_avg tracking (official dlatent_avg_beta)
        **synthesis_kwargs,  # SynthesisNetwork: fmap_base, fmap_decay, fmap_max, fused_scale, ...
    ):
        super().__init__()
        self.z_dim, self.w_dim = z_dim, w_dim
        self.c_dim = 0  # unconditional, like the paper's face models
        self.img_resolution = img_resolution
        self.img_channels = img_channels
        self.synthesis = SynthesisNetwork(w_dim, img_resolution, img_channels, **synthesis_kwargs)
        self.num_ws = self.synthesis.num_ws
        self.mapping = StyleMappingNetwork(
            z_dim, 0, w_dim, num_ws=self.num_ws, num_layers=mapping_layers,
            lr_multiplier=mapping_lr_multiplier, w_avg_beta=w_avg_beta,
        )

    def forward(
        self,
        z: torch.Tensor,  # [N, z_dim]
        c: torch.Tensor | None = None,  # must be None (kept for the StyleGAN2 call signature)
        *,
        resolution: int | None = None,
        alpha: float = 1.0,
        truncation_psi: float = 1.0,  # TRUNCATION_PSI for the paper's figures
        truncation_cutoff: int | None = TRUNCATION_CUTOFF,  # None = all ws
        noise_mode: str = "random",
        update_w_avg: bool = True,
    ) -> torch.Tensor:
        if c is not None:
            raise ValueError("this StyleGAN (v1) generator is unconditional: pass c=None")
        cutoff = self.num_ws if truncation_cutoff is None else truncation_cutoff  # None: all, whatever the default
        ws = self.mapping(z, None, truncation_psi, cutoff, update_w_avg=update_w_avg)
        return self.synthesis(ws, resolution=resolution, alpha=alpha, noise_mode=noise_mode)


class DiscriminatorBlock(nn.Module):
    """One resolution R >= 8: conv 3x3, blur, conv 3x3 with 2x2 average down.

    fromrgb is used when R is the current (input) resolution, or R/2 is during its fade-in.
    """

    def __init__(
        self, in_channels: int, out_channels: int, img_channels: int,
        blur_filter: Sequence[float] | None = BLUR_FILTER,
    ):
        super().__init__()
        self.fromrgb = Conv2dLayer(img_channels, in_channels, kernel_size=1, activation="lrelu")
        self.conv0 = Conv2dLayer(in_channels, in_channels, kernel_size=3, activation="lrelu")
        self.use_blur = blur_filter is not None
        if self.use_blur:
            self.register_buffer("blur_filter", setup_filter(list(blur_filter)))
        # Box filter then strided conv = conv then 2x2 average pool = the official fused
        # conv2d_downscale2d (same kernel orientation), so one path serves every resolution.
        self.conv1 = Conv2dLayer(
            in_channels, out_channels, kernel_size=3, activation="lrelu", down=2,
            resample_filter=BOX_FILTER,
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv0(x)
        if self.use_blur:
            x = filter2d(x, self.blur_filter)
        return self.conv1(x)


class DiscriminatorEpilogue(nn.Module):
    """4x4 head: [fromRGB], minibatch stddev, conv 3x3, fc, fc -> logit [N, 1]."""

    def __init__(
        self, in_channels: int, fc_channels: int, img_channels: int,
        mbstd_group_size: int | None = 4, mbstd_num_channels: int = 1,
    ):
        super().__init__()
        self.fromrgb = Conv2dLayer(img_channels, in_channels, kernel_size=1, activation="lrelu")
        self.mbstd = None
        if mbstd_num_channels:
            self.mbstd = MinibatchStdLayer(mbstd_group_size, mbstd_num_channels)
        self.conv = Conv2dLayer(
            in_channels + mbstd_num_channels, in_channels, kernel_size=3, activation="lrelu"
        )
        self.fc = FullyConnectedLayer(in_channels * 16, fc_channels, activation="lrelu")
        self.out = FullyConnectedLayer(fc_channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = float32_output(x)
        with float32_region(x):  # the head and logits in float32 under bf16-mixed (nn/precision.py)
            if self.mbstd is not None:
                x = self.mbstd(x)
            x = self.conv(x)
            return self.out(self.fc(x.flatten(1)))


class Discriminator(nn.Module):
    """image [N, img_channels, R, R] at the current resolution R -> logit [N, 1]."""

    def __init__(
        self,
        img_resolution: int = 1024,  # final resolution
        img_channels: int = 3,
        fmap_base: int = 8192,
        fmap_decay: float = 1.0,
        fmap_max: int = 512,
        mbstd_group_size: int | None = 4,  # samples per stddev group (None = whole batch)
        mbstd_num_channels: int = 1,  # 0 = no minibatch stddev
        blur_filter: Sequence[float] | None = BLUR_FILTER,
    ):
        super().__init__()
        self.c_dim = 0
        self.img_resolution = check_resolution(img_resolution)
        self.img_channels = img_channels
        ch = lambda stage: nf(stage, fmap_base, fmap_decay, fmap_max)  # noqa: E731
        self.block_resolutions = [2**r for r in range(int(math.log2(img_resolution)), 2, -1)]
        for res in self.block_resolutions:
            r = int(math.log2(res))
            block = DiscriminatorBlock(ch(r - 1), ch(r - 2), img_channels, blur_filter)
            setattr(self, f"b{res}", block)
        self.b4 = DiscriminatorEpilogue(
            ch(1), ch(0), img_channels, mbstd_group_size, mbstd_num_channels
        )

    def forward(
        self,
        img: torch.Tensor,  # [N, img_channels, R, R]
        c: torch.Tensor | None = None,  # must be None (kept for the StyleGAN2 call signature)
        *,
        resolution: int | None = None,  # current resolution (None = the image's size)
        alpha: float = 1.0,  # fade-in of `resolution`: 0 = only the 2x downscaled image counts
    ) -> torch.Tensor:
        if c is not None:
            raise ValueError("this StyleGAN (v1) discriminator is unconditional: pass c=None")
        if img.ndim != 4 or img.shape[1] != self.img_channels or img.shape[2] != img.shape[3]:
            raise ValueError(
                f"D expects images [N, {self.img_channels}, R, R], got {tuple(img.shape)}"
            )
        if resolution is not None and resolution != img.shape[2]:
            raise ValueError(
                f"resolution={resolution} but the images are {img.shape[2]}x{img.shape[3]}: "
                "pass images at the current resolution"
            )
        R = check_progress(int(img.shape[2]), alpha, self.img_resolution)
        x = getattr(self, f"b{R}").fromrgb(img)
        for res in self.block_resolutions:
            if res > R:
                continue
            x = getattr(self, f"b{res}")(x)
            if res == R and alpha < 1:
                x = torch.lerp(getattr(self, f"b{res // 2}").fromrgb(downscale2d(img)), x, alpha)
        return self.b4(x)
