"""Face-landmark heatmap network (FAN) and the StarGAN v2 face masks made from its heatmaps.

StarGAN v2 (Choi et al., CVPR 2020) with high-pass skips (w_hpf > 0, the CelebA-HQ model) lets
encoder features through to the decoder only where a face-landmark heatmap says there is a face
part: `FAN.masks(x)` gives the generator's `masks=(mask, mask2)` for source images x.

Architecture (our code, from the papers): a stacked-hourglass face alignment network, one stack,
as in "Adaptive Wing Loss for Robust Face Alignment via Heatmap Regression" (Wang, Bo, Fuxin;
ICCV 2019): a CoordConv stem (7x7, stride 2, with x/y/radius coordinate channels; Liu et al.
2018), the hierarchical, parallel multi-scale residual blocks of FAN (Bulat & Tzimiropoulos,
ICCV 2017: three chained 3x3 convs of C/2, C/4, C/4 channels, concatenated, plus the shortcut),
an hourglass (Newell et al. 2016) with average-pool down / nearest up and a CoordConv at its
input, and a 1x1 head to 98 WFLW landmark heatmaps plus one boundary heatmap at 64 x 64 px.

Facts taken from the official clovaai/stargan-v2 code (core/wing.py, core/model.py,
core/solver.py, core/utils.py, core/checkpoint.py; CC BY-NC 4.0, read for facts only, no code
copied):
- module and parameter names (`conv1.conv`, `bn1`, `conv2..conv4`, `m0` with `coordconv.conv`,
  `b1_<level>`, `b2_<level>`, `b2_plus_1`, `b3_<level>`, `top_m_0`, `conv_last0`, `bn_end0`,
  `l0`; block parts `bn1..3`, `conv1..3`, `downsample.{0,2}`), widths 64/128/128/256, hourglass
  depth 4, bias-free 3x3 block convs, and that the hourglass CoordConv adds no boundary channels
  (the one-stack network never feeds a heatmap back), so the published `wing.ckpt` state dict
  loads by name;
- `wing.ckpt` is a torch.save'd dict whose 'state_dict' entry holds those weights (its loader
  takes only the keys the network has); official {step}_nets(_ema).ckpt files of w_hpf > 0
  models hold the same weights under 'fan';
- coordinate channels: row and column coordinates in [-1, 1] (i / (size - 1) * 2 - 1), then the
  radius sqrt(row^2 + col^2) divided by its maximum, appended after the input channels;
- preprocessing (`get_heatmap`): images in [-1, 1] resized bilinearly (align_corners=False) to
  256 x 256, mapped to [0, 1], the boundary channel dropped, the 64-px heatmaps upsampled x4
  bilinearly with align_corners=True; no gradients;
- mask recipe (`preprocess`): zero values below 0.1, min-max normalise each heatmap (eps 1e-6);
  per landmark group a vertical circular shift (pixels at 256 px) and a power: jaw 8:25 (0, 3),
  eyebrows 33:51 (7 down, 2), nostrils 55:60 (8 up, 4), upper lip 77:82 (8 down, 4), lower lip
  83:88 (8 up, 4), inner lip 88:96 (2 down, 3); zero the outer jaw 0:8 and 25:33 and points 33,
  46, 76, 82; nose 52:55 shifted 4 up; eyes 60:76 become shift(8 down)^3 + shift(24 down)
  (absolute pixels); mask = channel sum, mask2 = the same sum without jaw 8:25, mouth 76:96 and
  eyebrows 33:51; NaN -> 0 and clamped to [0, 1];
- the generator uses mask at 32 px and mask2 at 64 and 128 px (see models/stargan_v2.py), and
  the solver computes the masks of the real sources once per iteration for the D and G steps,
  and those of the translated image for the cycle reconstruction; the FAN is never trained,
  not He-initialised, and shared by the trained and EMA networks.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..errors import CheckpointError
from ..pretrained.weights import FAN_ENV, FAN_SOURCE, MissingFANWeightsError

__all__ = [
    "FAN",
    "MissingFANWeightsError",
    "landmark_masks",
    "kept_masks",
    "FAN_ENV",
    "FAN_SOURCE",
    "NUM_LANDMARKS",
]

NUM_LANDMARKS = 98      # WFLW landmark layout; the mask recipe indexes it
INPUT_SIZE = 256        # the network sees 256 x 256 images; heatmaps are 64 x 64
# ---- network ---------------------------------------------------------------------------------

def coord_channels(x: torch.Tensor, with_r: bool = True) -> torch.Tensor:
    """[N, 2 (+1), H, W]: row and column coordinates in [-1, 1] (and the radius scaled to a
    maximum of 1), in x's dtype and device."""
    n, _, h, w = x.shape
    rows = torch.arange(h, device=x.device, dtype=torch.float32) / (h - 1) * 2 - 1
    cols = torch.arange(w, device=x.device, dtype=torch.float32) / (w - 1) * 2 - 1
    maps = [rows[:, None].expand(h, w), cols[None, :].expand(h, w)]
    if with_r:
        radius = torch.sqrt(maps[0] ** 2 + maps[1] ** 2)
        maps.append(radius / radius.max())
    return torch.stack(maps).to(x.dtype).unsqueeze(0).expand(n, -1, -1, -1)


class CoordConv(nn.Module):
    """Conv2d over the input with coordinate channels (row, column, radius) appended."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int = 1,
                 padding: int = 0) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels + 3, out_channels, kernel_size, stride, padding)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(torch.cat([x, coord_channels(x)], dim=1))


class MultiScaleBlock(nn.Module):
    """FAN's residual block: BN-ReLU-conv3x3 three times in a chain (C/2, C/4, C/4 channels),
    the three outputs concatenated to C and added to the input (BN-ReLU-1x1 conv if the width
    changes). [N, cin, H, W] -> [N, cout, H, W]."""

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        if cout % 4:
            raise ValueError(f"MultiScaleBlock: cout must be divisible by 4, got {cout}")
        half, quarter = cout // 2, cout // 4
        self.bn1 = nn.BatchNorm2d(cin)
        self.conv1 = nn.Conv2d(cin, half, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(half)
        self.conv2 = nn.Conv2d(half, quarter, 3, 1, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(quarter)
        self.conv3 = nn.Conv2d(quarter, quarter, 3, 1, 1, bias=False)
        self.downsample = (
            nn.Sequential(nn.BatchNorm2d(cin), nn.ReLU(), nn.Conv2d(cin, cout, 1, 1, 0, bias=False))
            if cin != cout else None
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = self.conv1(F.relu(self.bn1(x)))
        b = self.conv2(F.relu(self.bn2(a)))
        c = self.conv3(F.relu(self.bn3(b)))
        shortcut = x if self.downsample is None else self.downsample(x)
        return torch.cat([a, b, c], dim=1) + shortcut


class Hourglass(nn.Module):
    """CoordConv 1x1, then a recursive hourglass of `depth` levels: at each level a full-size
    branch (b1) plus a half-size branch (avg-pool, b2, the next level or b2_plus at the bottom,
    b3, nearest 2x up). [N, C, H, W] -> [N, C, H, W], H divisible by 2**depth."""

    def __init__(self, channels: int, depth: int) -> None:
        super().__init__()
        self.depth = depth
        self.coordconv = CoordConv(channels, channels, 1)
        for level in range(depth, 0, -1):
            self.add_module(f"b1_{level}", MultiScaleBlock(channels, channels))
            self.add_module(f"b2_{level}", MultiScaleBlock(channels, channels))
        self.add_module("b2_plus_1", MultiScaleBlock(channels, channels))
        for level in range(1, depth + 1):
            self.add_module(f"b3_{level}", MultiScaleBlock(channels, channels))

    def _level(self, x: torch.Tensor, level: int) -> torch.Tensor:
        full = self.get_submodule(f"b1_{level}")(x)
        low = self.get_submodule(f"b2_{level}")(F.avg_pool2d(x, 2))
        low = self._level(low, level - 1) if level > 1 else self.get_submodule("b2_plus_1")(low)
        low = self.get_submodule(f"b3_{level}")(low)
        return full + F.interpolate(low, scale_factor=2, mode="nearest")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._level(self.coordconv(x), self.depth)


class FAN(nn.Module):
    """One-stack hourglass face-alignment network: [N, 3, 256, 256] in [0, 1] ->
    [N, num_landmarks + 1, 64, 64] heatmaps (the last one the face boundary).

    width=64, depth=4 is the published network whose `wing.ckpt` StarGAN v2 ships
    (interop.stargan_v2.load_fan reads it); smaller widths make cheap stand-ins for tests. Built
    frozen in eval mode: it is never trained here, and its BatchNorms use their running statistics.
    """

    def __init__(self, width: int = 64, depth: int = 4, num_landmarks: int = NUM_LANDMARKS) -> None:
        super().__init__()
        if width < 1 or depth < 1 or depth > 6:
            raise ValueError(f"FAN: need width >= 1 and 1 <= depth <= 6, got width={width}, depth={depth}")
        self.width, self.depth, self.num_landmarks = width, depth, num_landmarks
        c = width
        self.conv1 = CoordConv(3, c, 7, stride=2, padding=3)
        self.bn1 = nn.BatchNorm2d(c)
        self.conv2 = MultiScaleBlock(c, 2 * c)
        self.conv3 = MultiScaleBlock(2 * c, 2 * c)
        self.conv4 = MultiScaleBlock(2 * c, 4 * c)
        self.m0 = Hourglass(4 * c, depth)
        self.top_m_0 = MultiScaleBlock(4 * c, 4 * c)
        self.conv_last0 = nn.Conv2d(4 * c, 4 * c, 1, 1, 0)
        self.bn_end0 = nn.BatchNorm2d(4 * c)
        self.l0 = nn.Conv2d(4 * c, num_landmarks + 1, 1, 1, 0)
        self.eval().requires_grad_(False)

    def train(self, mode: bool = True) -> FAN:
        return super().train(False)  # frozen: running BN statistics always

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x [N, 3, 256, 256] in [0, 1] -> raw heatmaps [N, num_landmarks + 1, 64, 64]."""
        x = F.relu(self.bn1(self.conv1(x)))
        x = F.avg_pool2d(self.conv2(x), 2)
        x = self.conv4(self.conv3(x))
        x = self.top_m_0(self.m0(x))
        x = F.relu(self.bn_end0(self.conv_last0(x)))
        return self.l0(x)

    @torch.no_grad()
    def heatmaps(self, x: torch.Tensor, channels: tuple[int, ...] | None = None) -> torch.Tensor:
        """Images [N, 3, H, W] in [-1, 1] (any size) -> landmark heatmaps [N, num_landmarks,
        256, 256] (the boundary map dropped), as the official get_heatmap before its recipe;
        `channels` selects some of them."""
        if x.ndim != 4 or x.shape[1] != 3:
            raise ValueError(f"FAN: expected images [N, 3, H, W], got {list(x.shape)}")
        p = next(self.parameters())
        with torch.autocast(device_type=x.device.type, enabled=False):  # float32, as published
            x = F.interpolate(x.to(p.dtype), size=(INPUT_SIZE, INPUT_SIZE), mode="bilinear", align_corners=False)
            out = self(x * 0.5 + 0.5)[:, :-1]
        if channels is not None:
            out = out[:, list(channels)]
        return F.interpolate(out, size=(INPUT_SIZE, INPUT_SIZE), mode="bilinear", align_corners=True)

    @torch.no_grad()
    def masks(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Images [N, 3, H, W] in [-1, 1] -> the generator's (mask, mask2), each [N, 1, 256,
        256] in [0, 1], without gradients (official `get_heatmap`). Only the heatmaps the masks
        use are upsampled (= landmark_masks(self.heatmaps(x)))."""
        if self.num_landmarks != NUM_LANDMARKS:
            raise ValueError(f"FAN.masks needs the {NUM_LANDMARKS}-point WFLW layout; this FAN has "
                             f"{self.num_landmarks} landmarks")
        return kept_masks(self.heatmaps(x, channels=KEEP), inplace=True)

    # ---- weights ---------------------------------------------------------------------------
    @classmethod
    def from_state_dict(cls, sd: dict[str, torch.Tensor], source: str = "state dict") -> FAN:
        """A FAN sized from the tensor shapes of `sd` (official `wing.ckpt` key names; a
        DataParallel `module.` prefix and unrelated extra keys are ignored, as officially) with
        those weights. Missing or misshapen weights raise CheckpointError naming `source`."""
        sd = {k.removeprefix("module."): v for k, v in sd.items() if isinstance(v, torch.Tensor)}
        try:
            width = sd["conv1.conv.weight"].shape[0]
            depth = sum(1 for k in sd if k.startswith("m0.b1_") and k.endswith(".bn1.weight"))
            landmarks = sd["l0.weight"].shape[0] - 1
            fan = cls(width, max(depth, 1), landmarks)
        except (KeyError, IndexError, ValueError):
            raise CheckpointError(f"{source}: not a FAN state dict (no conv1.conv.weight / l0.weight / m0.*; "
                                  f"expected {FAN_SOURCE})") from None
        own = fan.state_dict()
        # BatchNorm's num_batches_tracked only matters in training, which the FAN never does.
        missing = [k for k in own if k not in sd and not k.endswith("num_batches_tracked")]
        wrong = [f"{k} {list(sd[k].shape)} (expected {list(v.shape)})" for k, v in own.items()
                 if k in sd and sd[k].shape != v.shape]
        if missing or wrong:
            what = (f"missing {len(missing)} weights (e.g. {', '.join(missing[:3])})" if missing
                    else f"misshapen weights: {'; '.join(wrong[:3])}")
            raise CheckpointError(f"{source}: FAN weights do not fit a {width}-wide, depth-{depth} FAN: {what}")
        fan.load_state_dict({k: sd[k] for k in own if k in sd}, strict=False)
        return fan.eval().requires_grad_(False)

    def config(self) -> dict:
        return {"width": self.width, "depth": self.depth, "num_landmarks": self.num_landmarks}

    def extra_repr(self) -> str:
        return f"width={self.width}, depth={self.depth}, num_landmarks={self.num_landmarks}"


# ---- masks ------------------------------------------------------------------------------------

# The official recipe as groups of WFLW landmark channels whose heatmaps are shaped alike:
# (channels, vertical shift in px (+ = up), shift scales with the map size, power, in mask2).
# A shift is a circular roll of the rows, the same for the whole group, so it is applied once to
# the group's sum of powers. Channels the recipe zeroes (outer jaw 0:8 and 25:33, brow ends 33
# and 46, lip corners 76 and 82) appear in no group.
GROUPS: tuple[tuple[tuple[int, ...], int, bool, int, bool], ...] = (
    (tuple(range(8, 25)), 0, True, 3, False),                         # jaw line
    ((*range(34, 46), *range(47, 51)), -7, True, 2, False),           # eyebrows
    ((51,), 0, True, 1, True),                                        # top of the nose bridge
    (tuple(range(52, 55)), 4, True, 1, True),                         # rest of the nose bridge
    (tuple(range(55, 60)), 8, True, 4, True),                         # nostrils
    (tuple(range(60, 76)), -8, False, 3, True),                       # eyes, 8 px down, cubed
    (tuple(range(60, 76)), -24, False, 1, True),                      # ... plus 24 px down
    (tuple(range(77, 82)), -8, True, 4, False),                       # upper lip
    (tuple(range(83, 88)), 8, True, 4, False),                        # lower lip
    (tuple(range(88, 96)), -2, True, 3, False),                       # inner lip
    ((96, 97), 0, True, 1, True),                                     # eye centres
)
KEEP = tuple(sorted({c for g in GROUPS for c in g[0]}))  # the 78 channels the masks use
_SPANS = []
for _chans, *_rest in GROUPS:
    _lo = KEEP.index(_chans[0])
    assert KEEP[_lo:_lo + len(_chans)] == _chans  # each group is a run of KEEP
    _SPANS.append((_lo, _lo + len(_chans), *_rest))


def _shift_up(x: torch.Tensor, px: int) -> torch.Tensor:
    """Circularly move the rows of x [N, C, H, W] up by px (down if negative)."""
    return torch.roll(x, shifts=-px, dims=2) if px else x


def kept_masks(x: torch.Tensor, threshold: float = 0.1, eps: float = 1e-6,
               inplace: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """`landmark_masks` of heatmaps already reduced to the KEEP channels [N, len(KEEP), H, W]
    (inplace: x is scratch space, which saves a copy of this large tensor)."""
    n, c, h, w = x.shape
    scale = max(h // INPUT_SIZE, 1)
    x = x if inplace else x.clone()
    x.masked_fill_(x < threshold, 0.0)  # drop the faint tails
    flat = x.view(n, c, h * w)
    lo, hi = flat.amin(2, keepdim=True), flat.amax(2, keepdim=True)
    flat.sub_(lo).div_(hi - lo + eps)  # min-max per heatmap
    mask2 = x.new_zeros(n, 1, h, w)
    rest = x.new_zeros(n, 1, h, w)
    for a, b, shift, scaled, power, in_mask2 in _SPANS:
        part = x[:, a:b] if power == 1 else x[:, a:b] ** power
        part = _shift_up(part.sum(1, keepdim=True), shift * scale if scaled else shift)
        (mask2 if in_mask2 else rest).add_(part)
    mask = mask2 + rest
    return (torch.nan_to_num(mask, nan=0.0).clamp_(0, 1),
            torch.nan_to_num(mask2, nan=0.0).clamp_(0, 1))


def landmark_masks(heatmaps: torch.Tensor, threshold: float = 0.1,
                   eps: float = 1e-6) -> tuple[torch.Tensor, torch.Tensor]:
    """98 landmark heatmaps [N, 98, H, W] (H = 256 as StarGAN v2 uses them) -> (mask, mask2),
    each [N, 1, H, W] in [0, 1]: mask covers the face parts including jaw line, eyebrows and
    mouth; mask2 only eyes, nose and nostrils. The official `preprocess` recipe (see the module
    docstring), equal to it up to float rounding of the channel sums."""
    if heatmaps.ndim != 4 or heatmaps.shape[1] != NUM_LANDMARKS:
        raise ValueError(f"landmark_masks: expected [N, {NUM_LANDMARKS}, H, W] heatmaps, got {list(heatmaps.shape)}")
    return kept_masks(heatmaps[:, list(KEEP)], threshold, eps)
