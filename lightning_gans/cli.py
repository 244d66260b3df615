"""The `lightning-gans` command: one sub-command per job.

`train` is a Hydra app (overrides, -m multirun, --cfg job); the other sub-commands take plain
flags. User-facing errors print one line and exit with status 2.
"""

from __future__ import annotations

import importlib
import os
import sys

# name -> (module, function, one-line help); modules import lazily so `--help` stays fast.
COMMANDS: dict[str, tuple[str, str, str]] = {
    "train": ("lightning_gans.cli", "_train", "train a GAN (Hydra: key=value overrides, -m sweeps)"),
    "finetune": ("lightning_gans.finetune", "main", "prepare a folder of face photos and fine-tune a pretrained model"),
    "summary": ("lightning_gans.summary", "main", "build a model config's networks and count parameters"),
    "shards": ("lightning_gans.data.shards", "main", "write a folder/zip/tar of images into webdataset shards"),
    "prepare-faces": ("lightning_gans.data.faces.prepare", "main",
                      "detect, align (FFHQ-style) and shard the faces in a folder of photos"),
    "generate": ("lightning_gans.synthesis.generate", "main", "images of seeds or a projected latent"),
    "style-mix": ("lightning_gans.synthesis.stylemix", "main", "style-mixing grid (column seeds give --styles)"),
    "interpolate": ("lightning_gans.synthesis.interpolate", "main", "latent walk between seeds: frames + mp4/GIF"),
    "project": ("lightning_gans.synthesis.project_cli", "main", "project a photo into W/W+; writes an .npz latent"),
    "transfer": ("lightning_gans.synthesis.transfer", "main", "StarGAN v2 reference- and latent-guided translation"),
    "provenance": ("lightning_gans.synthesis.provenance_cli", "main", "print the provenance metadata of outputs"),
    "doctor": ("lightning_gans.ops.doctor", "main", "versions, compilers, which kernel each op uses (--build)"),
    "convert": ("lightning_gans.interop.convert", "main",
                "import official StyleGAN2-ADA / rosinality / StarGAN v2 checkpoints, or export ours"),
    "fid": ("lightning_gans.metrics.cli", "main", "FID (and KID) between two image folders or shard sets"),
    "evaluate": ("lightning_gans.metrics.evaluate", "main", "metrics of a checkpoint (fid50k_full, kid, pr, ppl)"),
}

USAGE = "usage: lightning-gans COMMAND [ARGS]\n\ncommands:\n" + "\n".join(
    f"  {name:14s} {help_}" for name, (_, _, help_) in COMMANDS.items()
) + "\n\n`lightning-gans COMMAND --help` for a command's options."


def _train(argv: list[str]) -> int:
    import importlib.util

    import __main__

    # Hydra reads sys.argv itself: hand it the arguments after `train`. Lightning starts extra
    # local DDP processes as `python -m <__main__.__spec__.name> <sys.argv[1:]>`: point that
    # at the train module, so they run the same job.
    from .rundir import precheck_hydra_run_dir

    precheck_hydra_run_dir(argv)  # issue 19: an unusable run dir as one line, not Hydra's traceback
    sys.argv = ["lightning-gans", *argv]
    __main__.__spec__ = importlib.util.find_spec("lightning_gans.train")
    from .train import train_app

    train_app()
    return 0


def _completion(argv: list[str]) -> int:
    """Hydra's bash completion (`lightning-gans train -sc install=bash`) registers itself for
    `lightning-gans` and asks `lightning-gans -sc query=bash` with the whole COMP_LINE: complete
    the command name, and hand a `train` line to Hydra without the word `train`."""
    line = os.environ.get("COMP_LINE", "")
    words = line.split()
    if any(a.startswith("query=") for a in argv) and len(words) >= 2 and words[1] == "train" \
            and (len(words) > 2 or line.endswith(" ")):
        os.environ["COMP_LINE"] = " ".join([words[0], *words[2:]]) + (" " if line.endswith(" ") else "")
        return _train(argv)
    if any(a.startswith("query=") for a in argv):
        partial = words[1] if len(words) == 2 and not line.endswith(" ") else ""
        print(" ".join(n for n in COMMANDS if n.startswith(partial)))
        return 0
    return _train(argv)  # install= / uninstall=


def main(argv: list[str] | None = None) -> int:
    from .errors import check_env, find_user_error

    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(USAGE)
        return 0
    if argv[0] in ("-V", "--version"):
        from . import __version__

        print(__version__)
        return 0
    if argv[0] in ("-sc", "--shell-completion"):
        return _completion(argv)
    name, rest = argv[0], argv[1:]
    if name not in COMMANDS:
        print(f"error: unknown command {name!r}\n\n{USAGE}", file=sys.stderr)
        return 2
    module, func, _ = COMMANDS[name]
    try:
        check_env()  # issue 19: e.g. LG_OPS=fast as one line, not an op's traceback
        return int(getattr(importlib.import_module(module), func)(rest) or 0)
    except Exception as e:
        user_error = find_user_error(e)
        if user_error is None:
            raise
        print(f"error: {user_error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
