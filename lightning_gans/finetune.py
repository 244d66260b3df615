"""The "fine-tune on my own faces" journey behind `lightning-gans finetune` (commands/finetune.py).

Faces in a folder are detected, aligned and sharded (prepare-faces; aligned=true shards a set
that is already aligned without detection), then a run starts from a checkpoint's weights (ours
or an official StyleGAN2-ADA / rosinality / TF StyleGAN2 file) with ADA and freeze-D on
(conf/experiment/finetune.yaml) and the architecture taken from the checkpoint. A StyleGAN (v1)
checkpoint (ours, or the official TF `karras2019stylegan-*.pkl`) fine-tunes with
conf/experiment/finetune_stylegan.yaml, at its full resolution (model.start_resolution =
resolution, no progressive phase below it; override model.start_resolution to grow again).

The checkpoint is described once (model_file); the run's init_from= reads the same file through
the same per-process cache, so it is read from disk once.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from .errors import ConfigError, DataError

KINDS = ("stylegan2", "stylegan")


@dataclass(frozen=True)
class Plan:
    """What a fine-tuning run is: its model kind, the resolution faces are prepared at, where
    the shards and the run go, and the train overrides that start it."""

    kind: str
    resolution: int
    shards: Path
    run_dir: Path
    overrides: list[str]


def _value(v) -> str:
    return "null" if v is None else str(v)


def plan(ckpt: str | os.PathLike, out: str | os.PathLike = "finetune", kimg: float = 200, batch: int = 8,
         extra: list[str] | tuple[str, ...] = ()) -> Plan:
    """The train overrides that fine-tune `ckpt` on OUT/shards for `kimg` thousand images at
    global batch `batch`; `extra` (the user's train overrides) come last, so they win."""
    from .model_file import describe

    if batch < 1:
        raise ConfigError(f"batch={batch} is not valid: give an integer >= 1")
    if not kimg > 0:
        raise ConfigError(f"kimg={kimg} is not valid: give a number > 0 (thousands of images)")
    ckpt = Path(ckpt).resolve()  # the path init_from= gets: the same cache entry
    mf = describe(ckpt, kinds=KINDS, what="from=")
    arch = mf.architecture()
    res = int(arch["resolution"])
    out = Path(out)
    shards = out / "shards"
    steps = max(1, round(kimg * 1000 / batch))
    batch_keys = [f"model.batch_size={batch}"]
    if mf.kind == "stylegan":  # v1: the progressive schedule's batch, the same at every resolution
        batch_keys += [f"model.minibatch_base={batch}", f"model.minibatch_dict={{{res}: {batch}}}"]
    overrides = [
        "experiment=" + ("finetune_stylegan" if mf.kind == "stylegan" else "finetune"), f"data.shards={shards}",
        f"init_from={ckpt}", *batch_keys, f"trainer.max_steps={steps}",
        f"hydra.run.dir={out / 'run'}",
        *(f"model.{k}={_value(v)}" for k, v in arch.items()),
        *extra,
    ]
    return Plan(mf.kind, res, shards, out / "run", overrides)


def prepare_shards(photos: str | os.PathLike, shards: Path, resolution: int, aligned: bool = False) -> tuple[int, str]:
    """Faces of `photos` as shards in `shards` at `resolution` (kept when already there);
    returns (exit status, what was done). aligned: shard the images as they are, no detection."""
    if (shards / "manifest.json").is_file():
        return 0, f"using the faces already prepared in {shards}"
    if aligned:
        from .data.shards import shards_from_folder

        m = shards_from_folder(photos, shards, resolution=resolution)
        note = f"sharded {m['count']} aligned faces into {shards} ({len(m['skipped'])} skipped)"
    else:
        from .data.faces.prepare import PrepareOptions, prepare_faces

        rc = prepare_faces(PrepareOptions(str(photos), str(shards), resolution=resolution))
        if rc != 0:
            return rc, f"preparing the faces of {photos} stopped (rerun to continue)"
        note = f"prepared the faces of {photos} in {shards}"
    if not (shards / "manifest.json").is_file():
        raise DataError(f"no faces were prepared from {photos}; see {shards}/report.json")
    return 0, note
