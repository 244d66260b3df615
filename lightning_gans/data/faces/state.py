"""The OUT folder of `prepare-faces`: what it holds (report.json, shards), the run lock, and the
writing side of a run (shards, duplicate index, report, checkpoints).

Resuming trusts the shards, not the report: a face counts as written only if a shard listed in
manifest.json holds it, so a run killed between a shard and a report update never writes a face
twice. Shards a killed run finished but never entered into manifest.json are deleted (their
inputs are simply done again).
"""

from __future__ import annotations

import hashlib
import json
import os
import tarfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ...errors import DataError
from ...ops._lock import pid_alive
from ..shards import ShardWriter
from . import filters
from .worker import SKIPPED, WRITTEN, Result

REPORT = "report.json"
MANIFEST = "manifest.json"
LOCK = ".prepare-faces.lock"
REPORT_VERSION = 1
PREFIX = "shard"
DUPLICATE_DETAIL = "near-duplicate of {}"
REPORT_EVERY_S = 30.0  # report.json is rewritten at least this often during a run


def write_json_atomic(path: Path, obj: Any) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(obj, indent=1, sort_keys=False) + "\n")
    os.replace(tmp, path)


@dataclass
class OutState:
    """Existing results: `report["files"]` per input, and what the shards hold."""

    report: dict[str, Any]
    written: dict[str, list[str]] = field(default_factory=dict)  # source -> shard keys
    hashes: list[tuple[int, str]] = field(default_factory=list)  # (pHash, "source (face i)")
    has_shards: bool = False


class RunLock:
    """OUT/.prepare-faces.lock with our pid: two runs appending to one shard set would collide."""

    def __init__(self, out: Path) -> None:
        self.path = out / LOCK

    def __enter__(self) -> RunLock:
        for _ in range(2):
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
            except FileExistsError:
                try:
                    pid = int(self.path.read_text().strip() or 0)
                except (OSError, ValueError):
                    pid = 0
                if pid and pid != os.getpid() and pid_alive(pid):
                    raise DataError(f"{self.path}: prepare-faces (pid {pid}) is writing to this "
                                    "folder; wait for it or use another OUT") from None
                self.path.unlink(missing_ok=True)  # stale: its run was killed
                continue
            with os.fdopen(fd, "w") as f:
                f.write(str(os.getpid()))
            return self
        raise DataError(f"{self.path}: cannot take the run lock; delete it if no run is active")

    def __exit__(self, *exc: Any) -> None:
        self.path.unlink(missing_ok=True)


def load_state(out: Path, prefix: str) -> OutState:
    """Reads OUT (which may not exist yet) and removes leftovers of a killed run."""
    report_path, manifest_path = out / REPORT, out / MANIFEST
    report: dict[str, Any] = {"format_version": REPORT_VERSION, "files": {}}
    if report_path.exists():
        try:
            report = json.loads(report_path.read_text())
            assert isinstance(report.get("files"), dict)
        except (ValueError, AssertionError, OSError) as e:
            raise DataError(f"{report_path} is unreadable ({e}): delete it to redo the "
                            "skipped inputs (written faces are kept in the shards)") from e
    elif manifest_path.exists():
        raise DataError(f"{out} holds shards not made by prepare-faces (no {REPORT}): "
                        "use an empty OUT folder")
    state = OutState(report)
    if not out.exists():
        return state
    manifest = json.loads(manifest_path.read_text()) if manifest_path.exists() else {}
    listed = [s["name"] for s in manifest.get("shards", [])]
    for p in out.glob(f"{prefix}-*.tar"):
        if p.name not in listed:
            p.unlink()  # finished by a killed run after its last manifest update
    for p in out.glob(f".{prefix}-*.tar.*.tmp"):
        p.unlink()  # the shard a killed run was writing
    for name in listed:
        state.has_shards = True
        shard = out / name
        try:
            with tarfile.open(shard) as tf:
                for m in tf:
                    if not m.name.endswith(".json"):
                        continue
                    f = tf.extractfile(m)
                    meta = json.loads(f.read()) if f is not None else {}
                    key = m.name[: -len(".json")]
                    state.written.setdefault(meta.get("source", ""), []).append(key)
                    if "phash" in meta:
                        name = f"{meta.get('source', key)} (face {meta.get('face', 0)})"
                        state.hashes.append((int(meta["phash"], 16), name))
        except (tarfile.TarError, OSError, ValueError) as e:
            raise DataError(f"shard {shard} is unreadable ({e}): restore it, or start over "
                            "in an empty OUT") from e
    return state


def entry(status: str, reason: str | None, detail: str, keys: list[str],
           detected: int | None, rejected: list | None = None) -> dict[str, Any]:
    return {"status": status, "reason": reason, "detail": detail, "faces": len(keys),
            "detected": detected, "keys": keys, "rejected": rejected or []}


def sample_key(rel: str, face: int) -> str:
    # Stable across reruns and free of dots/slashes that webdataset would misread.
    digest = hashlib.sha1(rel.encode("utf-8", "surrogateescape")).hexdigest()
    return f"{digest[:16]}_{face}"


class RunWriter:
    """The writing side of a run: shards, duplicate index, report entries, checkpoints."""

    def __init__(self, out: Path, args: Any, state: OutState,
                 options: dict[str, Any], listed: list[str]) -> None:
        self.out, self.args, self.state, self.listed = out, args, state, listed
        self.files: dict[str, Any] = state.report["files"]
        self.options = options
        self.dups = filters.DuplicateIndex(args.dup_distance)
        for h, key in state.hashes:
            self.dups.add(h, key)
        self.since_checkpoint = 0
        self.this_run: Counter[str] = Counter()
        self.saved_at = 0.0
        self.save_report()  # before any shard: OUT with a manifest always has a report
        self.writer = self._open_writer()

    def _open_writer(self) -> ShardWriter:
        append = (self.out / MANIFEST).exists()
        return ShardWriter(self.out, prefix=PREFIX, maxcount=self.args.maxcount,
                           resolution=self.args.resolution, append=append)

    def add(self, r: Result) -> None:
        keys: list[str] = []
        for face in r.faces:
            key = sample_key(r.rel, face.meta["face"])
            other = self.dups.find(face.phash)
            if other is not None:
                r.rejected.append({"face": face.meta["face"], "box": face.meta["box"],
                                   "score": face.meta["score"], "reason": filters.DUPLICATE,
                                   "detail": DUPLICATE_DETAIL.format(other)})
                continue
            self.writer.write(key, face.png, "png", face.meta)
            self.dups.add(face.phash, f"{r.rel} (face {face.meta['face']})")
            keys.append(key)
        status, reason, detail = r.status, r.reason, r.detail
        if r.faces and not keys:  # every face was a duplicate
            status, reason, detail = SKIPPED, filters.DUPLICATE, r.rejected[-1]["detail"]
        self.files[r.rel] = entry(status, reason, detail, keys, r.detected, r.rejected)
        self.this_run[status] += 1
        self.since_checkpoint += len(keys)
        if self.since_checkpoint >= self.args.maxcount:
            self.checkpoint()
        elif time.monotonic() - self.saved_at > REPORT_EVERY_S:
            # Safe at any time: resuming trusts the shards for what is written, the report
            # only for what was skipped.
            self.save_report()

    def checkpoint(self) -> None:
        # Closing writes manifest.json: from here on a kill loses nothing already written.
        self.writer.close()
        self.save_report()
        self.writer = self._open_writer()
        self.since_checkpoint = 0

    def save_report(self) -> None:
        self.state.report.update(format_version=REPORT_VERSION, input=str(self.args.input),
                                 options=self.options,
                                 summary=summarize(self.files, self.listed))
        write_json_atomic(self.out / REPORT, self.state.report)
        self.saved_at = time.monotonic()

    def close(self) -> dict:
        manifest = self.writer.close()
        self.save_report()
        return manifest


def summarize(files: dict[str, Any], listed: list[str]) -> dict[str, Any]:
    """Counts over the inputs in INPUT now (`listed`); entries of removed files stay unsummed."""
    entries = [files[rel] for rel in listed if rel in files]
    written = [f for f in entries if f["status"] == WRITTEN]
    reasons = Counter(f["reason"] for f in entries if f["status"] == SKIPPED)
    return {"found": len(listed), "written": len(written),
            "faces": sum(f["faces"] for f in written), "skipped": sum(reasons.values()),
            "skipped_by_reason": dict(reasons.most_common()),
            "pending": len(listed) - len(entries)}


def print_summary(summary: dict[str, Any], manifest: dict, out: Path, note: str) -> None:
    rows = [("inputs found", summary["found"], ""),
            ("written", summary["written"], f"{summary['faces']} faces"),
            ("skipped", summary["skipped"], "")]
    rows += [(f"  {reason}", n, "") for reason, n in summary["skipped_by_reason"].items()]
    if summary["pending"]:
        rows.append(("not processed yet", summary["pending"], "rerun to continue"))
    print(f"prepare-faces -> {out}  ({note})")
    for name, n, extra in rows:
        print(f"  {name:<26}{n:>7}  {extra}".rstrip())
    print(f"  shards: {len(manifest.get('shards', []))}, samples: {manifest.get('count', 0)}, "
          f"resolution: {manifest.get('resolution')}; reasons per file in {out / REPORT}")
