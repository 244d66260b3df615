"""StarGAN v2 networks (Choi et al., CVPR 2020): generator, mapping network, style encoder, D.

Layer layout, widths and parameter/buffer names follow the published configuration of
clovaai/stargan-v2, so the `generator` / `mapping_network` / `style_encoder` / `discriminator`
state dicts of its checkpoints load with `load_state_dict(strict=True)`. Images are [-1, 1] NCHW;
domain labels y are int64 [N] in [0, num_domains); style codes s are [N, style_dim].
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from lightning_gans.models.stargan_v2_blocks import LRELU_SLOPE, AdainResBlk, HighPass, ResBlk
from lightning_gans.nn.precision import float32_output, refuse_float16_autocast

__all__ = [
    "Generator",
    "MappingNetwork",
    "StyleEncoder",
    "Discriminator",
    "build_networks",
    "he_init_",
    "NETWORK_NAMES",
    "build_network",
]

NETWORK_NAMES = ("generator", "mapping_network", "style_encoder", "discriminator")
HIDDEN_DIM = 512  # mapping network width; fixed in the published code (not a constructor argument)


def _base_width(img_size: int) -> int:
    """Channels after from_rgb: 2**14 // img_size (64 at 256 px), so the top level stays cheap."""
    if img_size < 16 or img_size & (img_size - 1):
        raise ValueError(f"img_size must be a power of two >= 16, got {img_size}")
    return 2**14 // img_size


def _check_image(name: str, x: torch.Tensor, img_size: int) -> None:
    if x.ndim != 4 or x.shape[1] != 3 or tuple(x.shape[2:]) != (img_size, img_size):
        raise ValueError(
            f"{name}: expected images [N, 3, {img_size}, {img_size}], got {list(x.shape)}; "
            f"resize the input or build the network with img_size={x.shape[-1]}"
        )


def _check_labels(name: str, y: torch.Tensor, batch: int) -> None:
    if y.shape != (batch,) or y.dtype not in (torch.int64, torch.int32):
        raise ValueError(
            f"{name}: expected domain labels y as an int64 tensor [{batch}], "
            f"got {y.dtype} {list(y.shape)}"
        )


def _select_domain(out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """out [N, num_domains, ...], y [N] -> out[i, y[i]] for each sample i."""
    return out[torch.arange(out.shape[0], device=out.device), y]


class Generator(nn.Module):
    """G(x, s): translate source images x [N,3,R,R] to the style s [N,style_dim] -> [N,3,R,R].

    Encoder of InstanceNorm residual blocks with average-pool downsampling, 2 bottleneck blocks,
    decoder of AdaIN residual blocks with nearest upsampling. With w_hpf > 0 the generator has
    one more down/up level, its decoder blocks have no shortcut, and encoder features at 32, 64
    and 128 px, masked by face-landmark heatmaps and high-pass filtered, are added in the decoder.
    """

    hpf_resolutions = (32, 64, 128)  # absolute sizes, as published (independent of img_size)

    def __init__(
        self,
        img_size: int = 256,      # output resolution R (power of two)
        style_dim: int = 64,      # style code size
        max_conv_dim: int = 512,  # channel cap; widths double per level from 2**14 // img_size
        w_hpf: float = 1,         # high-pass skip strength; 0 disables the skips (and the masks)
        dim_in: int | None = None,  # channels after from_rgb; None = 2**14 // img_size (published)
    ) -> None:
        super().__init__()
        if w_hpf < 0:
            raise ValueError(f"w_hpf must be >= 0, got {w_hpf}")
        dim_in = dim_in or _base_width(img_size)
        self.img_size = img_size
        self.style_dim = style_dim
        self.max_conv_dim = max_conv_dim
        self.w_hpf = w_hpf
        self.from_rgb = nn.Conv2d(3, dim_in, 3, 1, 1)
        self.encode = nn.ModuleList()
        self.decode = nn.ModuleList()
        self.to_rgb = nn.Sequential(
            nn.InstanceNorm2d(dim_in, affine=True),
            nn.LeakyReLU(LRELU_SLOPE),
            nn.Conv2d(dim_in, 3, 1, 1, 0),
        )

        # Down to 16 px (8 px with the high-pass skips); the decoder mirrors the encoder.
        num_levels = img_size.bit_length() - 1 - 4 + (1 if w_hpf > 0 else 0)
        dim_out = dim_in
        for _ in range(num_levels):
            dim_out = min(dim_in * 2, max_conv_dim)
            self.encode.append(ResBlk(dim_in, dim_out, normalize=True, downsample=True))
            self.decode.insert(0, AdainResBlk(dim_out, dim_in, style_dim, w_hpf, upsample=True))
            dim_in = dim_out
        for _ in range(2):  # bottleneck
            self.encode.append(ResBlk(dim_out, dim_out, normalize=True))
            self.decode.insert(0, AdainResBlk(dim_out, dim_out, style_dim, w_hpf))

        if w_hpf > 0:
            self.hpf = HighPass(w_hpf)

    def forward(
        self,
        x: torch.Tensor,
        s: torch.Tensor,
        masks: Sequence[torch.Tensor] | None = None,
    ) -> torch.Tensor:
        """x [N,3,R,R], s [N,style_dim], masks (w_hpf > 0 only): two heatmaps [N,1,h,w] in
        [0, 1] (FAN `get_heatmap` order: masks[0] for 32 px, masks[1] for 64 and 128 px;
        resized bilinearly). Returns [N,3,R,R], not clamped.
        """
        _check_image("Generator x", x, self.img_size)
        if self.training:
            refuse_float16_autocast(x)
        n = x.shape[0]
        if s.shape != (n, self.style_dim):
            raise ValueError(f"Generator s: expected [{n}, {self.style_dim}], got {list(s.shape)}")
        if self.w_hpf > 0:
            self._check_masks(masks, n)
        elif masks is not None:
            raise ValueError("Generator: masks given but w_hpf == 0; pass masks=None")

        x = self.from_rgb(x)
        cache: dict[int, torch.Tensor] = {}
        for block in self.encode:
            if self.w_hpf > 0 and x.shape[2] in self.hpf_resolutions:
                cache[x.shape[2]] = x  # encoder input at this size = decoder output's size
            x = block(x)
        for block in self.decode:
            x = block(x, s)
            size = x.shape[2]
            if self.w_hpf > 0 and size in self.hpf_resolutions:
                # Only facial regions pass: masks[0] (with the face line and mouth) at the
                # coarsest skip, masks[1] (eyes/nose region) at the finer ones.
                mask = masks[0] if size == self.hpf_resolutions[0] else masks[1]
                mask = F.interpolate(mask, size=size, mode="bilinear", align_corners=False)
                x = x + self.hpf(mask * cache[size])
        return float32_output(self.to_rgb(x))  # float32 images under bf16-mixed too

    @staticmethod
    def _check_masks(masks: Sequence[torch.Tensor] | None, n: int) -> None:
        # The official generator silently skips the skips when masks is None, but its decoder
        # blocks have no shortcut then, so the output loses the identity: we refuse instead.
        if masks is None:
            raise ValueError(
                "Generator: w_hpf > 0 needs masks=(heatmap, heatmap2) from the face-landmark "
                "network (FAN get_heatmap of x); pass them, or build the generator with w_hpf=0"
            )
        if len(masks) != 2 or any(m.ndim != 4 or m.shape[:2] != (n, 1) for m in masks):
            shapes = [list(m.shape) for m in masks]
            raise ValueError(f"Generator masks: expected two tensors [{n}, 1, H, W], got {shapes}")

    def extra_repr(self) -> str:
        return f"img_size={self.img_size}, style_dim={self.style_dim}, w_hpf={self.w_hpf}"


class MappingNetwork(nn.Module):
    """F_y(z): latent z [N, latent_dim] and domain y [N] -> style s [N, style_dim].

    A shared 4-layer ReLU MLP (latent_dim -> 512) and one 4-layer head (512 -> style_dim) per
    domain; each sample takes the head of its own domain.
    """

    def __init__(
        self,
        latent_dim: int = 16,   # z size
        style_dim: int = 64,    # style code size
        num_domains: int = 2,   # one output head each
    ) -> None:
        super().__init__()
        self.latent_dim = latent_dim
        self.style_dim = style_dim
        self.num_domains = num_domains
        layers: list[nn.Module] = [nn.Linear(latent_dim, HIDDEN_DIM), nn.ReLU()]
        for _ in range(3):
            layers += [nn.Linear(HIDDEN_DIM, HIDDEN_DIM), nn.ReLU()]
        self.shared = nn.Sequential(*layers)
        self.unshared = nn.ModuleList(
            nn.Sequential(
                nn.Linear(HIDDEN_DIM, HIDDEN_DIM), nn.ReLU(),
                nn.Linear(HIDDEN_DIM, HIDDEN_DIM), nn.ReLU(),
                nn.Linear(HIDDEN_DIM, HIDDEN_DIM), nn.ReLU(),
                nn.Linear(HIDDEN_DIM, style_dim),
            )
            for _ in range(num_domains)
        )

    def forward(self, z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        if z.ndim != 2 or z.shape[1] != self.latent_dim:
            raise ValueError(
                f"MappingNetwork z: expected [N, {self.latent_dim}], got {list(z.shape)}"
            )
        _check_labels("MappingNetwork y", y, z.shape[0])
        h = self.shared(z)
        # All heads on the whole batch (tiny MLPs), then one gather: simpler than grouping by y.
        out = torch.stack([head(h) for head in self.unshared], dim=1)  # [N, D, style_dim]
        return float32_output(_select_domain(out, y))


class _ConvTrunk(nn.Sequential):
    """Shared trunk of E and D: conv, log2(R)-2 downsampling ResBlks to 4 px, lrelu, 4x4 conv
    to 1 px, lrelu. Indices match the official `shared` / `main` Sequentials."""

    def __init__(self, img_size: int, max_conv_dim: int, dim_in: int | None = None) -> None:
        dim_in = dim_in or _base_width(img_size)
        blocks: list[nn.Module] = [nn.Conv2d(3, dim_in, 3, 1, 1)]
        dim_out = dim_in
        for _ in range(img_size.bit_length() - 1 - 2):
            dim_out = min(dim_in * 2, max_conv_dim)
            blocks.append(ResBlk(dim_in, dim_out, downsample=True))
            dim_in = dim_out
        blocks += [
            nn.LeakyReLU(LRELU_SLOPE),
            nn.Conv2d(dim_out, dim_out, 4, 1, 0),
            nn.LeakyReLU(LRELU_SLOPE),
        ]
        super().__init__(*blocks)
        self.out_dim = dim_out


class StyleEncoder(nn.Module):
    """E_y(x): image x [N,3,R,R] and domain y [N] -> style s [N, style_dim].

    Shared conv trunk down to a [N, C] feature, one linear head per domain.
    """

    def __init__(
        self,
        img_size: int = 256,      # input resolution R
        style_dim: int = 64,      # style code size
        num_domains: int = 2,     # one output head each
        max_conv_dim: int = 512,  # channel cap
        dim_in: int | None = None,  # channels of the first conv; None = 2**14 // img_size (published)
    ) -> None:
        super().__init__()
        self.img_size = img_size
        self.style_dim = style_dim
        self.num_domains = num_domains
        self.shared = _ConvTrunk(img_size, max_conv_dim, dim_in)
        dim = self.shared.out_dim
        self.unshared = nn.ModuleList(nn.Linear(dim, style_dim) for _ in range(num_domains))

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        _check_image("StyleEncoder x", x, self.img_size)
        _check_labels("StyleEncoder y", y, x.shape[0])
        h = self.shared(x).flatten(1)  # [N, C, 1, 1] -> [N, C]
        out = torch.stack([head(h) for head in self.unshared], dim=1)  # [N, D, style_dim]
        return float32_output(_select_domain(out, y))


class Discriminator(nn.Module):
    """D_y(x): image x [N,3,R,R] and domain y [N] -> real/fake logit of domain y, [N].

    The same trunk as the style encoder, then a 1x1 conv to one logit per domain.
    """

    def __init__(
        self,
        img_size: int = 256,      # input resolution R
        num_domains: int = 2,     # one logit each
        max_conv_dim: int = 512,  # channel cap
        dim_in: int | None = None,  # channels of the first conv; None = 2**14 // img_size (published)
    ) -> None:
        super().__init__()
        self.img_size = img_size
        self.num_domains = num_domains
        self.main = _ConvTrunk(img_size, max_conv_dim, dim_in)
        self.main.append(nn.Conv2d(self.main.out_dim, num_domains, 1, 1, 0))

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        _check_image("Discriminator x", x, self.img_size)
        _check_labels("Discriminator y", y, x.shape[0])
        if self.training:
            refuse_float16_autocast(x)
        out = self.main(x).flatten(1)  # [N, num_domains]
        return float32_output(_select_domain(out, y))  # float32 logits: the losses reduce them


@torch.no_grad()
def he_init_(module: nn.Module) -> nn.Module:
    """The official training init, in place: Kaiming-normal (fan_in, ReLU gain) weights and zero
    biases for every Conv2d and Linear; InstanceNorm affine parameters keep (1, 0)."""
    for m in module.modules():
        if isinstance(m, nn.Conv2d | nn.Linear):
            nn.init.kaiming_normal_(m.weight, mode="fan_in", nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
    return module


def build_network(
    name: str,
    img_size: int = 256,
    style_dim: int = 64,
    latent_dim: int = 16,
    num_domains: int = 2,
    w_hpf: float = 1,
    max_conv_dim: int = 512,
    dim_in: int | None = None,
) -> nn.Module:
    """One of the four networks (a NETWORK_NAMES key), default-initialized, without the others."""
    if name == "generator":
        return Generator(img_size, style_dim, max_conv_dim, w_hpf, dim_in)
    if name == "mapping_network":
        return MappingNetwork(latent_dim, style_dim, num_domains)
    if name == "style_encoder":
        return StyleEncoder(img_size, style_dim, num_domains, max_conv_dim, dim_in)
    if name == "discriminator":
        return Discriminator(img_size, num_domains, max_conv_dim, dim_in)
    raise ValueError(f"unknown StarGAN v2 network {name!r}; one of {NETWORK_NAMES}")


def build_networks(*sizes, he_init: bool = True, **named_sizes) -> dict[str, nn.Module]:
    """The four trained networks, keyed by their official checkpoint names (NETWORK_NAMES); the
    sizes are build_network's (img_size, style_dim, latent_dim, num_domains, w_hpf, max_conv_dim,
    dim_in), positional or named.

    he_init=True applies the official training init (`he_init_`); the official trainer takes
    its EMA copies *before* that init, so its EMA nets start from PyTorch's default init.
    """
    nets = {name: build_network(name, *sizes, **named_sizes) for name in NETWORK_NAMES}
    if he_init:
        for net in nets.values():
            he_init_(net)
    return nets
