"""FID (and KID) between two image sets (folders or shard sets): what `lightning-gans fid` computes."""

from __future__ import annotations

import logging
import os
import time
from typing import Any

from .dataset_stats import compute_feature_stats, list_source
from .fid import fid_from_stats
from .inception import RESIZE_CONVENTION, load_inception
from .kid import kernel_inception_distance

FID_MIN_RELIABLE = 2048  # feature dimension: fewer images give a rank-deficient covariance
log = logging.getLogger(__name__)


def fid_between(a: str | os.PathLike, b: str | os.PathLike, *, kid: bool = False, num: int | None = None,
                batch: int = 32, inception_weights: str | None = None, resolution: int | None = None,
                cache_dir: str | None = None, kid_subsets: int = 100, kid_subset_size: int = 1000,
                device: str = "cpu", progress=print) -> dict[str, Any]:
    """The record `fid` prints: fid, num_a, num_b (+ kid, kid_std), the network's identity and the
    resize convention. `progress(msg)` gets one line per set and the few-images warning."""
    for src in (a, b):
        list_source(src)  # fail on a bad path before loading the network
    net = load_inception(inception_weights, device=device, metric="FID" + ("/KID" if kid else ""))
    stats = []
    for src in (a, b):
        t0 = time.perf_counter()
        s = compute_feature_stats(src, net, num, batch, cache_dir, resolution=resolution, capture_all=kid)
        progress(f"{src}: {s.num_items} images, {time.perf_counter() - t0:.1f} s")
        stats.append(s)
    few = min(s.num_items for s in stats)
    if few < FID_MIN_RELIABLE:  # issue 19: say it, rather than print a number that looks normal
        progress(f"warning: FID from {few} images is unreliable (its covariance has rank < {few}, far below "
                 f"the 2048 features; the bias is large): use >= {FID_MIN_RELIABLE} images per set, 50k for "
                 "numbers comparable with papers")
    result: dict[str, Any] = {"fid": fid_from_stats(*stats, device=device), "num_a": stats[0].num_items,
                              "num_b": stats[1].num_items}
    if kid:
        k, k_std = kernel_inception_distance(stats[1], stats[0], kid_subsets, kid_subset_size)
        result.update(kid=k, kid_std=k_std)
    return {**result, "inception": net.kind, "inception_hash": net.file_hash, "convention": RESIZE_CONVENTION}
