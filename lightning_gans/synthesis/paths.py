"""Straight paths through keyframes, which `interpolate` walks: in W for StyleGAN checkpoints
(interpolate.py), in style space for StarGAN v2 ones (style_interp.py)."""

from __future__ import annotations

import torch

from .common import SynthesisError


def path_fractions(frames: int) -> torch.Tensor:
    """[frames] fractions 0, 1/F, ..., (F-1)/F of one keyframe-to-keyframe step."""
    return torch.arange(frames, dtype=torch.float64) / frames


def lerp_keyframes(keys: torch.Tensor, frames: int) -> torch.Tensor:
    """Straight lines through keyframes [K, ...] -> [(K - 1) * frames + 1, ...].

    The keyframes themselves are copied, not recomputed as a + 0 * (b - a), so the path's ends
    are bit-equal to the keyframes and the endpoint images match the non-interpolating commands.
    """
    if frames < 1:
        raise SynthesisError(f"--frames {frames}: need at least 1 frame per keyframe pair")
    t = path_fractions(frames).to(device=keys.device, dtype=keys.dtype)
    t = t.view(-1, *([1] * (keys.ndim - 1)))
    parts = [torch.cat([keys[i : i + 1], keys[i].lerp(keys[i + 1], t)[1:]]) for i in range(keys.shape[0] - 1)]
    return torch.cat(parts + [keys[-1:]])
