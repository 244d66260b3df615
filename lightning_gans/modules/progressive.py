"""Progressive-growing schedule of StyleGAN (v1) as a pure function of images seen (Karras,
Laine, Aila, CVPR 2019; the official training_loop.training_schedule, after ProGAN).

Phases alternate: the start resolution trains `stable_kimg`, then each next resolution fades in
over `fade_kimg` and trains `stable_kimg`, until the final resolution, which trains on forever.
In the official level-of-detail terms (lod 0 = final resolution):

    phase_idx = floor(kimg / (stable_kimg + fade_kimg)),  phase_kimg = kimg - phase_idx * dur
    lod = max(log2(R_final) - log2(R_start) - phase_idx
              - max(phase_kimg - stable_kimg, 0) / fade_kimg, 0)
    R = R_final / 2^floor(lod),   alpha = 1 - (lod - floor(lod))

Everything here is in kimg of the global batch, so it is the same under any number of
processes; only the batch size per step depends on the world size.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field

# Official FFHQ settings (stylegan/train.py, 8 GPUs).
FFHQ_MINIBATCH = {4: 512, 8: 256, 16: 128, 32: 64, 64: 32}  # global batch on 8 GPUs
FFHQ_LR = {128: 0.0015, 256: 0.002, 512: 0.003, 1024: 0.003}


@dataclass(frozen=True)
class Progress:
    """Where training stands: the resolution being trained and its fade-in."""

    kimg: float
    lod: float  # official level of detail: 0 = final resolution, fractional while fading in
    resolution: int  # current resolution R (the new one during its fade-in)
    alpha: float  # fade-in of R: 0 = all upsampled R/2 output, 1 = only R (stable phases)
    phase: int  # 0 = stable at the start resolution, then fade, stable, fade, ... (capped)

    @property
    def fading(self) -> bool:
        return self.alpha < 1


@dataclass(frozen=True)
class ProgressiveSchedule:
    """Resolution, fade-in, batch size and learning rate as functions of kimg."""

    max_resolution: int  # final resolution (the shards' resolution)
    start_resolution: int = 8  # official FFHQ: lod_initial_resolution 8
    stable_kimg: float = 600.0  # official lod_training_kimg
    fade_kimg: float = 600.0  # official lod_transition_kimg
    minibatch_dict: Mapping[int, int] = field(default_factory=lambda: dict(FFHQ_MINIBATCH))
    minibatch_base: int = 32  # global batch at resolutions missing from minibatch_dict
    minibatch_gpus: int = 8  # processes the minibatch numbers are written for
    lr_dict: Mapping[int, float] = field(default_factory=lambda: dict(FFHQ_LR))
    lr_base: float = 0.001

    def __post_init__(self) -> None:
        for name in ("max_resolution", "start_resolution"):
            r = getattr(self, name)
            if not (isinstance(r, int) and r >= 4 and r & (r - 1) == 0):
                raise ValueError(f"{name} must be a power of two >= 4, got {r!r}")
        if self.start_resolution > self.max_resolution:
            raise ValueError(
                f"start_resolution {self.start_resolution} is above the final resolution "
                f"{self.max_resolution}: lower model.start_resolution"
            )
        if self.stable_kimg < 0 or self.fade_kimg < 0 or self.stable_kimg + self.fade_kimg <= 0:
            raise ValueError(
                f"stable_kimg={self.stable_kimg}, fade_kimg={self.fade_kimg}: both must be >= 0 "
                "and their sum > 0"
            )
        if self.minibatch_gpus < 1:
            raise ValueError(f"minibatch_gpus must be >= 1, got {self.minibatch_gpus}")

    @property
    def num_phases(self) -> int:
        """Phases until the final resolution is stable (the last one never ends)."""
        return 2 * int(math.log2(self.max_resolution // self.start_resolution)) + 1

    def at(self, nimg: int) -> Progress:
        """Progress after `nimg` images (global, over all processes) have been trained on."""
        kimg = nimg / 1000.0
        dur = self.stable_kimg + self.fade_kimg
        phase_idx = math.floor(kimg / dur)
        phase_kimg = kimg - phase_idx * dur
        lod = math.log2(self.max_resolution) - math.log2(self.start_resolution) - phase_idx
        # Strictly past the stable part: at phase_kimg == stable_kimg lod is still an integer.
        if self.fade_kimg > 0:
            lod -= max(phase_kimg - self.stable_kimg, 0.0) / self.fade_kimg
        lod = max(lod, 0.0)
        base = math.floor(lod)
        resolution = self.max_resolution >> base
        alpha = 1.0 - (lod - base)
        phase = min(2 * phase_idx + (1 if alpha < 1 else 0), self.num_phases - 1)
        if lod == 0:
            phase = self.num_phases - 1
        return Progress(kimg=kimg, lod=lod, resolution=resolution, alpha=alpha, phase=phase)

    def per_process_batch(self, resolution: int) -> int:
        """Images per process per step: the official global batch / minibatch_gpus (>= 1)."""
        return max(1, int(self.minibatch_dict.get(resolution, self.minibatch_base)) // self.minibatch_gpus)

    def batch(self, resolution: int, world_size: int) -> int:
        """Global batch at `resolution` when `world_size` processes train (official minibatch
        scaled from minibatch_gpus to world_size; always a multiple of world_size)."""
        return self.per_process_batch(resolution) * world_size

    def max_batch(self, world_size: int) -> int:
        """The largest global batch any phase of this schedule uses."""
        doublings = int(math.log2(self.max_resolution // self.start_resolution))
        return max(self.batch(self.start_resolution << i, world_size) for i in range(doublings + 1))

    def lr(self, resolution: int) -> float:
        """Adam learning rate of G and D at `resolution` (official G_lrate_dict = D_lrate_dict)."""
        return float(self.lr_dict.get(resolution, self.lr_base))

    def kimg_of_phase(self, phase: int) -> float:
        """kimg at which `phase` starts (phase 0 at 0; fade-ins start after stable_kimg)."""
        if not 0 <= phase < self.num_phases:
            raise ValueError(f"phase must be in [0, {self.num_phases}), got {phase}")
        dur = self.stable_kimg + self.fade_kimg
        return (phase // 2) * dur + (self.stable_kimg if phase % 2 else 0.0)
