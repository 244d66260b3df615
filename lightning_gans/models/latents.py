"""Latents from seeds, drawn exactly as the official generate scripts draw them (synthesis,
metrics and the sample callbacks share them)."""

from __future__ import annotations

import numpy as np
import torch


def seeds_to_z(seeds: list[int], z_dim: int) -> torch.Tensor:
    """[len(seeds), z_dim] float32: row i is numpy RandomState(seeds[i]).randn(z_dim).

    Using numpy's legacy generator makes seed s give the same face here as in the official
    scripts for a converted checkpoint.
    """
    if z_dim <= 0:
        return torch.zeros([len(seeds), 0])
    return torch.from_numpy(np.stack([np.random.RandomState(s).randn(z_dim) for s in seeds])).float()
