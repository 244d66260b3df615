"""FeatureStats: running mean/covariance (and optionally all features) of a feature set.

The accumulator behind FID (Heusel et al., NeurIPS 2017), KID (Binkowski et al., ICLR 2018) and
precision/recall (Kynkaanniemi et al., NeurIPS 2019), in the role of StyleGAN2-ADA's
`metric_utils.FeatureStats`. Mean and covariance are accumulated in float64 with the pairwise
update of Chan, Golub & LeVeque (1979): each batch is centred on its own mean before its outer
products are summed, so no large raw second moment is ever differenced, and two accumulators
merge exactly (DDP ranks each accumulate their share, then `merge` the gathered states).
"""

from __future__ import annotations

import numpy as np
import torch


class FeatureStats:
    """Accumulates features [N, D]; `mean_cov()` for FID, `features()` for KID / PR."""

    def __init__(
        self,
        capture_all: bool = False,      # keep every feature vector (KID, precision/recall)
        capture_mean_cov: bool = True,  # keep count, mean and centred scatter (FID)
        max_items: int | None = None,   # stop accepting items after this many
    ) -> None:
        self.capture_all = capture_all
        self.capture_mean_cov = capture_mean_cov
        self.max_items = max_items
        self.num_items = 0
        self.num_features: int | None = None
        self._mean: np.ndarray | None = None  # [D] float64
        self._m2: np.ndarray | None = None    # [D, D] float64, sum of centred outer products
        self._all: list[np.ndarray] = []      # float32 [n_i, D] chunks

    def is_full(self) -> bool:
        return self.max_items is not None and self.num_items >= self.max_items

    def _set_dim(self, d: int) -> None:
        if self.num_features is None:
            self.num_features = d
            if self.capture_mean_cov:
                self._mean = np.zeros(d, np.float64)
                self._m2 = np.zeros((d, d), np.float64)
        elif d != self.num_features:
            raise ValueError(f"feature size changed from {self.num_features} to {d}")

    def append(self, x: np.ndarray | torch.Tensor) -> None:
        """Add a batch [N, D]; items beyond max_items are dropped."""
        if isinstance(x, torch.Tensor):
            x = x.detach().cpu().numpy()
        x = np.asarray(x)
        if x.ndim != 2:
            raise ValueError(f"features must be [N, D], got shape {x.shape}")
        if self.max_items is not None:
            x = x[: max(self.max_items - self.num_items, 0)]
        self._set_dim(x.shape[1])
        if x.shape[0] == 0:
            return
        if self.capture_all:
            self._all.append(x.astype(np.float32))
        if self.capture_mean_cov:
            x64 = x.astype(np.float64)
            mean = x64.mean(axis=0)
            xc = x64 - mean
            self._combine(x.shape[0], mean, xc.T @ xc)
        self.num_items += x.shape[0]

    def _combine(self, n_b: int, mean_b: np.ndarray, m2_b: np.ndarray) -> None:
        # Chan et al.: M2 = M2_a + M2_b + delta delta^T * n_a n_b / n.
        n_a = self.num_items
        n = n_a + n_b
        delta = mean_b - self._mean
        self._mean = self._mean + delta * (n_b / n)
        self._m2 = self._m2 + m2_b + np.outer(delta, delta) * (n_a * n_b / n)

    def merge(self, other: FeatureStats) -> FeatureStats:
        """Fold another accumulator (e.g. another rank's) into this one; returns self.

        max_items is not enforced here: each rank already captured only its share."""
        if (other.capture_all, other.capture_mean_cov) != (self.capture_all,
                                                          self.capture_mean_cov):
            raise ValueError("cannot merge FeatureStats that capture different things")
        if other.num_items == 0:
            return self
        self._set_dim(other.num_features)
        if self.capture_all:
            self._all.extend(other._all)
        if self.capture_mean_cov:
            self._combine(other.num_items, other._mean, other._m2)
        self.num_items += other.num_items
        return self

    def mean_cov(self) -> tuple[np.ndarray, np.ndarray]:
        """float64 mean [D] and unbiased covariance [D, D] (divides by N - 1, like np.cov)."""
        if not self.capture_mean_cov:
            raise ValueError("these FeatureStats were built with capture_mean_cov=False")
        if self.num_items < 2:
            raise ValueError(f"a covariance needs at least 2 items, have {self.num_items}")
        return self._mean.copy(), self._m2 / (self.num_items - 1)

    def features(self) -> np.ndarray:
        """All captured features, float32 [N, D]."""
        if not self.capture_all:
            raise ValueError("these FeatureStats were built with capture_all=False")
        if not self._all:
            return np.zeros((0, self.num_features or 0), np.float32)
        return np.concatenate(self._all, axis=0)

    def state_dict(self) -> dict[str, np.ndarray]:
        """Plain arrays (np.savez without pickle; torch.distributed.all_gather_object)."""
        state = {
            "num_items": np.int64(self.num_items),
            "num_features": np.int64(-1 if self.num_features is None else self.num_features),
            "max_items": np.int64(-1 if self.max_items is None else self.max_items),
            "flags": np.array([self.capture_all, self.capture_mean_cov]),
        }
        if self.capture_mean_cov and self._mean is not None:
            state["mean"], state["m2"] = self._mean, self._m2
        if self.capture_all:
            state["features"] = self.features()
        return state

    @classmethod
    def from_state_dict(cls, state: dict[str, np.ndarray]) -> FeatureStats:
        capture_all, capture_mean_cov = (bool(f) for f in state["flags"])
        max_items = int(state["max_items"])
        stats = cls(capture_all, capture_mean_cov, None if max_items < 0 else max_items)
        stats.num_items = int(state["num_items"])
        d = int(state["num_features"])
        stats.num_features = None if d < 0 else d
        if capture_mean_cov and "mean" in state:
            stats._mean = np.asarray(state["mean"], np.float64)
            stats._m2 = np.asarray(state["m2"], np.float64)
        if capture_all and "features" in state:
            stats._all = [np.asarray(state["features"], np.float32)]
        return stats
