"""`lightning-gans finetune photos=DIR from=CKPT out=finetune kimg=200 batch=8 aligned=false [train overrides]`

Fine-tune a pretrained StyleGAN2 / StyleGAN on your own faces in one command: the photos are
detected, aligned and sharded into OUT/shards (aligned=true: they are aligned faces already, shard
them as they are), then `train` runs into OUT/run from the checkpoint's weights with ADA and
freeze-D on (conf/experiment/finetune.yaml; finetune_stylegan.yaml for a v1 file) and the
architecture read from the checkpoint (ours or an official file). finetune's own keys are
commands/conf/finetune.yaml's; every other override (trainer.accelerator=gpu, model.lr=...) is
handed to the train run unchanged.
"""

from __future__ import annotations

import sys

from ..errors import ConfigError
from ..finetune import plan, prepare_shards
from . import _hydra

NAME = "finetune"
EXAMPLE = "lightning-gans finetune photos=photos/ from=ffhq.ckpt out=ft kimg=200 trainer.accelerator=gpu"
# key -> help; the keys and defaults are commands/conf/finetune.yaml's (a test checks they agree)
HELP: dict[str, str] = {
    "photos": "folder, .zip or .tar of photos (or of aligned faces with aligned=true) (required)",
    "from": "pretrained checkpoint: ours or an official StyleGAN2-ADA / rosinality / TF StyleGAN file (required)",
    "out": "output folder: OUT/shards and OUT/run",
    "kimg": "thousands of images to train on",
    "batch": "global batch size",
    "aligned": "the photos are aligned faces: shard them without detection",
}
TYPES: dict[str, type] = {"photos": str, "from": str, "out": str, "kimg": float, "batch": int, "aligned": bool}


def usage() -> str:
    return _hydra.usage(NAME, __doc__, HELP, EXAMPLE, more="  ...                          any train "
                        "override, e.g. trainer.accelerator=gpu model.lr=0.002")


def split(argv: list[str]) -> tuple[list[str], list[str]]:
    """(finetune's own key=value overrides, the train overrides): by the key each one sets."""
    _hydra.refuse_flags(argv, NAME)  # e.g. --photos of earlier versions: says photos=...
    own = set(TYPES)
    mine = [t for t in argv if _hydra.override_key(t) in own]
    return mine, [t for t in argv if t not in mine]


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if _hydra.wants_help(argv):
        print(usage())
        return 0
    mine, train_overrides = split(argv)
    o = _hydra.options(NAME, mine, TYPES)
    for key in ("photos", "from"):
        if o[key] is None:
            raise ConfigError(f"{key}={'DIR' if key == 'photos' else 'CKPT'} is required: {HELP[key]} "
                              "(see `lightning-gans finetune --help`)")
    p = plan(o["from"], o["out"], o["kimg"], o["batch"], train_overrides)
    try:  # a typo in a train override fails here, before any face is prepared
        _hydra.compose("train", p.overrides, NAME)
    except ConfigError as e:
        raise ConfigError(f"{e}; finetune's own keys: {', '.join(TYPES)}, other keys go to train") from None
    rc, note = prepare_shards(o["photos"], p.shards, p.resolution, o["aligned"])
    print(note)
    if rc != 0:
        return rc
    print("training: lightning-gans train " + " ".join(p.overrides))
    from .train import run  # the train entry (in this process: init_from= hits describe's cache)

    return run(p.overrides)
