"""Improved precision and recall (Kynkaanniemi et al., NeurIPS 2019): k-NN manifolds, k = 3.

Each feature set spans a manifold: the union of balls around its points, each ball's radius the
distance to the point's k-th nearest neighbour in its own set. Precision is the fraction of
generated features inside the real manifold; recall the fraction of real features inside the
generated one. Distances are computed in blocks of rows x columns so memory stays
O(row_batch * col_batch) for any N; the k smallest per row are kept across column blocks with
topk. Squared distances (|a|^2 + |b|^2 - 2 a.b) in float64 are compared with squared radii,
which orders the same as distances and avoids the square root.
"""

from __future__ import annotations

import numpy as np
import torch


def _sq_dist(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    d = (a * a).sum(1, keepdim=True) + (b * b).sum(1)[None] - 2.0 * (a @ b.T)
    return d.clamp_min_(0.0)


def knn_radii_sq(
    features: torch.Tensor, k: int = 3, row_batch: int = 1024, col_batch: int = 8192
) -> torch.Tensor:
    """Squared distance of each point to its k-th nearest neighbour in the same set [N]."""
    n = features.shape[0]
    if n <= k:
        raise ValueError(f"k-NN radii with k={k} need more than {k} points, got {n}")
    radii = []
    for rows in features.split(row_batch):
        best = None  # [r, <= k+1] smallest so far; k+1 because each point is its own 0-th NN
        for cols in features.split(col_batch):
            d = _sq_dist(rows, cols)
            cand = d if best is None else torch.cat([best, d], dim=1)
            best = cand.topk(min(k + 1, cand.shape[1]), dim=1, largest=False).values
        radii.append(best[:, k])
    return torch.cat(radii)


def manifold_coverage(
    probes: torch.Tensor,
    manifold: torch.Tensor,
    radii_sq: torch.Tensor,
    row_batch: int = 1024,
    col_batch: int = 8192,
) -> float:
    """Fraction of probes within radius of at least one manifold point (inclusive, as ADA)."""
    inside = []
    for rows in probes.split(row_batch):
        hit = torch.zeros(rows.shape[0], dtype=torch.bool, device=rows.device)
        for cols, r in zip(manifold.split(col_batch), radii_sq.split(col_batch)):
            hit |= (_sq_dist(rows, cols) <= r[None]).any(dim=1)
        inside.append(hit)
    return float(torch.cat(inside).double().mean())


def precision_recall(
    real: np.ndarray | torch.Tensor,
    fake: np.ndarray | torch.Tensor,
    k: int = 3,
    row_batch: int = 1024,
    col_batch: int = 8192,
    device: torch.device | str = "cpu",
    dtype: torch.dtype = torch.float64,
) -> tuple[float, float]:
    """(precision, recall) of generated features `fake` [M, D] w.r.t. `real` [N, D]."""
    real = torch.as_tensor(np.asarray(real) if not torch.is_tensor(real) else real)
    fake = torch.as_tensor(np.asarray(fake) if not torch.is_tensor(fake) else fake)
    real, fake = real.to(device, dtype), fake.to(device, dtype)
    if real.ndim != 2 or fake.ndim != 2 or real.shape[1] != fake.shape[1]:
        raise ValueError(f"features must be [n, d] with equal d: {real.shape}, {fake.shape}")
    with torch.no_grad():
        real_r = knn_radii_sq(real, k, row_batch, col_batch)
        fake_r = knn_radii_sq(fake, k, row_batch, col_batch)
        precision = manifold_coverage(fake, real, real_r, row_batch, col_batch)
        recall = manifold_coverage(real, fake, fake_r, row_batch, col_batch)
    return precision, recall
