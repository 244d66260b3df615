"""Lightning datamodule: webdataset shards -> DDP ranks -> DataLoader workers -> image batches.

Resolves and checks the shards (manifest.json written by `ShardWriter`), splits the global batch
over ranks, and builds one endless, seeded, exactly resumable `ShardStream` per rank.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Sequence
from pathlib import Path

import pytorch_lightning as pl
import torch
from webdataset.gopen import gopen
from webdataset.shardlists import expand_urls
from webdataset.tariterators import group_by_keys, tar_file_expander

from lightning_gans.data.stream import ShardStream, StreamLoader, image_of
from lightning_gans.errors import DataError

log = logging.getLogger(__name__)


def _is_remote(url: str) -> bool:
    return "://" in url or url.startswith("pipe:")


def read_manifest(path: Path) -> dict:
    """A shard folder's manifest.json; DataError naming the file when it is not one."""
    try:
        manifest = json.loads(Path(path).read_text())
    except (OSError, UnicodeDecodeError, ValueError) as e:
        raise DataError(f"{path} is not a readable JSON manifest ({type(e).__name__}: {e}); "
                        "re-write the shards with `lightning-gans shards`, or delete the file to "
                        "use the folder's *.tar files") from None
    shards = manifest.get("shards") if isinstance(manifest, dict) else None
    if not isinstance(shards, list) or not all(isinstance(s, dict) and "name" in s for s in shards):
        raise DataError(f"{path} has no list of shards ('shards': [{{'name': ...}}]); re-write the "
                        "shards with `lightning-gans shards`, or delete the file")
    return manifest


def resolve_shards(shards: str | os.PathLike | Sequence[str | os.PathLike]
                   ) -> tuple[list[str], dict | None]:
    """A shard folder, brace pattern, URL or list -> (shard urls, manifest or None).

    Local shards must exist (DataError names the first missing one). The manifest is the
    folder's manifest.json, or the one next to local shards given by pattern or list.
    """
    items = [shards] if isinstance(shards, (str, os.PathLike)) else list(shards)
    if not items:
        raise DataError("data.shards is empty: give a shard folder, pattern or list")
    if len(items) == 1 and not _is_remote(str(items[0])) and Path(items[0]).is_dir():
        folder = Path(items[0])
        mpath = folder / "manifest.json"
        if mpath.exists():
            manifest = read_manifest(mpath)
            urls = [str(folder / s["name"]) for s in manifest["shards"]]
        else:
            manifest, urls = None, sorted(str(p) for p in folder.glob("*.tar"))
        if not urls:
            raise DataError(f"no shards in {folder}: write some with "
                            "`lightning-gans shards IMAGE_FOLDER OUT`")
    else:
        urls = [u for item in items for u in expand_urls(str(item))]
        local = [u[5:] if u.startswith("file:") else u for u in urls if not _is_remote(u)]
        dirs = {Path(u).parent for u in local}
        mpath = dirs.pop() / "manifest.json" if len(dirs) == 1 and len(local) == len(urls) else None
        manifest = read_manifest(mpath) if mpath and mpath.exists() else None
    for u in urls:
        path = u[5:] if u.startswith("file:") else u
        if not _is_remote(u) and not Path(path).is_file():
            raise DataError(f"shard {path} not found: check data.shards ({shards})")
    return urls, manifest


class ShardDataModule(pl.LightningDataModule):
    """Endless training batches from webdataset shards (see `ShardStream` for the batch dict).

    `batch_size` is global (images per optimizer step over all ranks); each rank gets
    batch_size // world_size. There is no validation data: GAN metrics use their own sampling.

    Epochs: by default one endless epoch (the DataLoader has no length; stop with
    `max_steps`), so Lightning never restarts the stream. With `epoch_samples`, an epoch is
    max(1, epoch_samples // batch_size) batches per rank, and each epoch continues the stream.

    Resume: every `iter()` of the train DataLoader starts the stream after the batches this
    rank already processed, read from Lightning's restored loop progress (restored before
    `train_dataloader()` is called; `trainer.global_step` is NOT batches under manual
    optimization, it counts every optimizer step). `set_resume_step` overrides it once.
    Exact when the resumed run keeps shards, seed, batch_size, world size and num_workers;
    each corrupt sample the first run dropped shifts the resumed stream by one sample.

    Memory: each worker holds `shuffle_buffer` encoded images (e.g. ~1.5 MB each at 1024 px).
    """

    def __init__(
        self,
        shards: str | os.PathLike | Sequence[str | os.PathLike],  # folder, pattern, URL, list
        resolution: int,            # R: images must be R x R
        batch_size: int,            # global batch over all ranks
        num_workers: int = 2,       # DataLoader workers per rank (0: in the main process)
        xflip: bool = False,        # random x-flip (seeded per sample)
        use_labels: bool = False,   # yield one-hot "c" and "label" from the manifest's labels
        seed: int = 0,
        shuffle_buffer: int = 256,  # raw samples per worker held for shuffling
        epoch_samples: int | None = None,  # images per Lightning epoch (all ranks); None: endless
        max_bad_samples: int = 1000,  # undecodable samples in a row before giving up (DataError)
    ) -> None:
        super().__init__()
        # plain types only: checkpoints must load with torch.load(weights_only=True), which
        # rejects Path and omegaconf ListConfig
        plain = str(shards) if isinstance(shards, (str, os.PathLike)) else [str(s) for s in shards]
        self.save_hyperparameters({
            "shards": plain, "resolution": resolution, "batch_size": batch_size,
            "num_workers": num_workers, "xflip": xflip, "use_labels": use_labels, "seed": seed,
            "shuffle_buffer": shuffle_buffer, "epoch_samples": epoch_samples})
        self.urls, self.manifest = resolve_shards(shards)
        self._resolution, self.batch_size, self.num_workers = resolution, batch_size, num_workers
        self.xflip, self.use_labels, self.seed = xflip, use_labels, seed
        self.shuffle_buffer, self.epoch_samples = shuffle_buffer, epoch_samples
        self.max_bad_samples = int(max_bad_samples)
        where = self.urls[0] if self.manifest is None else f"{shards}"
        labels = (self.manifest or {}).get("labels")
        if use_labels and not labels:
            raise DataError(f"use_labels=True but {where} has no labels in a manifest.json: "
                            "re-shard with --labels-from-subfolders or set data.use_labels=false")
        self._labels = sorted(labels, key=labels.get) if use_labels and labels else []
        if use_labels and [labels[n] for n in self._labels] != list(range(len(self._labels))):
            raise DataError(f"labels of {where} are not 0..{len(self._labels) - 1}: {labels}")
        self._checked = False
        self._resume: int | None = None
        self._loader: StreamLoader | None = None

    @property
    def resolution(self) -> int:
        """Image side R of every batch ("img" is [N, 3, R, R])."""
        return self._resolution

    @property
    def c_dim(self) -> int:
        """Width of the one-hot condition "c": number of labels, 0 without labels."""
        return len(self._labels)

    @property
    def label_names(self) -> list[str]:
        """Label names by index (class/domain names), [] without labels."""
        return list(self._labels)

    @property
    def skipped_samples(self) -> int:
        """Samples the workers of this rank dropped so far (corrupt, non-image, wrong size)."""
        return self._loader.skipped if self._loader is not None else 0

    def set_resume_step(self, step: int) -> None:
        """Next train iterator starts after `step` batches of this rank (once; then Lightning's
        progress rules again). Not needed under Trainer.fit(ckpt_path=...)."""
        self._resume = int(step)

    def _world(self) -> tuple[int, int]:
        t = self.trainer
        return (t.global_rank, t.world_size) if t is not None else (0, 1)

    def per_rank_batch(self) -> int:
        """batch_size // world_size; DataError when it does not divide."""
        _, world = self._world()
        if self.batch_size % world:
            raise DataError(f"data.batch_size={self.batch_size} is not divisible by the "
                            f"{world} ranks: use a multiple of {world}")
        return self.batch_size // world

    def setup(self, stage: str | None = None) -> None:
        self.per_rank_batch()
        if self._checked:
            return
        res, where = (self.manifest or {}).get("resolution"), self.hparams.shards
        if res is None:  # no manifest or mixed sizes: look at the first sample
            res, where = self._first_sample_size(), self.urls[0]
        if res != self._resolution:
            raise DataError(
                f"shards in {where} are {res} px but the model wants {self._resolution} px: "
                f"set data.resolution/model.resolution to {res} or re-shard with "
                f"--resolution {self._resolution}")
        count = (self.manifest or {}).get("count")
        if isinstance(count, int) and count < self.batch_size:
            log.warning("data.shards %s holds only %d image%s, fewer than one batch (%d): the model "
                        "will just memorise %s; use a real dataset (thousands of images)",
                        self.hparams.shards, count, "" if count == 1 else "s", self.batch_size,
                        "it" if count == 1 else "them")
        _, world = self._world()
        if len(self.urls) < world * max(1, self.num_workers):
            log.warning("%d shards for %d ranks x %d workers: readers share shards; re-shard "
                        "with a smaller --maxcount", len(self.urls), world, self.num_workers)
        self._checked = True

    def _first_sample_size(self) -> int:
        url = self.urls[0]
        try:
            with gopen(url) as f:
                for sample in group_by_keys(tar_file_expander([{"url": url, "stream": f}])):
                    try:
                        return image_of(sample).shape[1]
                    except Exception:  # a corrupt first sample: look at the next one
                        continue
        except Exception as e:
            raise DataError(f"cannot read shard {url} ({e}): check the file") from e
        raise DataError(f"no readable image in the first shard {url}: check the shards")

    def _consumed(self) -> int:
        if self._resume is not None:
            step, self._resume = self._resume, None
            return step
        t = self.trainer
        if t is None:
            return 0
        # batches whose training_step ran; a checkpoint from on_train_batch_end has completed
        # one less than processed, and Lightning itself counts that batch as done on restore
        return t.fit_loop.epoch_loop.batch_progress.total.processed

    def train_dataloader(self) -> StreamLoader:
        rank, world = self._world()
        epoch_batches = None
        if self.epoch_samples is not None:
            epoch_batches = max(1, self.epoch_samples // self.batch_size)
        stream = ShardStream(
            self.urls, self._resolution, self.per_rank_batch(), rank=rank, world_size=world,
            seed=self.seed, xflip=self.xflip, num_classes=self.c_dim,
            shuffle_buffer=self.shuffle_buffer, epoch_batches=epoch_batches,
            max_bad_samples=self.max_bad_samples)
        self._loader = StreamLoader(stream, self.num_workers, self._consumed,
                                    pin_memory=torch.cuda.is_available())
        return self._loader
