"""Domain-balanced StarGAN v2 batches (Choi et al., CVPR 2020) over the labelled shard stream.

The official loaders draw sources and references with a class-balanced WeightedRandomSampler
(with replacement) and pair each reference with a second random image of its domain. Here one
endless labelled `ShardStream` feeds a sliding window of its last `window` batches; output
batch b is drawn from the window after underlying batch b, with a generator seeded by
(seed, rank, b): every domain equally likely per slot, images uniformly within the domain.
Batch b therefore depends on underlying batches b-window+1..b only, so a resumed run replays
just those (cheap) and continues exactly.
"""

from __future__ import annotations

import collections
import os
from collections.abc import Callable, Iterator, Sequence

import torch

from lightning_gans.data.datamodule import ShardDataModule
from lightning_gans.data.stream import ShardStream, StreamLoader
from lightning_gans.errors import DataError

__all__ = ["DomainBatches", "DomainDataModule", "balanced_batch"]


def balanced_batch(
    img: torch.Tensor, label: torch.Tensor, num_domains: int, batch_size: int, gen: torch.Generator
) -> dict[str, torch.Tensor]:
    """Draw one StarGAN v2 batch from a pool of images [M,3,R,R] with labels [M] (int64).

    Returns x_src, y_src (sources, domain-balanced), x_ref, x_ref2, y_ref (two references of
    the same domain y_ref, domain-balanced, independent of the sources); images [N,3,R,R],
    labels int64 [N]. Domains absent from the pool are not drawn (DataError if all are).
    """
    present = torch.unique(label)
    present = present[(present >= 0) & (present < num_domains)]
    if present.numel() == 0:
        raise DataError("no labelled images in the batch window: the shards need labels 0..D-1")
    members = {int(d): torch.nonzero(label == d).flatten() for d in present}

    def draw(domains: torch.Tensor) -> torch.Tensor:
        idx = torch.empty_like(domains)
        for d, m in members.items():
            sel = domains == d
            k = int(sel.sum())
            if k:
                idx[sel] = m[torch.randint(len(m), (k,), generator=gen)]
        return idx

    def domains() -> torch.Tensor:
        return present[torch.randint(len(present), (batch_size,), generator=gen)]

    y_src, y_ref = domains(), domains()
    src, ref, ref2 = draw(y_src), draw(y_ref), draw(y_ref)
    return {"x_src": img[src], "y_src": y_src, "x_ref": img[ref], "x_ref2": img[ref2],
            "y_ref": y_ref}


class DomainBatches:
    """Iterable of StarGAN v2 batch dicts over a labelled StreamLoader (see `balanced_batch`).

    Each `iter()` asks `consumed()` how many batches this rank already trained on (B), restarts
    the underlying stream at B - (window - 1) to refill the window, and yields from batch B on.
    Every dict also carries the stream's "skipped" count.
    """

    def __init__(self, loader: StreamLoader, num_domains: int, batch_size: int, seed: int,
                 rank: int, window: int, consumed: Callable[[], int]) -> None:
        if window < 1:
            raise DataError(f"data.window must be >= 1, got {window}")
        self.loader, self.num_domains, self.batch_size = loader, num_domains, batch_size
        self.seed, self.rank, self.window, self._consumed = seed, rank, window, consumed
        self._start = 0
        loader._consumed = lambda: self._start  # the stream restarts where the window begins

    def __iter__(self) -> Iterator[dict[str, torch.Tensor]]:
        b = int(self._consumed())
        self._start = max(0, b - (self.window - 1))
        pool: collections.deque = collections.deque(maxlen=self.window)
        for i, batch in enumerate(self.loader, start=self._start):
            pool.append((batch["img"], batch["label"]))
            if i < b:
                continue
            key = ((self.seed * 1_000_003 + self.rank) * 1_000_000_007 + i) % 2**63
            gen = torch.Generator().manual_seed(key)
            img = torch.cat([p[0] for p in pool])
            label = torch.cat([p[1] for p in pool])
            out = balanced_batch(img, label, self.num_domains, self.batch_size, gen)
            out["skipped"] = batch["skipped"]
            yield out


class DomainDataModule(ShardDataModule):
    """ShardDataModule for StarGAN v2: yields `balanced_batch` dicts (x_src, y_src, x_ref,
    x_ref2, y_ref) of batch_size // world_size images each, domains = the shards' labels.

    The underlying stream reads 3 images per output image (a source and two references) into
    a window of `window` batches; a small domain is thus sampled as often as a large one
    (with replacement, as the official balanced sampler). Endless only (no epoch_samples).
    """

    def __init__(
        self,
        shards: str | os.PathLike | Sequence[str | os.PathLike],
        resolution: int,
        batch_size: int,            # global output batch (sources) over all ranks
        num_workers: int = 2,
        xflip: bool = True,
        seed: int = 0,
        shuffle_buffer: int = 256,
        window: int = 4,            # underlying batches the balanced draw picks from
        num_domains: int | None = None,  # check against the shards' label count when given
    ) -> None:
        super().__init__(shards, resolution, batch_size, num_workers=num_workers, xflip=xflip,
                         use_labels=True, seed=seed, shuffle_buffer=shuffle_buffer)
        self.hparams["window"] = window
        self.window = window
        if num_domains is not None and num_domains != self.c_dim:
            raise DataError(f"model.num_domains={num_domains} but {shards} has {self.c_dim} "
                            f"labels ({self.label_names}): set model.num_domains={self.c_dim}")
        if self.c_dim < 2:
            raise DataError(f"StarGAN v2 needs >= 2 domains; {shards} has {self.c_dim}")

    @property
    def num_domains(self) -> int:
        return self.c_dim

    def train_dataloader(self) -> DomainBatches:  # type: ignore[override]
        rank, world = self._world()
        n = self.per_rank_batch()
        stream = ShardStream(
            self.urls, self._resolution, 3 * n, rank=rank, world_size=world, seed=self.seed,
            xflip=self.xflip, num_classes=self.c_dim, shuffle_buffer=self.shuffle_buffer)
        self._loader = StreamLoader(stream, self.num_workers, pin_memory=torch.cuda.is_available())
        return DomainBatches(self._loader, self.c_dim, n, self.seed, rank, self.window,
                             self._consumed)
