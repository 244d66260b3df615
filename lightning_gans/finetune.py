"""`lightning-gans finetune --photos DIR --from CKPT`: the "fine-tune on my own faces" journey.

One command: faces in DIR are detected, aligned and sharded (prepare-faces; `--aligned` skips
detection for sets that are already aligned), then a run starts from CKPT's weights (ours or an
official StyleGAN2-ADA / rosinality file) with ADA and freeze-D on (conf/experiment/finetune.yaml)
and the architecture taken from the checkpoint. Extra arguments are Hydra overrides for the run.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from .errors import DataError

# Model keys that define the architecture: they must come from the checkpoint.
ARCH_KEYS = ("resolution", "z_dim", "w_dim", "c_dim", "mapping_layers", "channel_base", "channel_max",
             "conv_clamp", "mbstd_num_channels")


def checkpoint_architecture(path: str) -> dict:
    """model.* overrides that rebuild the architecture of the checkpoint at `path`."""
    from .interop.convert import load_any

    ckpt = load_any(path, kind="stylegan2")
    hp = ckpt.get("hyper_parameters") or {}
    return {k: hp[k] for k in ARCH_KEYS if k in hp}


def _value(v) -> str:
    return "null" if v is None else str(v)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="lightning-gans finetune", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--photos", required=True, help="folder, .zip or .tar of photos (or aligned faces with --aligned)")
    p.add_argument("--from", dest="ckpt", required=True, help="pretrained checkpoint (ours or official)")
    p.add_argument("--out", default="finetune", help="output folder: OUT/shards and OUT/run (default ./finetune)")
    p.add_argument("--kimg", type=float, default=200, help="thousands of images to train on (default 200)")
    p.add_argument("--batch", type=int, default=8, help="global batch size (default 8)")
    p.add_argument("--aligned", action="store_true", help="photos are aligned faces: shard them without detection")
    p.add_argument("overrides", nargs="*", help="Hydra overrides for the run, e.g. trainer.accelerator=gpu")
    args = p.parse_args(argv)

    arch = checkpoint_architecture(args.ckpt)
    res = int(arch["resolution"])
    out = Path(args.out)
    shards = out / "shards"
    if (shards / "manifest.json").is_file():
        print(f"using the faces already prepared in {shards}")
    elif args.aligned:
        from .data.shards import shards_from_folder

        m = shards_from_folder(args.photos, shards, resolution=res)
        print(f"sharded {m['count']} aligned faces into {shards} ({len(m['skipped'])} skipped)")
    else:
        from .data.faces.prepare import main as prepare_faces

        rc = prepare_faces([str(args.photos), str(shards), "--resolution", str(res)])
        if rc != 0:
            return rc
    if not (shards / "manifest.json").is_file():
        raise DataError(f"no faces were prepared from {args.photos}; see {shards}/report.json")

    steps = max(1, round(args.kimg * 1000 / args.batch))
    overrides = [
        "experiment=finetune", f"data.shards={shards}", f"init_from={Path(args.ckpt).resolve()}",
        f"model.batch_size={args.batch}", f"trainer.max_steps={steps}", f"hydra.run.dir={out / 'run'}",
        *(f"model.{k}={_value(v)}" for k, v in arch.items()),
        *args.overrides,
    ]
    print("training: lightning-gans train " + " ".join(overrides))
    from .cli import _train

    return _train(overrides)
