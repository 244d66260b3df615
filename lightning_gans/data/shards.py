"""The one shard writer: encoded images -> webdataset tar shards + a self-describing manifest.

Every dataset of the project (folder ingestion, face preparation, demo data) goes through
`ShardWriter`, so all shards share one layout: `OUT/{prefix}-{i:06d}.tar` holding
`<key>.{png,jpg,webp}` and an optional `<key>.json`, next to `OUT/manifest.json`.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import tarfile
from pathlib import Path
from typing import Any

from PIL import Image

from lightning_gans.data.images import center_square, encode, to_rgb
from lightning_gans.errors import DataError
from lightning_gans.progress import bar

FORMAT_VERSION = 1
IMAGE_EXTS = {"png": "PNG", "jpg": "JPEG", "webp": "WEBP"}  # shard ext -> PIL format name
FOLDER_EXTS = {".jpg", ".jpeg", ".png", ".webp", ".bmp"}
# No dots (webdataset splits key from extension at the first dot of the basename), no leading
# "/" or "..", and not "__x__" (webdataset treats those names as tar metadata).
_KEY_RE = re.compile(r"^(?!__)[A-Za-z0-9_-]+(/[A-Za-z0-9_-]+)*$")
_MTIME = 946684800  # fixed member time (2000-01-01): the same samples give byte-identical shards


class _HashingFile:
    """Write-through file wrapper that hashes what tarfile writes (no second read)."""

    def __init__(self, f: Any) -> None:
        self.f, self.sha, self.n = f, hashlib.sha256(), 0

    def write(self, b: bytes) -> int:
        self.sha.update(b)
        self.n += len(b)
        return self.f.write(b)

    def tell(self) -> int:
        return self.n


def _atomic_write_json(path: Path, obj: dict) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "w") as f:
        json.dump(obj, f, indent=1)
        f.write("\n")
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


class ShardWriter:
    """Writes already-encoded images into tar shards of at most `maxcount` samples each.

    A shard is written under a hidden temp name (`.{prefix}-{i:06d}.tar.<pid>.tmp`) and renamed
    when full or on `close()`, so a killed run never leaves a half `.tar`. `close()` writes
    `manifest.json` atomically. Leaving the `with` block on an exception drops the open shard
    and writes no manifest. With `append=True` new shards continue after the existing ones and
    the manifest is merged. One writer per folder at a time.
    """

    def __init__(
        self,
        out_dir: str | os.PathLike,
        prefix: str = "shard",      # shard file prefix: {prefix}-{i:06d}.tar
        maxcount: int = 1000,       # samples per shard
        resolution: int | None = None,  # if set, every image must be resolution x resolution
        append: bool = False,       # continue an existing shard folder
    ) -> None:
        if maxcount < 1:
            raise DataError(f"ShardWriter maxcount={maxcount}: must be >= 1")
        if not re.fullmatch(r"[A-Za-z0-9_.-]+", prefix):
            raise DataError(f"ShardWriter prefix {prefix!r}: use letters, digits, '_', '-', '.'")
        self.out_dir, self.prefix, self.maxcount = Path(out_dir), prefix, maxcount
        self.resolution = resolution
        self.out_dir.mkdir(parents=True, exist_ok=True)
        manifest_path = self.out_dir / "manifest.json"
        on_disk = sorted(self.out_dir.glob(f"{prefix}-*.tar"))
        self._old: dict | None = None
        if manifest_path.exists() and not append:
            raise DataError(f"{manifest_path} exists: pass append=True to add shards, "
                            "or write into an empty folder")
        if manifest_path.exists():
            self._old = json.loads(manifest_path.read_text())
            old_res = self._old.get("resolution")
            if resolution is not None and old_res not in (None, resolution):
                raise DataError(f"{manifest_path} holds {old_res} px images: cannot append "
                                f"{resolution} px images; use another folder")
        listed = {s["name"] for s in (self._old or {}).get("shards", [])}
        orphans = [p.name for p in on_disk if p.name not in listed]
        if orphans:
            raise DataError(f"{self.out_dir} holds shards not in its manifest.json ({orphans[0]}, "
                            "an interrupted run?): delete them or use an empty folder")
        indices = [int(m.group(1)) for n in listed if (m := re.search(r"-(\d+)\.tar$", n))]
        self._next_index = max(indices, default=-1) + 1
        self._shards: list[dict] = []
        self._labels: dict[str, int] = {}
        self._label_counts: dict[str, int] = {}
        self._labelled: bool | None = None  # all samples carry a label, or none does
        self._sizes: set[int] = set()
        self._keys: set[str] = set()
        self._tar: tarfile.TarFile | None = None
        self._file: Any = None
        self._hash: _HashingFile | None = None
        self._tmp: Path | None = None
        self._count = 0
        self._manifest: dict | None = None
        if self._old and self._old.get("labels"):
            self._labels = dict(self._old["labels"])
            self._labelled = True
        elif self._old and self._old.get("count", 0) > 0:
            self._labelled = False

    # -- writing -----------------------------------------------------------------------------
    def write(self, key: str, image: bytes, ext: str, meta: dict | None = None) -> None:
        """Adds one sample: `image` is encoded png/jpg/webp bytes; `meta` becomes `<key>.json`.

        A `meta` with "label" (int >= 0) and "label_name" (str) marks a class/domain; then every
        sample of the folder must have one.
        """
        if self._manifest is not None:
            raise DataError(f"ShardWriter({self.out_dir}) is closed: cannot write {key!r}")
        ext = ext.lower().lstrip(".")
        ext = "jpg" if ext == "jpeg" else ext
        if ext not in IMAGE_EXTS:
            raise DataError(f"sample {key!r}: ext {ext!r} is not one of png, jpg, webp")
        if not _KEY_RE.match(key):
            raise DataError(f"sample key {key!r}: use letters, digits, '_', '-' and '/' "
                            "(no dots, no leading '__')")
        if key in self._keys:
            raise DataError(f"sample key {key!r} written twice to {self.out_dir}: "
                            "keys must be unique")
        try:  # header only: cheap, and catches non-image bytes before they reach a shard
            with Image.open(io.BytesIO(image)) as im:
                fmt, (w, h) = im.format, im.size
        except Exception as e:
            raise DataError(f"sample {key!r}: image bytes are not a readable image ({e})") from e
        if fmt != IMAGE_EXTS[ext]:
            raise DataError(f"sample {key!r}: bytes are {fmt} but ext is {ext!r}")
        if self.resolution is not None and (w, h) != (self.resolution, self.resolution):
            raise DataError(f"sample {key!r} is {w}x{h} but the writer was opened with "
                            f"resolution={self.resolution}: resize it first")
        self._check_label(key, meta)
        if self._tar is None:
            self._open_shard()
        assert self._tar is not None
        self._add(f"{key}.{ext}", image)
        if meta is not None:
            self._add(f"{key}.json", json.dumps(meta, sort_keys=True).encode())
        self._keys.add(key)
        self._sizes.add(w if w == h else -1)
        self._count += 1
        if self._count >= self.maxcount:
            self._finish_shard()

    def _check_label(self, key: str, meta: dict | None) -> None:
        has = meta is not None and "label" in meta
        if self._labelled is not None and has != self._labelled:
            raise DataError(f"sample {key!r}: every sample of {self.out_dir} must have a "
                            "'label' in meta, or none")
        if not has:
            self._labelled = False
            return
        assert meta is not None
        label, name = meta["label"], str(meta.get("label_name", meta["label"]))
        if not isinstance(label, int) or label < 0:
            raise DataError(f"sample {key!r}: meta label {label!r} must be an int >= 0")
        if self._labels.get(name, label) != label or (
            name not in self._labels and label in self._labels.values()
        ):
            raise DataError(f"sample {key!r}: label {label} / {name!r} conflicts with the "
                            f"labels already written {self._labels}")
        self._labelled = True
        self._labels[name] = label
        self._label_counts[name] = self._label_counts.get(name, 0) + 1

    def _add(self, name: str, data: bytes) -> None:
        info = tarfile.TarInfo(name)
        info.size, info.mtime, info.mode = len(data), _MTIME, 0o644
        assert self._tar is not None
        self._tar.addfile(info, io.BytesIO(data))

    def _open_shard(self) -> None:
        name = f"{self.prefix}-{self._next_index:06d}.tar"
        self._tmp = self.out_dir / f".{name}.{os.getpid()}.tmp"
        self._file = open(self._tmp, "wb")
        self._hash = _HashingFile(self._file)
        self._tar = tarfile.open(fileobj=self._hash, mode="w", format=tarfile.PAX_FORMAT)
        self._count = 0

    def _finish_shard(self) -> None:
        assert self._tar is not None and self._hash is not None and self._tmp is not None
        self._tar.close()
        self._file.flush()
        os.fsync(self._file.fileno())
        self._file.close()
        name = f"{self.prefix}-{self._next_index:06d}.tar"
        os.replace(self._tmp, self.out_dir / name)
        sha = self._hash.sha.hexdigest()
        self._shards.append({"name": name, "count": self._count, "sha256": sha})
        self._next_index += 1
        self._tar = self._file = self._hash = self._tmp = None

    # -- closing -----------------------------------------------------------------------------
    def close(self) -> dict:
        """Finishes the open shard, writes `out_dir/manifest.json` atomically and returns it."""
        if self._manifest is not None:
            return self._manifest
        if self._tar is not None:
            self._finish_shard()
        old = self._old or {"count": 0, "shards": [], "labels": None, "resolution": None}
        shards = list(old["shards"]) + self._shards
        new_res = next(iter(self._sizes)) if len(self._sizes) == 1 else None
        new_res = None if new_res == -1 else new_res  # -1 marks a non-square image
        if not self._shards:  # nothing new: keep what was there
            res = old.get("resolution")
        elif old["count"] == 0 or old.get("resolution") == new_res:
            res = new_res
        else:
            res = None  # mixed sizes across appends
        counts = dict(old.get("label_counts") or {})
        for name, n in self._label_counts.items():
            counts[name] = counts.get(name, 0) + n
        labels = None
        if self._labelled:
            labels = dict(sorted(self._labels.items(), key=lambda kv: kv[1]))
        self._manifest = {
            "format_version": FORMAT_VERSION,
            "resolution": res,
            "count": sum(s["count"] for s in shards),
            "shards": shards,
            "labels": labels,
            "label_counts": {n: counts.get(n, 0) for n in labels} if labels else None,
            # fingerprint of the exact bytes (e.g. to key cached FID statistics of this dataset)
            "sha256": hashlib.sha256("".join(s["sha256"] for s in shards).encode()).hexdigest(),
        }
        _atomic_write_json(self.out_dir / "manifest.json", self._manifest)
        return self._manifest

    def abort(self) -> None:
        """Drops the open shard (finished shards stay) and writes no manifest."""
        if self._tar is not None:
            self._file.close()
            assert self._tmp is not None
            self._tmp.unlink(missing_ok=True)
            self._tar = self._file = self._hash = self._tmp = None
        self._manifest = {"aborted": True}

    def __enter__(self) -> ShardWriter:
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()


# -- folder ingestion --------------------------------------------------------------------------
def shards_from_folder(
    folder: str | os.PathLike,
    out_dir: str | os.PathLike,
    resolution: int | None = None,
    labels_from_subfolders: bool = False,
    maxcount: int = 1000,
    ext: str = "png",
) -> dict:
    """Images under `folder` (a folder searched recursively, a .zip or a .tar) -> square RGB
    shards in `out_dir`; returns the manifest.

    The returned dict also has "skipped": ["relative/path: reason", ...] for unreadable or
    unsupported files (not fatal, not written to manifest.json). With `labels_from_subfolders`,
    each first-level subfolder is a class (sorted names -> 0, 1, ...; files directly at the top
    are skipped), stored per sample as {"label": int, "label_name": str}.
    """
    from .faces.sources import open_source  # the one lister of folders, zips and tars

    source = open_source(folder, exclude=out_dir)
    listing = source.list()
    skipped = [f"{rel}: {reason} ({detail})" for rel, reason, detail in listing.problems]
    files = listing.files
    if not files:
        raise DataError(f"no images (jpg, png, webp, bmp, tiff) in {folder}")
    classes: dict[str, int] = {}
    if labels_from_subfolders:
        names = sorted({rel.split("/", 1)[0] for rel in files if "/" in rel})
        if not names:
            raise DataError(f"--labels-from-subfolders: {folder} has no subfolders with images")
        classes = {n: i for i, n in enumerate(names)}
        skipped += [f"{rel}: not in a class subfolder" for rel in files if "/" not in rel]
        files = [rel for rel in files if "/" in rel]
    with ShardWriter(out_dir, maxcount=maxcount, resolution=resolution) as writer, \
            bar(len(files), "shards") as progress:
        n = 0
        for rel, data in source.read(files):
            progress.update(1)
            if isinstance(data, tuple):  # (reason, detail) from the lister
                skipped.append(f"{rel}: {data[0]} ({data[1]})")
                continue
            meta: dict[str, Any] = {"source": rel}
            if labels_from_subfolders:
                meta["label_name"] = rel.split("/", 1)[0]
                meta["label"] = classes[meta["label_name"]]
            try:  # any decode failure of one file is that file's problem, never the run's
                with Image.open(io.BytesIO(data)) as im:
                    im.load()
                    encoded = encode(center_square(to_rgb(im), resolution), ext)
            except Exception as e:
                skipped.append(f"{rel}: {type(e).__name__}: {e}".replace("\n", " "))
                continue
            writer.write(f"{n:08d}", encoded, ext, meta)
            n += 1
        manifest = writer.close()
    if manifest["count"] == 0:
        raise DataError(f"none of the {len(files)} image files in {folder} could be read "
                        f"(first: {skipped[0] if skipped else 'none'})")
    return {**manifest, "skipped": skipped}
