"""StarGAN v2 evaluation protocol (Choi et al., CVPR 2020): FID and LPIPS diversity per task.

For every ordered pair (source domain, target domain), each source image is translated
`num_outs` times, with styles from random latents (mode "latent") or from target-domain
reference images (mode "reference"). LPIPS diversity: the mean distance over all pairs of the
`num_outs` outputs of a source batch, averaged over batches. FID: all outputs of the task
against the real images of the target domain (the official code uses the training images
there). Results per task ("<src>2<trg>") and their mean, keyed as the official
`FID_<mode>/<task>`, `LPIPS_<mode>/<task>`, `FID_<mode>/mean`, `LPIPS_<mode>/mean`.

The feature network (Inception for FID) and the distance (LPIPS) are arguments, so the
protocol is independent of which weights are loaded (metrics.inception, pretrained.lpips).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Literal

import numpy as np
import torch
from torch import nn

from .fid import fid_from_stats
from .stats import FeatureStats

__all__ = ["evaluate_stargan", "pairwise_diversity"]

Batches = Iterable[torch.Tensor]  # re-iterable batches [n, 3, R, R] in [-1, 1]
FeatureFn = Callable[[torch.Tensor], torch.Tensor]  # images -> features [n, D]
DistanceFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]  # (images, images) -> [n]


def pairwise_diversity(outputs: Sequence[torch.Tensor], distance: DistanceFn) -> float:
    """Mean over pairs i < j of the batch-mean distance(outputs[i], outputs[j]) (the official
    `calculate_lpips_given_images`); outputs: >= 2 tensors [n, 3, R, R] of the same sources."""
    if len(outputs) < 2:
        raise ValueError(f"diversity needs >= 2 outputs per source, got {len(outputs)}")
    values = [float(distance(a, b).mean()) for a, b in itertools.combinations(outputs, 2)]
    return float(np.mean(values))


def _cycle(batches: Batches) -> Iterator[torch.Tensor]:
    while True:
        empty = True
        for b in batches:
            empty = False
            yield b
        if empty:
            raise ValueError("reference images: a domain has no batches")


def _stats(batches: Iterable[torch.Tensor], feature_fn: FeatureFn) -> FeatureStats:
    stats = FeatureStats()
    for b in batches:
        stats.append(feature_fn(b).double())
    if stats.num_items < 2:
        raise ValueError(f"FID needs >= 2 images per set, got {stats.num_items}")
    return stats


@torch.no_grad()
def evaluate_stargan(
    nets: Mapping[str, nn.Module],           # generator, mapping_network, style_encoder (EMA)
    images: Mapping[int, Batches],           # domain -> source images (the validation set)
    real: Mapping[int, Batches],             # domain -> real images FID compares against
    feature_fn: FeatureFn,                   # e.g. Inception pool features
    distance_fn: DistanceFn,                 # e.g. LPIPS
    mode: Literal["latent", "reference"] = "latent",
    num_outs: int = 10,                      # outputs per source image (official: 10)
    latent_dim: int = 16,
    references: Mapping[int, Batches] | None = None,  # domain -> references (default: images)
    domain_names: Sequence[str] | None = None,
    seed: int = 0,
    device: torch.device | str = "cpu",
    masks_fn: Callable[[torch.Tensor], Sequence[torch.Tensor]] | None = None,  # w_hpf > 0: FAN
) -> dict[str, float]:
    """Run the protocol over all ordered domain pairs of `images`; returns the metric dict.

    Reference batches are drawn in order from the target domain (cycled), one reference per
    source image per output, as the official loader does; latents from a generator seeded
    with `seed`, so two calls give the same numbers.
    """
    if mode not in ("latent", "reference"):
        raise ValueError(f"mode must be 'latent' or 'reference', got {mode!r}")
    domains = sorted(images)
    names = list(domain_names) if domain_names is not None else [str(d) for d in domains]
    if len(names) <= max(domains):
        raise ValueError(f"domain_names has {len(names)} names for domains {domains}")
    references = references if references is not None else images
    gen = torch.Generator().manual_seed(seed)
    G, F, E = nets["generator"], nets["mapping_network"], nets["style_encoder"]
    real_stats: dict[int, FeatureStats] = {}
    fid: dict[str, float] = {}
    lpips: dict[str, float] = {}
    for trg, src in itertools.product(domains, domains):
        if src == trg:
            continue
        task = f"{names[src]}2{names[trg]}"
        refs = _cycle(references[trg]) if mode == "reference" else None
        fake_stats = FeatureStats()
        diversity = []
        for x_src in images[src]:
            x_src = x_src.to(device)
            n = x_src.shape[0]
            y_trg = torch.full((n,), trg, dtype=torch.int64, device=device)
            masks = masks_fn(x_src) if masks_fn is not None else None
            outs = []
            for _ in range(num_outs):
                if mode == "latent":
                    s_trg = F(torch.randn(n, latent_dim, generator=gen).to(device), y_trg)
                else:
                    x_ref = _take(refs, n).to(device)
                    s_trg = E(x_ref, y_trg)
                x_fake = G(x_src, s_trg, masks=masks) if masks is not None else G(x_src, s_trg)
                outs.append(x_fake)
                fake_stats.append(feature_fn(x_fake).double())
            diversity.append(pairwise_diversity(outs, distance_fn))
        if trg not in real_stats:
            real_stats[trg] = _stats(real[trg], feature_fn)
        fid[task] = fid_from_stats(fake_stats, real_stats[trg])
        lpips[task] = float(np.mean(diversity))
    out = {f"FID_{mode}/{t}": v for t, v in fid.items()}
    out[f"FID_{mode}/mean"] = float(np.mean(list(fid.values())))
    out.update({f"LPIPS_{mode}/{t}": v for t, v in lpips.items()})
    out[f"LPIPS_{mode}/mean"] = float(np.mean(list(lpips.values())))
    return out


def _take(batches: Iterator[torch.Tensor], n: int) -> torch.Tensor:
    """The next n reference images, across batch boundaries (the rest of a batch split here
    is not used, as the official loader draws a fresh batch per source batch)."""
    parts, have = [], 0
    while have < n:
        b = next(batches)
        parts.append(b[: n - have])
        have += parts[-1].shape[0]
    return torch.cat(parts)
