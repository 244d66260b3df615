"""Input listing for face preparation: a folder (recursive, symlink-loop safe), a .zip or a .tar.

Each source lists its image files as posix paths relative to its root (the keys of report.json
and of a --landmarks file), notes what it cannot use (with a reason) and reads bytes in order.
"""

from __future__ import annotations

import errno
import os
import stat
import tarfile
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from ...errors import DataError
from .decode import IMAGE_EXTENSIONS, TOO_LARGE

UNREADABLE = "unreadable"
SYMLINK_LOOP = "symlink loop"
LINKED_TWICE = "folder linked twice"
UNSUPPORTED = "unsupported extension"
MAX_FILE_BYTES = 512 * 1024 * 1024  # no photo is larger; a bigger member is a bomb or a video


@dataclass
class Listing:
    """`files`: image paths to process, in a stable order. `problems`: (path, reason, detail)."""

    files: list[str] = field(default_factory=list)
    problems: list[tuple[str, str, str]] = field(default_factory=list)


def _skip_name(name: str) -> bool:
    # Hidden files (.DS_Store, editor temp files) and macOS resource forks are never photos.
    return name.startswith(".") or name == "__MACOSX"


def _classify(rel: str, listing: Listing) -> None:
    if Path(rel).suffix.lower() in IMAGE_EXTENSIONS:
        listing.files.append(rel)
    else:
        listing.problems.append((rel, UNSUPPORTED, Path(rel).suffix or "no extension"))


def _os_reason(e: OSError) -> str:
    return SYMLINK_LOOP if e.errno == errno.ELOOP else UNREADABLE


class Source:
    """Base: `list()` once, then `read(wanted)` yields (path, bytes | (reason, detail))."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def list(self) -> Listing:
        raise NotImplementedError

    def read(self, wanted: list[str]) -> Iterator[tuple[str, bytes | tuple[str, str]]]:
        raise NotImplementedError


class FolderSource(Source):
    def __init__(self, path: Path, exclude: Path | None = None) -> None:
        super().__init__(path)
        self.exclude = exclude.resolve() if exclude is not None else None

    def list(self) -> Listing:
        listing, seen = Listing(), set()

        def walk(folder: Path, rel: str, ancestors: frozenset) -> None:
            try:
                st = folder.stat()
                entries = sorted(os.scandir(folder), key=lambda e: e.name)
            except OSError as e:
                listing.problems.append((rel or ".", _os_reason(e), e.strerror or str(e)))
                return
            ident = (st.st_dev, st.st_ino)
            if ident in ancestors:  # a link back to a folder we are inside of
                listing.problems.append((rel, SYMLINK_LOOP, "links to a folder above it"))
                return
            if ident in seen:  # a second link to a folder already listed: list it once
                listing.problems.append((rel, LINKED_TWICE, "its photos are listed elsewhere"))
                return
            seen.add(ident)
            ancestors = ancestors | {ident}
            for entry in entries:
                child = f"{rel}/{entry.name}" if rel else entry.name
                if _skip_name(entry.name):
                    continue
                try:
                    is_dir = entry.is_dir()  # follows symlinks
                except OSError as e:
                    listing.problems.append((child, _os_reason(e), e.strerror or str(e)))
                    continue
                if is_dir:
                    if self.exclude is not None and Path(entry.path).resolve() == self.exclude:
                        continue  # OUT inside INPUT: never ingest our own output
                    walk(Path(entry.path), child, ancestors)
                elif entry.is_symlink() and not os.path.exists(entry.path):
                    try:  # a dangling link or a link loop: say which
                        os.stat(entry.path)
                    except OSError as e:
                        detail = "broken link" if e.errno == errno.ENOENT else e.strerror
                        listing.problems.append((child, _os_reason(e), detail or str(e)))
                else:
                    _classify(child, listing)

        walk(self.path, "", frozenset())
        return listing

    def read(self, wanted: list[str]) -> Iterator[tuple[str, bytes | tuple[str, str]]]:
        for rel in wanted:
            p = self.path / rel
            try:
                size = p.stat().st_size
                if size > MAX_FILE_BYTES:
                    yield rel, (TOO_LARGE, f"{size} bytes")
                    continue
                yield rel, p.read_bytes()
            except OSError as e:
                yield rel, (_os_reason(e), e.strerror or str(e))


class ZipSource(Source):
    def list(self) -> Listing:
        listing = Listing()
        try:
            with zipfile.ZipFile(self.path) as zf:
                infos = zf.infolist()
        except (zipfile.BadZipFile, OSError) as e:
            raise DataError(f"{self.path} is not a readable zip ({e}): re-create it") from e
        for info in sorted(infos, key=lambda i: i.filename):
            rel = info.filename.lstrip("/")
            if info.is_dir() or any(_skip_name(part) for part in rel.split("/")):
                continue
            if stat.S_ISLNK(info.external_attr >> 16):
                listing.problems.append((rel, UNREADABLE, "symlink inside zip"))
                continue
            _classify(rel, listing)
        return listing

    def read(self, wanted: list[str]) -> Iterator[tuple[str, bytes | tuple[str, str]]]:
        with zipfile.ZipFile(self.path) as zf:
            names = {i.filename.lstrip("/"): i for i in zf.infolist()}
            for rel in wanted:
                info = names[rel]
                if info.file_size > MAX_FILE_BYTES:
                    yield rel, (TOO_LARGE, f"{info.file_size} bytes uncompressed")
                    continue
                try:
                    yield rel, zf.read(info)
                except (zipfile.BadZipFile, RuntimeError, NotImplementedError, OSError,
                        EOFError, ValueError) as e:  # CRC error, encrypted, odd compression
                    yield rel, (UNREADABLE, str(e))


def _tar_rel(name: str) -> str:
    while name.startswith("./"):
        name = name[2:]
    return name.lstrip("/")


class TarSource(Source):
    """Plain or compressed tar, listed and read in archive order (no seeking: .tar.gz is cheap)."""

    def _open(self) -> tarfile.TarFile:
        try:
            return tarfile.open(self.path, "r:*")
        except (tarfile.TarError, OSError) as e:
            raise DataError(f"{self.path} is not a readable tar ({e}): re-create it") from e

    def list(self) -> Listing:
        listing = Listing()
        with self._open() as tf:
            try:
                members = tf.getmembers()
            except (tarfile.TarError, OSError, EOFError) as e:  # truncated: keep what we have
                members = tf.members
                listing.problems.append((".", UNREADABLE, f"archive truncated: {e}"))
        for m in members:
            rel = _tar_rel(m.name)
            if m.isdir() or any(_skip_name(part) for part in rel.split("/")):
                continue
            if not m.isfile():  # symlinks, devices: never followed out of an archive
                listing.problems.append((rel, UNREADABLE, "not a regular file in the tar"))
                continue
            _classify(rel, listing)
        return listing

    def read(self, wanted: list[str]) -> Iterator[tuple[str, bytes | tuple[str, str]]]:
        # `wanted` follows list(), i.e. archive order, so one pass yields them in that order.
        left = dict.fromkeys(wanted)
        error = "missing from the archive"
        with self._open() as tf:
            try:
                for m in tf:
                    rel = _tar_rel(m.name)
                    if rel not in left or not m.isfile():
                        continue
                    del left[rel]
                    if m.size > MAX_FILE_BYTES:
                        yield rel, (TOO_LARGE, f"{m.size} bytes")
                        continue
                    f = tf.extractfile(m)
                    yield rel, f.read() if f is not None else (UNREADABLE, "no data")
            except (tarfile.TarError, OSError, EOFError) as e:
                error = f"archive truncated: {e}"
        for rel in left:
            yield rel, (UNREADABLE, error)


def open_source(path: str | os.PathLike, exclude: str | os.PathLike | None = None) -> Source:
    """The right `Source` for a folder, a .zip or a .tar(.gz|.bz2|.xz) path."""
    p = Path(path)
    if p.is_dir():
        return FolderSource(p, Path(exclude) if exclude is not None else None)
    if not p.exists():
        raise DataError(f"input {p} does not exist: pass a folder, a .zip or a .tar of photos")
    if zipfile.is_zipfile(p):
        return ZipSource(p)
    if tarfile.is_tarfile(p):
        return TarSource(p)
    raise DataError(f"input {p} is neither a folder, a zip nor a tar: pass one of those")
