"""The ADA p controller (Karras et al., NeurIPS 2020, section 3 / appendix C).

The overfitting heuristic r_t = E[sign(D(x_real))] is the mean over every real logit the D phases
reported since the last adjustment (the official collects 'Loss/signs/real' of Dmain and Dreg); every
`interval` iterations p moves by sign(r_t - target) * batch * interval / (kimg * 1000), so p can
rise or fall by 1 in `kimg` thousand images, and never goes below 0.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn


class AdaController(nn.Module):
    """Holds the r_t accumulator (buffers, so a resume continues exactly) and adjusts `p`."""

    def __init__(
        self,
        target: float = 0.6,  # the r_t the controller steers to
        interval: int = 4,  # iterations between adjustments
        kimg: float = 500,  # thousands of images for p to move by 1 (100 when fine-tuning)
    ):
        super().__init__()
        if interval < 1 or kimg <= 0:
            raise ValueError(f"ada_interval must be >= 1 and ada_kimg > 0, got {interval}, {kimg}")
        self.target, self.interval, self.kimg = float(target), int(interval), float(kimg)
        self.register_buffer("sign_stats", torch.zeros([2], dtype=torch.float64))  # (sum, count)

    def accumulate(self, signs_real: torch.Tensor) -> None:
        """Add one D phase's sign(D(real)) values (per sample; the loss reports them as "signs/real")."""
        signs = signs_real.detach().double().flatten()
        self.sign_stats += torch.stack([signs.sum(), torch.full_like(self.sign_stats[0], signs.numel())])

    def step_size(self, batch_size: int) -> float:
        """|change of p| per adjustment for a global batch of `batch_size` images."""
        return batch_size * self.interval / (self.kimg * 1000)

    @torch.no_grad()
    def update(
        self,
        p: torch.Tensor,
        iteration: int,  # 0-based index of the iteration that just finished
        batch_size: int,  # global images per iteration
        reduce: Callable[[torch.Tensor], torch.Tensor] | None = None,  # in-place mean over ranks
    ) -> torch.Tensor | None:
        """Every `interval` iterations: move `p` (in place) and return r_t; else None."""
        if (iteration + 1) % self.interval != 0:
            return None
        stats = self.sign_stats.clone()
        if reduce is not None:
            reduce(stats)  # mean over ranks of (sum, count): their ratio is the global mean
        self.sign_stats.zero_()
        if float(stats[1]) == 0:
            return None
        r_t = stats[0] / stats[1]
        adjust = torch.sign(r_t - self.target) * self.step_size(batch_size)
        p.copy_((p + adjust.to(p.dtype)).clamp_min(0))
        return r_t.float()
