"""VGG16 convolutional trunk (Simonyan & Zisserman, ICLR 2015) as the LPIPS backbone.

Layer indices follow torchvision's `vgg16().features`, so the torchvision state dict
(`vgg16-397923af.pth`) loads directly (its `classifier.*` entries are not used). The forward
returns the five ReLU outputs LPIPS (Zhang et al., CVPR 2018) compares: relu1_2, relu2_2,
relu3_3, relu4_3, relu5_3. Written here because torchvision is not a dependency.
"""

from __future__ import annotations

import torch
from torch import nn

# Channels per conv, "M" = 2x2 max pool (torchvision's configuration "D").
_CFG = (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512)
LPIPS_TAPS = (3, 8, 15, 22, 29)  # indices in `features` of relu1_2 ... relu5_3
LPIPS_CHANNELS = (64, 128, 256, 512, 512)


class VGG16Features(nn.Module):
    """[N, 3, H, W] (ImageNet-normalised) -> list of the 5 LPIPS feature maps."""

    def __init__(self) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        cin = 3
        for v in _CFG:
            if v == "M":
                layers.append(nn.MaxPool2d(2, 2))
            else:
                layers += [nn.Conv2d(cin, v, 3, padding=1), nn.ReLU()]
                cin = v
        self.features = nn.Sequential(*layers)  # stops at relu5_3: the last pool is unused

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        taps = []
        for i, layer in enumerate(self.features):
            x = layer(x)
            if i in LPIPS_TAPS:
                taps.append(x)
        return taps

    def load_torchvision(self, state_dict: dict[str, torch.Tensor]) -> None:
        """Load a torchvision vgg16 state dict (features.* keys; classifier.* ignored)."""
        sd = {k: v for k, v in state_dict.items() if k.startswith("features.")}
        self.load_state_dict(sd, strict=True)
