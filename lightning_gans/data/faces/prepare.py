"""`lightning-gans prepare-faces`: a folder/zip/tar of photos -> FFHQ-aligned faces in shards.

Follows the FFHQ recipe (Karras et al., CVPR 2019): detect, 5 landmarks, oriented crop,
reflect-pad, resample; then filters (no/small/low-score/blurry/duplicate face) with reasons in
OUT/report.json. Resumable: a rerun skips inputs already in the shards and appends new shards.
"""

from __future__ import annotations

import hashlib
import json
import signal
import threading
import time
from collections import deque
from collections.abc import Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import asdict, dataclass
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import numpy as np

from ...errors import DataError
from . import worker
from .decode import IMAGE_EXTENSIONS
from .sources import Listing, open_source
from .state import (
    PREFIX,
    OutState,
    RunLock,
    RunWriter,
    entry,
    load_state,
    print_summary,
    summarize,
)

NO_DOMAIN = "outside domain folders"


@dataclass
class PrepareOptions:
    """What `prepare-faces` does; the command's flags are these fields (same names, defaults)."""

    input: str
    out: str
    resolution: int = 256
    labels_from_subfolders: bool = False  # each first-level subfolder is a domain (StarGAN v2)
    all_faces: bool = False
    min_face: float | None = None  # None: resolution / 4 (at most 2x upsampling)
    min_score: float = 0.9
    blur_threshold: float = 15.0
    dup_distance: int = 6
    landmarks: str | None = None
    workers: int = 1
    backend: str = "mtcnn"
    landmark_model: str | None = None
    maxcount: int = 1000
    limit: int | None = None

    def check(self) -> None:
        from ...errors import ConfigError

        if self.resolution < 16:
            raise ConfigError(f"--resolution {self.resolution}: must be >= 16")
        if self.workers < 1:
            raise ConfigError(f"--workers {self.workers}: must be >= 1")
        if self.backend not in ("mtcnn", *worker.DLIB_BACKENDS):
            raise ConfigError(f"--backend {self.backend!r}: use mtcnn, {', '.join(worker.DLIB_BACKENDS)}")
        if self.landmark_model is not None and self.backend not in worker.DLIB_BACKENDS:
            raise ConfigError(f"--landmark-model needs a dlib backend ({', '.join(worker.DLIB_BACKENDS)})")


def load_landmarks(path: str) -> dict[str, list[list[list[float]]]]:
    """Reads a --landmarks json: {"relative/path.jpg": face or [face, ...]}, a face being 5
    [x, y] points: left eye, right eye, nose tip, left mouth corner, right mouth corner.

    "Left" is image-left (the subject's right eye). Coordinates are pixel indices (x right,
    y down, pixel centres on integers) in the upright photo, i.e. after its EXIF orientation
    is applied; paths are relative to INPUT (or the archive root), with "/" separators.
    """
    try:
        raw = json.loads(Path(path).read_text())
        assert isinstance(raw, dict)
    except (OSError, ValueError, AssertionError) as e:
        raise DataError(f"--landmarks {path}: not a json object ({e}); expected "
                        '{"relative/path.jpg": [[x, y], ... 5 points]}') from e
    out = {}
    for rel, v in raw.items():
        try:
            faces = np.asarray(v, dtype=np.float64)
            faces = faces[None] if faces.ndim == 2 else faces  # one face or a list of faces
            assert faces.ndim == 3 and faces.shape[1:] == (5, 2) and np.isfinite(faces).all()
        except (ValueError, TypeError, AssertionError):
            raise DataError(f"--landmarks {path}: {rel!r} needs 5 [x, y] points per face "
                            "(left eye, right eye, nose, left mouth, right mouth; image-left)"
                            ) from None
        out[rel.removeprefix("./")] = faces.tolist()
    return out


def _sha1(path: str | None) -> str | None:
    return hashlib.sha1(Path(path).read_bytes()).hexdigest() if path else None


@dataclass
class Domains:
    """--labels-from-subfolders: the first folder of a path (under `prefix`) is its domain."""

    labels: dict[str, int]  # domain name -> label, names sorted
    prefix: str = ""  # one folder holding all domain folders (common in zips), or ""

    @classmethod
    def from_listing(cls, listing: Listing) -> Domains:
        tops = {rel.split("/", 1)[0] for rel in listing.files}
        prefix = ""
        if len(tops) == 1 and all(rel.count("/") >= 2 for rel in listing.files):
            prefix = f"{tops.pop()}/"  # e.g. faces.zip holding faces/cats/..., faces/dogs/...
        names = sorted({d for rel in listing.files if (d := cls._name(rel, prefix))})
        return cls({name: i for i, name in enumerate(names)}, prefix)

    @staticmethod
    def _name(rel: str, prefix: str) -> str | None:
        rest = rel[len(prefix):]
        return rest.split("/", 1)[0] if "/" in rest else None

    def label(self, rel: str) -> tuple[int, str] | None:
        name = self._name(rel, self.prefix)
        return (self.labels[name], name) if name is not None else None


def _init_pool(opts: worker.Options) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C stops the parent, which stops us
    if opts.backend != "landmarks":
        _one_torch_thread()
        worker.get_detector(opts.backend, opts)


def _one_torch_thread() -> int:
    """Sets torch to 1 thread and returns the previous count. MTCNN's convolutions are too
    small to share across cores (2 threads ran slower than 1 on a loaded 2-core CPU); use
    --workers to fill the cores with processes instead."""
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    return previous


def _run_one(task: tuple) -> worker.Result:
    return worker.process(*task)


def _results(tasks: Iterator[tuple], workers: int) -> Iterator[worker.Result]:
    """Results in input order; at most 2 tasks per worker in flight (bounded memory)."""
    if workers == 1:
        for t in tasks:
            yield worker.process(*t)
        return
    first = next(tasks, None)
    if first is None:
        return
    # spawn, not fork: a forked torch process can deadlock on the parent's thread pools.
    pool = ProcessPoolExecutor(workers, mp_context=get_context("spawn"), initializer=_init_pool,
                               initargs=(first[2],))
    pending: deque[Future] = deque([pool.submit(_run_one, first)])
    try:
        for t in tasks:
            pending.append(pool.submit(_run_one, t))
            if len(pending) >= 2 * workers:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def prepare_faces(args: PrepareOptions) -> int:
    """Detect, align and shard args.input into args.out; returns the exit status (130 if stopped
    by Ctrl-C/SIGTERM, after saving what was done). With workers > 1 it starts processes by
    spawn: a script calling it must do so under `if __name__ == "__main__":`."""
    args.check()
    out = Path(args.out)
    min_face = args.min_face if args.min_face is not None else args.resolution / 4
    landmarks = load_landmarks(args.landmarks) if args.landmarks else None
    opts = worker.Options(resolution=args.resolution, min_face=min_face,
                          min_score=args.min_score, blur_threshold=args.blur_threshold,
                          all_faces=args.all_faces,
                          backend="landmarks" if landmarks is not None else args.backend,
                          dup_distance=args.dup_distance,
                          landmark_model=(str(Path(args.landmark_model).resolve())
                                          if args.landmark_model else None))
    source = open_source(args.input, exclude=out)
    listing = source.list()
    if not listing.files:
        raise DataError(f"no images ({', '.join(sorted(IMAGE_EXTENSIONS))}) in "
                        f"{args.input}: pass a folder, .zip or .tar of photos")
    domains = Domains.from_listing(listing) if args.labels_from_subfolders else None
    if domains is not None and not domains.labels:
        raise DataError(f"--labels-from-subfolders: {args.input} has no subfolders of images")
    labels = domains.labels if domains is not None else None
    if opts.backend != "landmarks":  # fail here with one clear line, not once per input
        worker.get_detector(opts.backend, opts)
    out.mkdir(parents=True, exist_ok=True)
    with RunLock(out):
        state = load_state(out, PREFIX)
        # Anything that changes which inputs are skipped; a rerun under other options (or an
        # edited landmarks file) re-examines the skipped inputs.
        options = {**asdict(opts), "labels": labels, "landmarks_sha1": _sha1(args.landmarks)}
        todo = plan(listing, state, options)
        note = f"{len(listing.files) - len(todo)} done before"
        todo = todo[: args.limit] if args.limit is not None else todo
        listed = listing.files + [rel for rel, _, _ in listing.problems]
        run = RunWriter(out, args, state, options, listed)
        tasks = _tasks(source.read(todo), opts, landmarks, domains)
        start = time.perf_counter()
        try:
            interrupted = _drive(run, tasks, len(todo), args.workers, opts.backend)
        finally:
            manifest = run.close()  # whatever happened, keep what was written
    n, dt = sum(run.this_run.values()), time.perf_counter() - start
    note += f", {n} processed now" + (f", {n / dt:.2f} images/s" if n else "")
    print_summary(summarize(run.files, listed), manifest, out,
                  ("interrupted: rerun to continue; " if interrupted else "") + note)
    return 130 if interrupted else 0


def plan(listing: Listing, state: OutState, options: dict[str, Any]) -> list[str]:
    """Inputs still to process, in order; records the listing's problems in the report."""
    files = state.report["files"]
    old = state.report.get("options")
    if old and old.get("labels") != options["labels"]:
        raise DataError(f"{state.report.get('input')} was prepared with domains "
                        f"{old.get('labels')}, now {options['labels']}: use a new OUT")
    todo = []
    for rel in listing.files:
        prev = files.get(rel)
        if old != options and prev and prev["status"] == worker.SKIPPED:
            del files[rel]  # judged under other options: pending until redone
            prev = None
        if rel in state.written:
            # The shards are the truth: restore the entry if a kill kept the report from it.
            if not prev or prev["status"] != worker.WRITTEN:
                files[rel] = entry(worker.WRITTEN, None, "", state.written[rel], None)
        elif not (prev and prev["status"] == worker.SKIPPED):
            todo.append(rel)  # new, lost in a kill, or skipped under other options
    for rel, reason, detail in listing.problems:
        files[rel] = entry(worker.SKIPPED, reason, detail, [], 0)
    return todo


def _tasks(read: Iterator[tuple[str, Any]], opts: worker.Options, landmarks: dict | None,
           domains: Domains | None) -> Iterator[tuple]:
    """(rel, bytes or read error, options, landmarks, label): the arguments of worker.process."""
    for rel, data in read:
        label = domains.label(rel) if domains is not None else None
        if domains is not None and label is None:
            data = (NO_DOMAIN, "file outside the domain subfolders")
        yield rel, data, opts, landmarks.get(rel) if landmarks is not None else None, label


def _drive(run: RunWriter, tasks: Iterator[tuple], total: int, workers: int, backend: str) -> bool:
    """Feeds tasks through the workers into `run`; True if interrupted (Ctrl-C, SIGTERM)."""
    main_thread = threading.current_thread() is threading.main_thread()
    if main_thread:  # SIGTERM (kill, Slurm) stops as cleanly as Ctrl-C
        previous = signal.signal(signal.SIGTERM, _raise_interrupt)
    threads = _one_torch_thread() if workers == 1 and backend != "landmarks" else 0
    bar = _progress(total)
    results = _results(tasks, workers)
    try:
        for r in results:
            run.add(r)
            bar.update(1)
            bar.set_postfix(written=run.this_run[worker.WRITTEN],
                            skipped=run.this_run[worker.SKIPPED], refresh=False)
    except KeyboardInterrupt:
        return True
    except BrokenProcessPool as e:
        raise DataError("a prepare-faces worker process died (out of memory?): rerun to "
                        "continue where it stopped, with fewer --workers if it repeats") from e
    finally:
        results.close()  # shuts the worker pool down now, not at garbage collection
        bar.close()
        if main_thread:
            signal.signal(signal.SIGTERM, previous)
        if threads:
            import torch

            torch.set_num_threads(threads)
    return False


def _raise_interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


def _progress(total: int) -> Any:
    from ...progress import bar

    return bar(total, "prepare-faces")
