"""Deterministic, resumable batch stream over webdataset shards, one per (rank, worker).

Everything random here is seeded from (seed, rank, worker) strings, never from global RNGs or
the DataLoader base seed, so a stream can be replayed and resumed exactly. Lightning-free:
`ShardDataModule` (datamodule.py) wraps it; tests drive it with explicit rank/world_size.
"""

from __future__ import annotations

import io
import itertools
import json
import logging
import math
import random
import time
from collections.abc import Callable, Iterator

import numpy as np
import torch
import webdataset as wds
from PIL import Image
from torch.utils.data import DataLoader, IterableDataset, get_worker_info
from webdataset.gopen import gopen
from webdataset.tariterators import group_by_keys, tar_file_expander

from lightning_gans.errors import DataError

log = logging.getLogger(__name__)
IMAGE_KEYS = ("png", "jpg", "jpeg", "webp")
MAX_BAD_SAMPLES = 1000   # undecodable samples in a row before a worker gives up
MAX_BAD_SECONDS = 120.0  # or seconds without one decodable sample


def worker_batches_before(consumed: int, worker: int, num_workers: int,
                          epoch_batches: int | None = None) -> int:
    """Batches (logical) `worker` made before its rank consumed `consumed` batches.

    The DataLoader takes batch i of an epoch from worker i % num_workers, and every epoch
    (a new iterator) starts again at worker 0.
    """
    def made(n: int) -> int:  # of the first n batches of one epoch
        return max(0, math.ceil((n - worker) / num_workers))

    if epoch_batches is None:
        return made(consumed)
    epochs, r = divmod(consumed, epoch_batches)
    return epochs * made(epoch_batches) + made(r)


def shard_order(urls: list[str], seed: int) -> Iterator[str]:
    """Endless shard sequence: pass p over the shards is a permutation seeded by (seed, p).

    All ranks and workers share it and each takes every (world_size*num_workers)-th entry, so
    within a pass they read disjoint shards when the shard count divides evenly.
    """
    for p in itertools.count():
        perm = list(urls)
        random.Random(f"lg/{seed}/shards/{p}").shuffle(perm)
        yield from perm


class _SkipLog:
    """Counts samples this worker dropped; warns for the first few, then at 10, 100, ..."""

    def __init__(self, name: str) -> None:
        self.name, self.count = name, 0

    def skip(self, what: str, reason: str) -> None:
        self.count += 1
        n = self.count
        if n <= 3 or (n >= 10 and math.log10(n).is_integer()):
            log.warning("skipped %s: %s (%d skipped so far by %s)", what, reason, n, self.name)


def image_of(sample: dict) -> np.ndarray:
    """The image member of a raw webdataset sample -> uint8 [H, W, 3] RGB. Raises if none."""
    key = next((k for k in IMAGE_KEYS if k in sample), None)
    if key is None:
        members = sorted(k for k in sample if not k.startswith("__"))
        raise ValueError(f"no png/jpg/webp member (has {members})")
    with Image.open(io.BytesIO(sample[key])) as im:
        return np.array(im.convert("RGB"))


def decode_sample(sample: dict, resolution: int, num_classes: int) -> tuple[np.ndarray, int]:
    """Raw webdataset sample -> (uint8 [R, R, 3] RGB, label or -1). Raises on a bad sample."""
    rgb = image_of(sample)
    if rgb.shape[:2] != (resolution, resolution):
        raise ValueError(f"image is {rgb.shape[1]}x{rgb.shape[0]}, not {resolution}x{resolution}")
    label = -1
    if num_classes:
        label = json.loads(sample["json"])["label"] if "json" in sample else None
        if not isinstance(label, int) or not 0 <= label < num_classes:
            raise ValueError(f"label {label!r} is not an int in [0, {num_classes})")
    return rgb, label


class ShardStream(IterableDataset):
    """Endless stream of batches for one rank; each DataLoader worker makes its own batches.

    Yields dicts: "img" float32 [N, 3, R, R] in [-1, 1]; "c" float32 [N, num_classes] one-hot
    ([N, 0] without labels); "label" int64 [N] (only with labels); "skipped" int64 [] =
    samples this worker dropped so far (corrupt image, non-image member, wrong size, bad label).

    Resume: `start_batch` = batches this rank already consumed; each worker skips the raw
    samples it had turned into those batches (before decoding, so it is cheap) and takes over
    the DataLoader slot that comes next. Exact as long as no sample was dropped; every dropped
    sample of the first run shifts that worker's resumed stream by one sample.
    `epoch_batches` (per rank): batches per epoch, or None for one endless epoch.
    """

    def __init__(
        self,
        urls: list[str],
        resolution: int,            # R: every image must be R x R
        batch_size: int,            # N: per-rank batch
        rank: int = 0,
        world_size: int = 1,
        seed: int = 0,
        xflip: bool = False,        # mirror half the images (seeded per sample)
        num_classes: int = 0,       # > 0: read "label" from <key>.json
        shuffle_buffer: int = 256,  # raw samples held for shuffling (<= 1: no shuffle)
        epoch_batches: int | None = None,
        start_batch: int = 0,
        max_bad_samples: int = MAX_BAD_SAMPLES,    # give up after this many bad samples in a row
        max_bad_seconds: float = MAX_BAD_SECONDS,  # ... or this long without a good one
    ) -> None:
        super().__init__()
        if not urls:
            raise DataError("ShardStream got no shard urls")
        self.urls, self.resolution, self.batch_size = list(urls), resolution, batch_size
        self.rank, self.world_size, self.seed = rank, world_size, seed
        self.xflip, self.num_classes, self.shuffle_buffer = xflip, num_classes, shuffle_buffer
        self.epoch_batches, self.start_batch = epoch_batches, start_batch
        self.max_bad_samples, self.max_bad_seconds = int(max_bad_samples), float(max_bad_seconds)

    def __len__(self) -> int:
        if self.epoch_batches is None:  # endless: look unsized to DataLoader and Lightning
            raise TypeError("ShardStream without epoch_batches has no length")
        return self.epoch_batches

    def __iter__(self) -> Iterator[dict]:
        info = get_worker_info()
        W, j = (info.num_workers, info.id) if info else (1, 0)
        if info is not None:
            torch.set_num_threads(1)  # W workers x default threads oversubscribe the CPUs
        B, N = self.start_batch, self.epoch_batches
        r = B % N if N else B  # position inside the current epoch
        w = (j + r) % W  # logical worker: the one whose turn this DataLoader slot is
        tag = f"lg/{self.seed}/{self.rank}/{w}"
        slots = self.world_size * W
        skiplog = _SkipLog(f"rank {self.rank} worker {w}")
        shards = itertools.islice(shard_order(self.urls, self.seed), self.rank * W + w, None, slots)
        flips = random.Random(f"{tag}/flip")
        stages: list[Callable] = [lambda: shards, lambda src: self._read(src, skiplog)]
        if self.shuffle_buffer > 1:
            stages.append(wds.shuffle(self.shuffle_buffer, self.shuffle_buffer,
                                      rng=random.Random(f"{tag}/shuffle")))
        skip = worker_batches_before(B, w, W, N) * self.batch_size
        stages += [
            # a flip bit for every raw sample, skipped ones too, so a resumed stream flips alike
            lambda src: ({**s, "__flip__": flips.random() < 0.5} for s in src),
            lambda src: itertools.islice(src, skip, None),
            lambda src: self._decode(src, skiplog),
            wds.batched(self.batch_size, partial=False,
                        collation_fn=lambda b: self._collate(b, skiplog)),
        ]
        pipe = wds.DataPipeline(*stages)
        if N is None:
            return iter(pipe)
        share = math.ceil((N - r - j) / W)  # this slot's batches in the rest of the epoch
        return iter(pipe.with_epoch(share)) if share > 0 else iter(())

    def _read(self, shards: Iterator[str], skiplog: _SkipLog) -> Iterator[dict]:
        failed = 0
        for url in shards:
            try:
                with gopen(url) as f:  # closed here, not whenever the GC gets to it
                    for sample in group_by_keys(tar_file_expander([{"url": url, "stream": f}])):
                        failed = 0
                        yield sample
            except Exception as e:  # truncated/unreadable tar: lose its rest, keep training
                skiplog.skip(url, f"unreadable shard ({type(e).__name__}: {e})")
                failed += 1
                if failed > 2 * len(self.urls) + 2:
                    raise DataError(f"no readable samples in {len(self.urls)} shards "
                                    f"(last: {url}): check the files") from e

    def _decode(self, src: Iterator[dict], skiplog: _SkipLog) -> Iterator[tuple]:
        bad, since = 0, time.monotonic()  # bad samples in a row; time of the last good one
        for s in src:
            try:  # one bad sample must never stop a long run: count it and go on
                rgb, label = decode_sample(s, self.resolution, self.num_classes)
            except Exception as e:
                why = f"{type(e).__name__}: {e}"
                skiplog.skip(f"{s.get('__url__')}:{s.get('__key__')}", why)
                bad += 1
                waited = time.monotonic() - since
                if bad >= self.max_bad_samples or waited > self.max_bad_seconds:
                    raise DataError(
                        f"gave up on the shards ({len(self.urls)} files, e.g. {self.urls[0]}): "
                        f"{bad} samples in a row could not be used ({waited:.0f} s without a good "
                        f"one; last: {s.get('__key__')}: {why}); check or re-write them with "
                        "`lightning-gans shards` (+data.max_bad_samples=N allows more)") from None
                continue
            bad, since = 0, time.monotonic()
            yield (rgb[:, ::-1] if self.xflip and s["__flip__"] else rgb), label

    def _collate(self, batch: list[tuple], skiplog: _SkipLog) -> dict:
        img = torch.from_numpy(np.stack([b[0] for b in batch]))  # [N, R, R, 3] uint8
        img = img.permute(0, 3, 1, 2).float().div_(127.5).sub_(1.0).contiguous()
        out = {"img": img, "skipped": torch.tensor(skiplog.count, dtype=torch.int64)}
        if self.num_classes:
            label = torch.tensor([b[1] for b in batch], dtype=torch.int64)
            out["label"] = label
            out["c"] = torch.nn.functional.one_hot(label, self.num_classes).float()
        else:
            out["c"] = torch.zeros(len(batch), 0)
        return out


class StreamLoader(DataLoader):
    """DataLoader over a ShardStream that (re)starts the stream where the rank left off.

    Each `iter()` sets `start_batch` from `consumed()` before the workers start, so a resumed run
    and every new epoch continue the stream instead of replaying it (hence no persistent
    workers). `skipped` sums the latest per-worker skip counts (batch k comes from worker k % W).
    """

    def __init__(self, stream: ShardStream, num_workers: int = 0,
                 consumed: Callable[[], int] = lambda: 0, pin_memory: bool = False) -> None:
        super().__init__(stream, batch_size=None, num_workers=num_workers, pin_memory=pin_memory,
                         persistent_workers=False)
        self._consumed = consumed
        self.skipped = 0

    def __iter__(self) -> Iterator[dict]:  # type: ignore[override]
        assert isinstance(self.dataset, ShardStream)
        self.dataset.start_batch = self._consumed()
        return self._counting(super().__iter__(), max(1, self.num_workers))

    def _counting(self, it: Iterator[dict], W: int) -> Iterator[dict]:
        base, latest = self.skipped, [0] * W
        for k, batch in enumerate(it):
            latest[k % W] = int(batch["skipped"])
            before, self.skipped = self.skipped, base + sum(latest)
            self._announce(before, self.skipped)
            yield batch

    def _announce(self, before: int, now: int) -> None:
        """On the console (the main process; workers log each skip to train.log): the first
        skips, then each time the count passes a power of ten."""
        if now > before and (before == 0 or int(math.log10(max(now, 1))) > int(math.log10(max(before, 1)))):
            log.warning("data: %d samples skipped so far (corrupt, unreadable, wrong size or "
                        "label; each is listed in the log; logged as data/skipped)", now)
