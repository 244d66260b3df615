"""Per-domain images for the StarGAN v2 protocol: labelled shards, or one subfolder per domain.

A shard set written with labels (`lightning-gans shards --labels-from-subfolders`, the demo
data) gives each sample's domain in its `<key>.json` "label"; a plain folder gives one domain
per immediate subfolder (the official `val/<domain>/` layout), matched to the checkpoint's
domain names when they agree, else taken in sorted order. Images are kept as uint8 and turned
into [-1, 1] float batches on iteration, so a large validation set costs 1 byte per value.
"""

from __future__ import annotations

import json
import os
import tarfile
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import torch

from ..errors import DataError
from .dataset_stats import _decode, _is_image, list_source


class Batches:
    """Re-iterable [-1, 1] float batches [b, 3, R, R] of a uint8 image stack [N, 3, R, R]."""

    def __init__(self, images: torch.Tensor, batch_size: int) -> None:
        self.images, self.batch_size = images, batch_size

    def __len__(self) -> int:
        return -(-self.images.shape[0] // self.batch_size)

    def __iter__(self) -> Iterator[torch.Tensor]:
        for chunk in self.images.split(self.batch_size):
            yield chunk.float() / 127.5 - 1.0


def _labelled_shard_images(files: Sequence[Path]) -> Iterator[tuple[int, bytes]]:
    """(label, image bytes) of every sample of the shards, in tar order."""
    for shard in files:
        pending: dict[str, dict] = {}
        with tarfile.open(shard) as tar:
            for member in tar:
                if not member.isfile():
                    continue
                head, _, base = member.name.rpartition("/")
                key = f"{head}/{base.split('.', 1)[0]}"
                entry = pending.setdefault(key, {})
                data = tar.extractfile(member).read()
                if base.endswith(".json"):
                    entry["label"] = json.loads(data).get("label")
                    if entry["label"] is None:
                        raise DataError(f"{shard}: sample {key} has no label in its .json; the "
                                        "StarGAN v2 protocol needs labelled shards")
                elif _is_image(base):
                    entry["image"] = data
                if "label" in entry and "image" in entry:
                    yield int(entry["label"]), entry["image"]
                    del pending[key]
        if pending:
            key = next(iter(pending))
            raise DataError(f"{shard}: sample {key} has an image without a label (or a label "
                            "without an image); the StarGAN v2 protocol needs labelled shards")


def _stack(arrays: list[np.ndarray]) -> torch.Tensor:
    return torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).contiguous()


def domain_images(
    source: str | os.PathLike,
    resolution: int,                      # images are resized (Lanczos) to R x R
    num_domains: int,
    num_per_domain: int | None = None,    # first N images of each domain (None: all)
    domain_names: Sequence[str] = (),     # the checkpoint's names, to match subfolders
) -> tuple[dict[int, torch.Tensor], list[str]]:
    """({domain: uint8 [n, 3, R, R]}, names by index) of a labelled shard set or a folder."""
    root = Path(source)
    kind, files = list_source(root)
    out: dict[int, list[np.ndarray]] = {d: [] for d in range(num_domains)}
    if kind == "shards":
        manifest = root / "manifest.json"
        labels = (json.loads(manifest.read_text()).get("labels") if manifest.is_file() else None)
        if not labels:
            raise DataError(f"{source}: the StarGAN v2 protocol needs domain labels: shards "
                            "written with labels (lightning-gans shards --labels-from-subfolders) "
                            "or a folder with one subfolder of images per domain")
        names = [n for n, _ in sorted(labels.items(), key=lambda kv: kv[1])]
        for label, data in _labelled_shard_images(files):
            if label >= num_domains:
                raise DataError(f"{source}: label {label} but the model has {num_domains} domains")
            if num_per_domain is None or len(out[label]) < num_per_domain:
                out[label].append(_decode(data, resolution))
    else:
        subdirs = sorted(p for p in root.iterdir() if p.is_dir())
        if len(subdirs) != num_domains:
            raise DataError(f"{source}: found {len(subdirs)} subfolders, the model has "
                            f"{num_domains} domains; give one subfolder of images per domain")
        given = [p.name for p in subdirs]
        names = list(domain_names) if sorted(given) == sorted(domain_names) else given
        for sub in subdirs:
            d = names.index(sub.name)
            for p in list_source(sub)[1][:num_per_domain]:
                out[d].append(_decode(p, resolution))
    empty = [d for d, imgs in out.items() if not imgs]
    if empty:
        raise DataError(f"{source}: no images of domain(s) {empty}")
    return {d: _stack(imgs) for d, imgs in out.items()}, [str(n) for n in names]
