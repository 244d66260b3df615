"""Kernel Inception Distance (Binkowski et al., ICLR 2018): unbiased MMD^2 over random subsets.

Kernel k(x, y) = (x.y / d + 1)^3 on d-dimensional features. Per subset of m items from each set,
the unbiased estimate is

    MMD^2 = sum_{i!=j} k(x_i, x_j) / (m (m-1)) + sum_{i!=j} k(y_i, y_j) / (m (m-1))
            - 2 sum_{i,j} k(x_i, y_j) / m^2

and KID is its mean over subsets (std reported too), as in StyleGAN2-ADA's kid50k
(100 subsets of at most 1000). Sums run in float64.
"""

from __future__ import annotations

import numpy as np

from .stats import FeatureStats


def mmd2_unbiased(x: np.ndarray, y: np.ndarray) -> float:
    """Unbiased polynomial-kernel MMD^2 of two equally sized sets x, y [m, d]."""
    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    m, d = x.shape
    if y.shape != (m, d) or m < 2:
        raise ValueError(f"need two [m, d] sets with m >= 2, got {x.shape} and {y.shape}")
    kxx = (x @ x.T / d + 1.0) ** 3
    kyy = (y @ y.T / d + 1.0) ** 3
    kxy = (x @ y.T / d + 1.0) ** 3
    within = (kxx.sum() - np.trace(kxx) + kyy.sum() - np.trace(kyy)) / (m * (m - 1))
    return float(within - 2.0 * kxy.sum() / (m * m))


def kernel_inception_distance(
    features_a: np.ndarray | FeatureStats,
    features_b: np.ndarray | FeatureStats,
    num_subsets: int = 100,
    max_subset_size: int = 1000,
    seed: int = 0,
) -> tuple[float, float]:
    """(mean, std) of MMD^2 over `num_subsets` subsets of m = min(n_a, n_b, max_subset_size)."""
    a = features_a.features() if isinstance(features_a, FeatureStats) else np.asarray(features_a)
    b = features_b.features() if isinstance(features_b, FeatureStats) else np.asarray(features_b)
    if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[1]:
        raise ValueError(f"features must be [n, d] with equal d, got {a.shape} and {b.shape}")
    m = min(a.shape[0], b.shape[0], max_subset_size)
    rng = np.random.default_rng(seed)
    values = np.array([
        mmd2_unbiased(a[rng.choice(a.shape[0], m, replace=False)],
                      b[rng.choice(b.shape[0], m, replace=False)])
        for _ in range(num_subsets)
    ])
    return float(values.mean()), float(values.std())
