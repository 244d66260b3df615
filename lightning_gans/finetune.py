"""`lightning-gans finetune --photos DIR --from CKPT`: the "fine-tune on my own faces" journey.

One command: faces in DIR are detected, aligned and sharded (prepare-faces; `--aligned` skips
detection for sets that are already aligned), then a run starts from CKPT's weights (ours or an
official StyleGAN2-ADA / rosinality / TF StyleGAN2 file) with ADA and freeze-D on
(conf/experiment/finetune.yaml) and the architecture taken from the checkpoint. A StyleGAN (v1)
checkpoint (ours, or the official TF `karras2019stylegan-*.pkl`) fine-tunes with
conf/experiment/finetune_stylegan.yaml, at its full resolution (model.start_resolution = resolution,
no progressive phase below it; override model.start_resolution to grow again). Extra arguments are
Hydra overrides for the run.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from .errors import DataError

# Model keys that define the architecture: they must come from the checkpoint.
ARCH_KEYS = ("resolution", "z_dim", "w_dim", "c_dim", "mapping_layers", "channel_base", "channel_max",
             "conv_clamp", "mbstd_num_channels")
# The same for StyleGAN (v1) checkpoints (StyleGANModule keys).
ARCH_KEYS_V1 = ("resolution", "z_dim", "w_dim", "img_channels", "mapping_layers", "mapping_lr_multiplier",
                "fmap_base", "fmap_decay", "fmap_max", "fused_scale", "use_noise", "mbstd_group_size",
                "mbstd_num_channels")
KINDS = ("stylegan2", "stylegan")


def checkpoint_kind(path: str) -> str:
    """'stylegan2' or 'stylegan' (v1): the model a checkpoint holds, ours or official."""
    from .errors import CheckpointError
    from .interop.convert import read

    fmt, kind, _ = read(path)
    if kind not in KINDS:
        raise CheckpointError(f"--from {path} holds a {kind} model ({fmt}); finetune takes a StyleGAN or StyleGAN2")
    return kind


def checkpoint_architecture(path: str, kind: str = "stylegan2") -> dict:
    """model.* overrides that rebuild the architecture of the checkpoint at `path`.

    For StyleGAN (v1) they include start_resolution = resolution: the network is grown already.
    """
    from .interop.convert import load_any

    ckpt = load_any(path, kind=kind)
    hp = ckpt.get("hyper_parameters") or {}
    if kind == "stylegan":
        arch = {k: hp[k] for k in ARCH_KEYS_V1 if k in hp}
        arch["start_resolution"] = hp["resolution"]
        return arch
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

    kind = checkpoint_kind(args.ckpt)
    arch = checkpoint_architecture(args.ckpt, kind)
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
    batch = [f"model.batch_size={args.batch}"]
    if kind == "stylegan":  # v1: the progressive schedule's batch, the same at every resolution
        batch += [f"model.minibatch_base={args.batch}", f"model.minibatch_dict={{{res}: {args.batch}}}"]
    overrides = [
        "experiment=" + ("finetune_stylegan" if kind == "stylegan" else "finetune"), f"data.shards={shards}",
        f"init_from={Path(args.ckpt).resolve()}", *batch, f"trainer.max_steps={steps}",
        f"hydra.run.dir={out / 'run'}",
        *(f"model.{k}={_value(v)}" for k, v in arch.items()),
        *args.overrides,
    ]
    print("training: lightning-gans train " + " ".join(overrides))
    from .cli import _train

    return _train(overrides)
