"""The differentiable "bgc" augmentation pipeline of ADA (Karras et al., NeurIPS 2020, appendix B).

Blit (x-flip, 90-degree rotations, integer translation), general geometric (isotropic scale,
rotation, anisotropic scale, fractional translation) and colour (brightness, contrast, luma flip,
hue rotation, saturation) transforms, each applied per sample with probability `mult * p`.
The geometric ones are composed into one inverse 3x3 matrix per sample and executed once:
reflect pad, 2x upsample with an orthogonal wavelet filter, bilinear grid_sample, filtered 2x
downsample (appendix B.3: the low-pass pair keeps the resampling free of aliasing). The colour
ones are composed into one 4x4 matrix per sample acting on (r, g, b, 1). Every step is plain
PyTorch, so gradients (first and second order, for R1) flow from D back to the images.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from ..ops.upfirdn2d import downsample2d, setup_filter, upsample2d

# Decomposition low-pass of the symlet wavelet with 6 vanishing moments (12 taps): orthogonal,
# so upsampling with it and downsampling with its reverse is the identity on band-limited data.
SYM6 = [
    0.015404109327027373, 0.0034907120842174702, -0.11799011114819057, -0.048311742585633,
    0.4910559419267466, 0.787641141030194, 0.3379294217276218, -0.07263752278646252,
    -0.021060292512300564, 0.04472490177066578, 0.0017677118642428036, -0.007800708325034148,
]


# ---- per-sample homogeneous matrices: every argument is a [N] tensor or a float ----------------
def _matrix(rows: list[list], ref: torch.Tensor) -> torch.Tensor:
    """Rows of scalars / [N] tensors -> [N, len(rows), len(rows[0])] like `ref` ([N])."""
    elems = [e if isinstance(e, torch.Tensor) else torch.full_like(ref, float(e)) for row in rows for e in row]
    return torch.stack(elems, dim=-1).reshape(ref.shape[0], len(rows), len(rows[0]))


def translate2d(tx, ty, ref):
    return _matrix([[1, 0, tx], [0, 1, ty], [0, 0, 1]], ref)


def scale2d(sx, sy, ref):
    return _matrix([[sx, 0, 0], [0, sy, 0], [0, 0, 1]], ref)


def rotate2d(theta, ref):
    c, s = torch.cos(theta), torch.sin(theta)
    return _matrix([[c, -s, 0], [s, c, 0], [0, 0, 1]], ref)


def translate3d(t, ref):
    return _matrix([[1, 0, 0, t], [0, 1, 0, t], [0, 0, 1, t], [0, 0, 0, 1]], ref)


def scale3d(s, ref):
    return _matrix([[s, 0, 0, 0], [0, s, 0, 0], [0, 0, s, 0], [0, 0, 0, 1]], ref)


def rotate3d(axis: torch.Tensor, theta: torch.Tensor) -> torch.Tensor:
    """Rodrigues' rotation by theta [N] about the unit vector axis [3], as [N, 4, 4]."""
    x, y, z = (float(a) for a in axis)
    c, s = torch.cos(theta), torch.sin(theta)
    k = 1 - c
    return _matrix([
        [x * x * k + c, x * y * k - z * s, x * z * k + y * s, 0],
        [y * x * k + z * s, y * y * k + c, y * z * k - x * s, 0],
        [z * x * k - y * s, z * y * k + x * s, z * z * k + c, 0],
        [0, 0, 0, 1],
    ], theta)


class AugmentPipe(nn.Module):
    """images [N, C, H, W] (C = 1 or 3, any range; we use [-1, 1]) -> augmented, same shape.

    The multipliers (xflip ... saturation) scale the overall probability `p` (a buffer, so it
    is checkpointed and set by the ADA controller); defaults are the paper's "bgc" set with the
    paper's parameter distributions.
    """

    def __init__(
        self,
        xflip: float = 1, rotate90: float = 1, xint: float = 1,
        xint_max: float = 0.125,  # integer translation range, fraction of the image size
        scale: float = 1, rotate: float = 1, aniso: float = 1, xfrac: float = 1,
        scale_std: float = 0.2,  # log2 std of isotropic scaling
        rotate_max: float = 1,  # rotation range, 1 = full circle
        aniso_std: float = 0.2,  # log2 std of anisotropic scaling
        xfrac_std: float = 0.125,  # std of fractional translation, fraction of the image size
        brightness: float = 1, contrast: float = 1, lumaflip: float = 1, hue: float = 1,
        saturation: float = 1,
        brightness_std: float = 0.2,  # std of the added offset
        contrast_std: float = 0.5,  # log2 std of the contrast factor
        hue_max: float = 1,  # hue rotation range, 1 = full circle
        saturation_std: float = 1,  # log2 std of the saturation factor
        p: float = 0.0,  # overall augmentation probability
    ):
        super().__init__()
        self.xflip, self.rotate90, self.xint = float(xflip), float(rotate90), float(xint)
        self.xint_max = float(xint_max)
        self.scale, self.rotate, self.aniso, self.xfrac = float(scale), float(rotate), float(aniso), float(xfrac)
        self.scale_std, self.rotate_max = float(scale_std), float(rotate_max)
        self.aniso_std, self.xfrac_std = float(aniso_std), float(xfrac_std)
        self.brightness, self.contrast, self.lumaflip = float(brightness), float(contrast), float(lumaflip)
        self.hue, self.saturation = float(hue), float(saturation)
        self.brightness_std, self.contrast_std = float(brightness_std), float(contrast_std)
        self.hue_max, self.saturation_std = float(hue_max), float(saturation_std)
        self.register_buffer("p", torch.tensor(float(p)))
        self.register_buffer("Hz_geom", setup_filter(SYM6), persistent=False)
        taps = torch.tensor(SYM6, dtype=torch.float64)
        centroid = float((torch.arange(len(SYM6)) * taps).sum() / taps.sum())
        self.filter_delay = (centroid - (len(SYM6) - 1) / 2) / 2  # in input pixels (-0.20 for sym6)

    # ---- sampling ----------------------------------------------------------------------------
    def _on(self, mult: float, ref: torch.Tensor, prob: torch.Tensor | None = None) -> torch.Tensor:
        """[N] bool: does each sample get this transform (probability mult * p)?"""
        prob = mult * self.p if prob is None else prob
        return torch.rand_like(ref) < prob.to(ref.dtype)

    def geometric(self, ref: torch.Tensor, width: int, height: int) -> torch.Tensor | None:
        """[N, 3, 3] inverse transforms (output pixel -> input pixel, centred coordinates),
        or None when no geometric transform is enabled."""
        if not any(m > 0 for m in (self.xflip, self.rotate90, self.xint, self.scale, self.rotate,
                                   self.aniso, self.xfrac)):
            return None
        zero, one = torch.zeros_like(ref), torch.ones_like(ref)
        G = torch.eye(3, dtype=ref.dtype, device=ref.device).expand(ref.shape[0], 3, 3)
        if self.xflip > 0:
            i = torch.where(self._on(self.xflip, ref), torch.randint_like(ref, 2), zero)
            G = G @ scale2d(1 - 2 * i, one, ref)
        if self.rotate90 > 0:
            i = torch.where(self._on(self.rotate90, ref), torch.randint_like(ref, 4), zero)
            G = G @ rotate2d(math.pi / 2 * i, ref)
        if self.xint > 0:  # whole pixels, so the blit itself needs no interpolation
            on = self._on(self.xint, ref)
            tx, ty = ((torch.rand_like(ref) * 2 - 1) * self.xint_max for _ in range(2))
            G = G @ translate2d(-torch.where(on, torch.round(tx * width), zero),
                                -torch.where(on, torch.round(ty * height), zero), ref)
        if self.scale > 0:
            s = torch.where(self._on(self.scale, ref), torch.exp2(torch.randn_like(ref) * self.scale_std), one)
            G = G @ scale2d(1 / s, 1 / s, ref)
        # Rotation is applied before and after the anisotropic scale (so the stretch axis is
        # random too), each with p_rot chosen so that P(either) = rotate * p.
        p_rot = 1 - torch.sqrt((1 - self.rotate * self.p).clamp(0, 1))
        if self.rotate > 0:
            theta = (torch.rand_like(ref) * 2 - 1) * math.pi * self.rotate_max
            G = G @ rotate2d(-torch.where(self._on(0, ref, p_rot), theta, zero), ref)
        if self.aniso > 0:
            s = torch.where(self._on(self.aniso, ref), torch.exp2(torch.randn_like(ref) * self.aniso_std), one)
            G = G @ scale2d(1 / s, s, ref)
        if self.rotate > 0:
            theta = (torch.rand_like(ref) * 2 - 1) * math.pi * self.rotate_max
            G = G @ rotate2d(-torch.where(self._on(0, ref, p_rot), theta, zero), ref)
        if self.xfrac > 0:
            on = self._on(self.xfrac, ref)
            tx, ty = (torch.randn_like(ref) * self.xfrac_std for _ in range(2))
            G = G @ translate2d(-torch.where(on, tx * width, zero), -torch.where(on, ty * height, zero), ref)
        return G

    def colour(self, ref: torch.Tensor) -> torch.Tensor | None:
        """[N, 4, 4] colour matrices acting on (r, g, b, 1), or None when none is enabled."""
        if not any(m > 0 for m in (self.brightness, self.contrast, self.lumaflip, self.hue, self.saturation)):
            return None
        zero, one = torch.zeros_like(ref), torch.ones_like(ref)
        eye = torch.eye(4, dtype=ref.dtype, device=ref.device)
        C = eye.expand(ref.shape[0], 4, 4)
        v = torch.tensor([1, 1, 1, 0], dtype=ref.dtype, device=ref.device) / math.sqrt(3)  # luma axis
        vv = torch.outer(v, v)
        if self.brightness > 0:
            b = torch.where(self._on(self.brightness, ref), torch.randn_like(ref) * self.brightness_std, zero)
            C = translate3d(b, ref) @ C
        if self.contrast > 0:
            c = torch.where(self._on(self.contrast, ref), torch.exp2(torch.randn_like(ref) * self.contrast_std), one)
            C = scale3d(c, ref) @ C
        if self.lumaflip > 0:  # Householder reflection of the luma component
            i = torch.where(self._on(self.lumaflip, ref), torch.randint_like(ref, 2), zero)
            C = (eye - 2 * vv * i[:, None, None]) @ C
        if self.hue > 0:
            theta = (torch.rand_like(ref) * 2 - 1) * math.pi * self.hue_max
            C = rotate3d(v[:3], torch.where(self._on(self.hue, ref), theta, zero)) @ C
        if self.saturation > 0:  # scale the chroma (the part orthogonal to the luma axis)
            s = torch.exp2(torch.randn_like(ref) * self.saturation_std)
            s = torch.where(self._on(self.saturation, ref), s, one)
            C = (vv + (eye - vv) * s[:, None, None]) @ C
        return C

    # ---- execution ---------------------------------------------------------------------------
    def forward(self, images: torch.Tensor) -> torch.Tensor:
        if images.ndim != 4 or images.shape[1] not in (1, 3):
            raise ValueError(f"AugmentPipe expects images [N, 1 or 3, H, W], got {tuple(images.shape)}")
        # p == 0 returns the input itself: exact, and no resampling cost before ADA kicks in.
        if float(self.p) <= 0:
            return images
        N, C, H, W = images.shape
        ref = torch.zeros([N], dtype=images.dtype, device=images.device)
        G_inv = self.geometric(ref, W, H)
        if G_inv is not None:
            images = self.resample(images, G_inv)
        M = self.colour(ref)
        if M is not None:
            flat = images.reshape(N, C, H * W)
            if C == 3:
                flat = M[:, :3, :3] @ flat + M[:, :3, 3:]
            else:  # grey: the mean of the RGB rows acting on (l, l, l, 1)
                m = M[:, :3, :].mean(dim=1, keepdim=True)
                flat = flat * m[:, :, :3].sum(dim=2, keepdim=True) + m[:, :, 3:]
            images = flat.reshape(N, C, H, W)
        return images

    def resample(self, images: torch.Tensor, G_inv: torch.Tensor) -> torch.Tensor:
        """Warp images [N, C, H, W] by the inverse transforms G_inv [N, 3, 3] (centred pixels)."""
        N, C, H, W = images.shape
        q = self.Hz_geom.shape[0] // 4  # filter support in input pixels, per side
        cx, cy = (W - 1) / 2, (H - 1) / 2
        corners = torch.tensor([[-cx, -cy, 1], [cx, -cy, 1], [cx, cy, 1], [-cx, cy, 1]],
                               dtype=images.dtype, device=images.device)
        src = (G_inv @ corners.t())[:, :2, :]  # where the output corners come from [N, xy, 4]
        # Reflect-pad each side by how far the sources reach past the image, plus the filter's
        # reach, at most size-1 (reflect's limit; beyond it grid_sample reads zeros).
        lo = (-src.amin(dim=(0, 2)) - torch.tensor([cx, cy], dtype=src.dtype, device=src.device) + 2 * q)
        hi = (src.amax(dim=(0, 2)) - torch.tensor([cx, cy], dtype=src.dtype, device=src.device) + 2 * q)
        limit = torch.tensor([W - 1, H - 1], dtype=src.dtype, device=src.device)
        pad = torch.cat([lo, hi]).clamp_min(0).minimum(torch.cat([limit, limit])).ceil().long().tolist()
        px0, py0, px1, py1 = pad
        images = F.pad(images, [px0, px1, py0, py1], mode="reflect")
        Hp, Wp = images.shape[2:]
        # The old centre sits at ((px0 - px1) / 2, (py0 - py1) / 2) in the padded image's centred frame.
        G_inv = translate2d((px0 - px1) / 2, (py0 - py1) / 2, G_inv[:, 0, 0]) @ G_inv
        images = upsample2d(images, self.Hz_geom, up=2)
        # The asymmetric filter delays the 2x content by its centroid's offset from its middle;
        # conjugating by that shift keeps the transforms centred (so an x-flip matches
        # Tensor.flip; up and down delays cancel, so the identity stays exact either way).
        ref = G_inv[:, 0, 0]
        d = self.filter_delay
        G_inv = translate2d(d, d, ref) @ G_inv @ translate2d(-d, -d, ref)
        # Sample a 2x canvas of the output plus q pixels per side for the downsampling filter.
        # With align_corners=False a centred pixel coordinate u maps to 2u / size on [-1, 1].
        theta = scale2d(2 / Wp, 2 / Hp, ref) @ G_inv @ scale2d((W + 2 * q) / 2, (H + 2 * q) / 2, ref)
        shape = [N, C, 2 * (H + 2 * q), 2 * (W + 2 * q)]
        grid = F.affine_grid(theta[:, :2, :], shape, align_corners=False)
        images = F.grid_sample(images, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
        return downsample2d(images, self.Hz_geom, down=2, padding=-2 * q, flip_filter=True)
