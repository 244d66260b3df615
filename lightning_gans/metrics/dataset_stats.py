"""Feature statistics of an image folder or a webdataset shard set, cached on disk.

The reference side of FID/KID (Heusel et al. 2017; Binkowski et al. 2018), computed once per
(source content, resolution, feature network file, N) as StyleGAN2-ADA caches its dataset stats.
A source is either a folder of images (searched recursively, sorted by relative path) or a shard
set: a folder of webdataset `*.tar` shards (the shards listed in `manifest.json` in its order,
else all of them sorted by name), every image member in tar order. The first N images are used.

The cache key hashes the source's content (the manifest's sha256 of the shard bytes plus shard
names and sizes; without one, the sorted file list with sizes and mtimes), the resolution, the
feature network's identity (format + file hash + resize convention), N, and whether all
features are kept. Cache files are .npz written atomically and
read without pickle.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import tarfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from ..errors import DataError
from ..progress import bar
from .stats import FeatureStats

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".ppm", ".tif", ".tiff")


log = logging.getLogger(__name__)

def _is_image(name: str) -> bool:
    return name.lower().endswith(IMAGE_EXTENSIONS)


def _manifest(root: Path) -> dict | None:
    path = root / "manifest.json"
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise DataError(f"{path} is not valid JSON ({e}); rewrite the shard set") from e


def list_source(source: str | os.PathLike) -> tuple[str, list[Path]]:
    """("shards" | "folder", files in canonical order).

    Shards: those listed in manifest.json (the project's ShardWriter layout), else all *.tar
    sorted by name. Folder: images found recursively, sorted by relative path."""
    root = Path(source)
    if not root.is_dir():
        raise DataError(f"{source} is not a folder of images or of .tar shards")
    manifest = _manifest(root)
    if manifest and manifest.get("shards"):
        shards = [root / s["name"] for s in manifest["shards"]]
        missing = [p.name for p in shards if not p.is_file()]
        if missing:
            raise DataError(f"{root}/manifest.json lists {len(missing)} missing shard(s), "
                            f"e.g. {missing[0]}: restore them or rewrite the shard set")
        return "shards", shards
    shards = sorted(root.glob("*.tar"))
    if shards:
        return "shards", shards
    images = sorted((p for p in root.rglob("*") if p.is_file() and _is_image(p.name)),
                    key=lambda p: p.relative_to(root).as_posix())
    if not images:
        raise DataError(f"{source} holds no images ({', '.join(IMAGE_EXTENSIONS)}) and no "
                        ".tar shards")
    return "folder", images


def source_fingerprint(source: str | os.PathLike) -> str:
    """SHA-256 naming the source's content: the manifest's content hash (sha256 of the shard
    bytes, written by ShardWriter) with shard names and sizes when there is one, else the
    sorted file list with sizes and mtimes."""
    root = Path(source)
    kind, files = list_source(root)
    h = hashlib.sha256(kind.encode())
    content = (_manifest(root) or {}).get("sha256") if kind == "shards" else None
    if content:
        h.update(f"manifest-sha256\0{content}\n".encode())
    for p in files:
        st = p.stat()
        stamp = "" if content else f"\0{st.st_mtime_ns}"
        h.update(f"{p.relative_to(root).as_posix()}\0{st.st_size}{stamp}\n".encode())
    return h.hexdigest()


def _decode(data: bytes | Path, resolution: int | None) -> np.ndarray:
    with Image.open(data if isinstance(data, Path) else io.BytesIO(data)) as im:
        im = im.convert("RGB")
        if resolution is not None and im.size != (resolution, resolution):
            # Lanczos, as StyleGAN2-ADA's dataset_tool resizes real images.
            im = im.resize((resolution, resolution), Image.LANCZOS)
        return np.asarray(im, dtype=np.uint8)


def iter_images(
    source: str | os.PathLike, resolution: int | None = None
) -> Iterator[np.ndarray]:
    """Decoded images, uint8 [H, W, 3], in the source's canonical order."""
    kind, files = list_source(source)
    skipped: list[str] = []

    def decoded(data, name: str):
        try:
            return _decode(data, resolution)
        except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as e:
            # a corrupt or truncated image: skipped and counted, as the training data loader does
            skipped.append(f"{name}: {type(e).__name__}: {e}")
            if len(skipped) <= 3:
                log.warning("skipped unreadable image %s (%s: %s)", name, type(e).__name__, e)
            return None

    try:
        if kind == "folder":
            for p in files:
                img = decoded(p, str(p))
                if img is not None:
                    yield img
            return
        for shard in files:
            with tarfile.open(shard) as tar:
                for member in tar:
                    if member.isfile() and _is_image(member.name):
                        img = decoded(tar.extractfile(member).read(), f"{shard}:{member.name}")
                        if img is not None:
                            yield img
    finally:
        if skipped:
            log.warning("%s: skipped %d unreadable images (first: %s)", source, len(skipped), skipped[0])


def iter_batches(
    source: str | os.PathLike, batch_size: int, num_images: int | None,
    resolution: int | None = None,
) -> Iterator[torch.Tensor]:
    """Float [B, 3, H, W] in [0, 255]; a batch is cut early when the image size changes."""
    batch: list[np.ndarray] = []
    count = 0
    for img in iter_images(source, resolution):
        if num_images is not None and count >= num_images:
            break
        if batch and (img.shape != batch[0].shape or len(batch) == batch_size):
            yield torch.from_numpy(np.stack(batch)).permute(0, 3, 1, 2).float()
            batch = []
        batch.append(img)
        count += 1
    if batch:
        yield torch.from_numpy(np.stack(batch)).permute(0, 3, 1, 2).float()


def stats_cache_path(
    source: str | os.PathLike, cache_dir: str | os.PathLike, feature_identity: str,
    num_images: int | None, resolution: int | None, capture_all: bool,
) -> Path:
    key = json.dumps({
        "source": source_fingerprint(source), "features": feature_identity, "num": num_images,
        "resolution": resolution, "capture_all": capture_all,
    }, sort_keys=True)
    digest = hashlib.sha256(key.encode()).hexdigest()[:20]
    return Path(cache_dir) / f"{Path(source).resolve().name}-{digest}.npz"


def compute_feature_stats(
    source: str | os.PathLike,
    feature_net: torch.nn.Module,     # images [N, 3, H, W] in [0, 255] -> [N, D]; has .identity
    num_images: int | None = None,    # first N images of the source; None = all
    batch_size: int = 32,
    cache_dir: str | os.PathLike | None = None,
    *,
    resolution: int | None = None,    # resize every image to this square size first (Lanczos)
    capture_all: bool = False,        # keep all features (KID, precision/recall)
) -> FeatureStats:
    """FeatureStats of a folder or shard set, loaded from / saved to `cache_dir` if given."""
    cache = None
    if cache_dir is not None:
        identity = getattr(feature_net, "identity", None)
        if identity is None:
            raise ValueError("caching needs a feature_net with an `identity` string")
        cache = stats_cache_path(source, cache_dir, identity, num_images, resolution,
                                 capture_all)
        if cache.is_file():
            with np.load(cache, allow_pickle=False) as z:
                return FeatureStats.from_state_dict(dict(z))
    stats = FeatureStats(capture_all=capture_all, max_items=num_images)
    with bar(num_images, f"features of {Path(source).name}") as progress:
        for batch in iter_batches(source, batch_size, num_images, resolution):
            stats.append(feature_net(batch))
            progress.update(len(batch))
    if stats.num_items < 2:
        raise DataError(f"{source}: need at least 2 images for feature statistics, found "
                        f"{stats.num_items}")
    if cache is not None:
        cache.parent.mkdir(parents=True, exist_ok=True)
        tmp = cache.with_name(f"{cache.name}.{os.getpid()}.tmp.npz")
        np.savez(tmp, **stats.state_dict())
        os.replace(tmp, cache)  # atomic: concurrent ranks/processes never read a partial file
    return stats
