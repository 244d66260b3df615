"""Perceptual path length (Karras et al., StyleGAN, CVPR 2019; as in StyleGAN2-ADA's ppl metrics).

    PPL = E[ d(G(l(t)), G(l(t + eps))) / eps^2 ],  eps = 1e-4

with l the interpolation between two random latents: slerp of z (on the unit sphere) for space
"z", lerp of w = mapping(z) for space "w"; t = 0 for sampling "end" (ppl_zend / ppl_wend) or
t ~ U(0, 1) for "full". d is LPIPS by default. Like the paper, images are cropped to the face
(rows 3/8..7/8, columns 2/8..6/8 of a square image) and box-downsampled by
resolution // 256 when larger than 256 px, and the mean excludes samples below the 1st and
above the 99th percentile.
"""

from __future__ import annotations

import os
from collections.abc import Callable

import numpy as np
import torch

from ..pretrained.lpips import load_lpips
from ..progress import bar

Distance = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def slerp(a: torch.Tensor, b: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """Spherical interpolation of the directions of a, b [N, D] at t [N, 1]; unit-norm output."""
    a = a / a.norm(dim=-1, keepdim=True)
    b = b / b.norm(dim=-1, keepdim=True)
    d = (a * b).sum(dim=-1, keepdim=True)
    p = t * torch.acos(d.clamp(-1.0, 1.0))
    c = b - d * a
    c = c / c.norm(dim=-1, keepdim=True)
    out = a * torch.cos(p) + c * torch.sin(p)
    return out / out.norm(dim=-1, keepdim=True)


def crop_face(images: torch.Tensor) -> torch.Tensor:
    """The face region of an aligned square portrait [N, C, R, R], as in the StyleGAN paper."""
    if images.shape[2] != images.shape[3]:
        raise ValueError(f"face crop needs square images, got {tuple(images.shape)}")
    c = images.shape[2] // 8
    return images[:, :, c * 3 : c * 7, c * 2 : c * 6]


def path_length_samples(
    G: Callable[[torch.Tensor], torch.Tensor],
    z_dim: int,
    num_samples: int,
    *,
    space: str = "w",
    mapping: Callable[[torch.Tensor], torch.Tensor] | None = None,
    distance: Distance,
    batch_size: int = 32,
    epsilon: float = 1e-4,
    sampling: str = "end",
    crop: bool = True,
    seed: int = 0,
    device: torch.device | str = "cpu",
) -> np.ndarray:
    """Per-sample d / eps^2 [num_samples] (float64); see `perceptual_path_length`."""
    if space not in ("z", "w") or sampling not in ("end", "full"):
        raise ValueError(f"space must be 'z' or 'w' and sampling 'end' or 'full', "
                         f"got {space!r}, {sampling!r}")
    if space == "w" and mapping is None:
        raise ValueError("space='w' needs mapping (z -> w); G then maps w -> images")
    gen = torch.Generator().manual_seed(seed)  # CPU generator: same samples on any device
    out = []
    with torch.no_grad(), bar(num_samples, "ppl") as progress:
        for start in range(0, num_samples, batch_size):
            progress.update(min(batch_size, num_samples - start))
            n = min(batch_size, num_samples - start)
            z0, z1 = torch.randn([2, n, z_dim], generator=gen).to(device)
            t = torch.rand([n], generator=gen).to(device) * (1.0 if sampling == "full" else 0.0)
            if space == "w":
                w0, w1 = mapping(torch.cat([z0, z1])).chunk(2)
                tw = t.view(-1, *[1] * (w0.ndim - 1))
                lat = torch.cat([w0.lerp(w1, tw), w0.lerp(w1, tw + epsilon)])
            else:
                lat = torch.cat([slerp(z0, z1, t[:, None]), slerp(z0, z1, t[:, None] + epsilon)])
            img = G(lat)
            if img.ndim != 4:
                raise ValueError(f"G must return [N, C, H, W] images, got {tuple(img.shape)}")
            factor = img.shape[2] // 256  # from the full resolution, before the crop (as ADA)
            if crop:
                img = crop_face(img)
            if factor > 1:
                n2, c, h, w = img.shape
                img = img.reshape(n2, c, h // factor, factor, w // factor, factor).mean([3, 5])
            if img.shape[1] == 1:
                img = img.repeat(1, 3, 1, 1)
            d0, d1 = img.chunk(2)
            out.append((distance(d0, d1).double() / epsilon**2).cpu())
    return torch.cat(out).numpy()


def perceptual_path_length(
    G: Callable[[torch.Tensor], torch.Tensor],     # z or w [N, ...] -> images [N, C, H, W]
    z_dim: int,
    num_samples: int = 100_000,
    *,
    space: str = "w",                               # "z": G maps z; "w": G maps w
    mapping: Callable[[torch.Tensor], torch.Tensor] | None = None,  # z -> w, for space "w"
    distance: Distance | None = None,               # None: LPIPS from vgg16_weights
    vgg16_weights: str | os.PathLike | None = None,  # else $LG_VGG16_WEIGHTS
    batch_size: int = 32,
    epsilon: float = 1e-4,
    sampling: str = "end",                          # "end": t = 0; "full": t ~ U(0, 1)
    crop: bool = True,                              # crop to the face (aligned portraits)
    seed: int = 0,
    device: torch.device | str = "cpu",
) -> float:
    """PPL: mean of d / eps^2 over the samples between the 1st and 99th percentiles."""
    if distance is None:
        distance = load_lpips(vgg16_weights, device=device, metric=f"PPL ({space}, {sampling})")
    dist = path_length_samples(
        G, z_dim, num_samples, space=space, mapping=mapping, distance=distance,
        batch_size=batch_size, epsilon=epsilon, sampling=sampling, crop=crop, seed=seed,
        device=device)
    lo = np.percentile(dist, 1, method="lower")
    hi = np.percentile(dist, 99, method="higher")
    return float(dist[(dist >= lo) & (dist <= hi)].mean())
