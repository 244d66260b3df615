"""LPIPS perceptual distance (Zhang et al., CVPR 2018), VGG16 variant v0.1, from weight files.

    d(x0, x1) = sum_l mean_hw sum_c w_lc (f0_lchw - f1_lchw)^2

with f the channel-wise unit-normalised VGG16 activations (relu1_2 ... relu5_3) and w >= 0 the
learned linear layers. Because w >= 0, d is the squared Euclidean distance between embeddings
sqrt(w_lc / (H_l W_l)) * f_lchw (`LPIPS.embed`); this is also how StyleGAN2-ADA's TorchScript
`vgg16.pt` exposes LPIPS (`return_lpips=True`), so both backbones share one interface.

Backbones: a torchvision-format VGG16 state dict (+ the `lpips` wheel's `weights/v0.1/vgg.pth`
linear layers), or StyleGAN2-ADA's `vgg16.pt` (TorchScript that holds its own LPIPS layers).
The two give close but not bit-identical distances. Images are [N, 3, H, W] in [-1, 1].
"""

from __future__ import annotations

import os

import torch
from torch import nn

from ..errors import LGError
from .vgg import LPIPS_CHANNELS, VGG16Features
from .weights import (
    file_hash,
    is_torchscript,
    load_state_dict,
    load_torchscript,
    resolve_lpips_weights,
    resolve_vgg16_weights,
)

# LPIPS's input scaling layer: [-1, 1] images -> ImageNet-normalised (same constants as lpips).
_SHIFT = (-0.030, -0.088, -0.188)
_SCALE = (0.458, 0.448, 0.450)


class LPIPS(nn.Module):
    """LPIPS distance [N] between image batches [N, 3, H, W] in [-1, 1]."""

    def __init__(
        self,
        backbone: nn.Module,                  # VGG16Features, or the ADA vgg16.pt ScriptModule
        lin: list[torch.Tensor] | None,       # per-layer weights [C_l] >= 0; None for vgg16.pt
        kind: str,                            # "torchvision+lpips" | "stylegan2-ada"
        identity: str,                        # file hashes, for reports and cache keys
    ) -> None:
        super().__init__()
        self.backbone = backbone
        self.kind = kind
        self.identity = identity
        if lin is not None:
            for i, w in enumerate(lin):
                self.register_buffer(f"lin{i}", w.reshape(-1).float())
        self.register_buffer("shift", torch.tensor(_SHIFT).view(1, 3, 1, 1))
        self.register_buffer("scale", torch.tensor(_SCALE).view(1, 3, 1, 1))

    def embed(self, images: torch.Tensor) -> torch.Tensor:
        """[N, 3, H, W] in [-1, 1] -> [N, F]; LPIPS = squared distance of embeddings.

        Differentiable w.r.t. the images (projection optimizes through it); metrics call it
        under torch.no_grad()."""
        if images.ndim != 4 or images.shape[1] != 3:
            raise ValueError(f"expected [N, 3, H, W] images, got {tuple(images.shape)}")
        x = images.to(self.shift.device, torch.float32)
        if self.kind == "stylegan2-ada":
            return self.backbone((x + 1) * 127.5, resize_images=False, return_lpips=True)
        parts = []
        for i, f in enumerate(self.backbone((x - self.shift) / self.scale)):
            f = f / (f.square().sum(1, keepdim=True).sqrt() + 1e-10)  # lpips' normalize_tensor
            w = getattr(self, f"lin{i}")
            h, wd = f.shape[2:]
            parts.append((f * (w / (h * wd)).sqrt().view(1, -1, 1, 1)).flatten(1))
        return torch.cat(parts, 1)

    def forward(self, x0: torch.Tensor, x1: torch.Tensor) -> torch.Tensor:
        return (self.embed(x0) - self.embed(x1)).square().sum(1)


def _load_lin(path: os.PathLike, metric: str) -> list[torch.Tensor]:
    sd = load_state_dict(path, metric)
    lin = []
    for i, c in enumerate(LPIPS_CHANNELS):
        key = next((k for k in (f"lin{i}.model.1.weight", f"lin{i}.model.weight") if k in sd),
                   None)
        if key is None or sd[key].numel() != c:
            raise LGError(f"{metric}: {path} is not the lpips v0.1 VGG linear-layer file "
                          f"(lin{i} with {c} weights missing)")
        if (sd[key] < 0).any():  # lpips clamps these to >= 0 in training; embed() relies on it
            raise LGError(f"{metric}: {path} has negative LPIPS weights in lin{i}")
        lin.append(sd[key])
    return lin


def load_lpips(
    vgg16_weights: str | os.PathLike | None = None,
    lpips_weights: str | os.PathLike | None = None,
    device: torch.device | str = "cpu",
    metric: str = "LPIPS",
) -> LPIPS:
    """LPIPS from a VGG16 file (`vgg16_weights` or $LG_VGG16_WEIGHTS), recognised by format."""
    path = resolve_vgg16_weights(vgg16_weights, metric)
    if is_torchscript(path):
        net = load_torchscript(path)
        if "return_lpips" not in [a.name for a in net.forward.schema.arguments]:
            raise LGError(f"{metric}: {path} is TorchScript but not StyleGAN2-ADA's vgg16.pt "
                          "(its forward has no return_lpips argument)")
        for p in net.parameters():
            p.requires_grad_(False)
        model = LPIPS(net, None, "stylegan2-ada", f"lpips/stylegan2-ada/{file_hash(path)}")
    else:
        sd = load_state_dict(path, metric)
        if "features.0.weight" not in sd:
            raise LGError(f"{metric}: {path} is a state dict but not torchvision's vgg16 "
                          "(no features.0.weight)")
        vgg = VGG16Features()
        vgg.load_torchvision(sd)
        vgg.requires_grad_(False)
        lin_path = resolve_lpips_weights(lpips_weights, metric)
        ident = f"lpips/torchvision+lpips/{file_hash(path)}/{file_hash(lin_path)}"
        model = LPIPS(vgg, _load_lin(lin_path, metric), "torchvision+lpips", ident)
    return model.eval().to(device)
