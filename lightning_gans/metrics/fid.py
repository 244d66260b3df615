"""Frechet Inception Distance (Heusel et al., NeurIPS 2017) from feature means and covariances.

    FID = |mu1 - mu2|^2 + tr(S1) + tr(S2) - 2 tr((S1 S2)^(1/2))

tr((S1 S2)^(1/2)) is the sum of square roots of the eigenvalues of the symmetric PSD matrix
L^T S2 L, where S1 = L L^T (Cholesky; if S1 is singular, as with fewer samples than dimensions,
L = S1^(1/2) from a symmetric eigendecomposition), which has the same eigenvalues as S1 S2. This
replaces scipy.linalg.sqrtm of the non-symmetric product (pytorch-fid, StyleGAN2-ADA): the
result is real by construction, needs no "add eps to the diagonal" retry, and eigenvalues at
rounding level (including tiny negative ones) are set to 0 before their square roots are taken.
Everything runs in float64.
"""

from __future__ import annotations

import numpy as np
import torch

from .stats import FeatureStats

Array = np.ndarray | torch.Tensor


def _clip_eigenvalues(w: torch.Tensor) -> torch.Tensor:
    """Zero eigenvalues at rounding level (as numpy's matrix_rank decides rank): sqrt would
    turn noise of size e into sqrt(e), e.g. 1e-16 -> 1e-8 per null direction."""
    tol = w.max().clamp_min(0.0) * w.shape[0] * torch.finfo(torch.float64).eps
    return torch.where(w > tol, w, torch.zeros_like(w))


def trace_sqrt_product(s1: torch.Tensor, s2: torch.Tensor) -> float:
    """tr((S1 S2)^(1/2)) for symmetric PSD float64 S1, S2 [D, D]."""
    factor, info = torch.linalg.cholesky_ex(s1)  # S1 = L L^T: L^T S2 L ~ S1 S2, ~3x cheaper
    if info != 0:  # S1 singular (fewer samples than dims): L = S1^(1/2) from eigh instead
        w, v = torch.linalg.eigh(s1)
        factor = (v * _clip_eigenvalues(w).sqrt()) @ v.T
    m = factor.T @ s2 @ factor
    m = (m + m.T) * 0.5  # remove the rounding asymmetry eigvalsh would silently ignore
    return float(_clip_eigenvalues(torch.linalg.eigvalsh(m)).sqrt().sum())


def frechet_distance(
    mu1: Array, sigma1: Array, mu2: Array, sigma2: Array, device: torch.device | str = "cpu"
) -> float:
    """Frechet distance between N(mu1, sigma1) and N(mu2, sigma2); mu [D], sigma [D, D].

    Computed in float64 with torch (so torch.set_num_threads applies, and a GPU can be used)."""
    mu1, sigma1, mu2, sigma2 = (torch.as_tensor(np.asarray(x) if not torch.is_tensor(x) else x)
                                .to(device, torch.float64) for x in (mu1, sigma1, mu2, sigma2))
    d = mu1.shape[0]
    if mu2.shape != (d,) or sigma1.shape != (d, d) or sigma2.shape != (d, d):
        raise ValueError(f"shape mismatch: mu {tuple(mu1.shape)} {tuple(mu2.shape)}, "
                         f"sigma {tuple(sigma1.shape)} {tuple(sigma2.shape)}")
    diff = mu1 - mu2
    value = float(diff @ diff + sigma1.trace() + sigma2.trace())
    value -= 2.0 * trace_sqrt_product(sigma1, sigma2)
    # A distance: the only negative values are rounding around 0 (a set against itself).
    return max(value, 0.0)


def fid_from_stats(a: FeatureStats, b: FeatureStats, device: torch.device | str = "cpu") -> float:
    """FID between two accumulated feature sets."""
    return frechet_distance(*a.mean_cov(), *b.mean_cov(), device=device)
