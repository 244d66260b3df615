"""The `lightning-gans` command: one sub-command per job.

`train` is a Hydra app (overrides, -m multirun, --cfg job); the other sub-commands take plain
flags. User-facing errors print one line and exit with status 2.
"""

from __future__ import annotations

import importlib
import os
import sys

# name -> one-line help. Command NAME is lightning_gans.commands.NAME (dashes as underscores).main,
# imported lazily so `--help` stays fast.
COMMANDS: dict[str, str] = {
    "train": "train a GAN (Hydra: key=value overrides, -m sweeps)",
    "finetune": "prepare a folder of face photos and fine-tune a pretrained model",
    "summary": "build a model config's networks and count parameters",
    "shards": "write a folder/zip/tar of images into webdataset shards",
    "prepare-faces": "detect, align (FFHQ-style) and shard the faces in a folder of photos",
    "generate": "images of seeds or a projected latent",
    "style-mix": "style-mixing grid (column seeds give --styles)",
    "interpolate": "latent walk between seeds: frames + mp4/GIF",
    "project": "project a photo into W/W+; writes an .npz latent",
    "transfer": "StarGAN v2 reference- and latent-guided translation",
    "provenance": "print the provenance metadata of outputs",
    "doctor": "versions, compilers, which kernel each op uses (--build)",
    "convert": "import official StyleGAN2-ADA / rosinality / StarGAN v2 checkpoints, or export ours",
    "fid": "FID (and KID) between two image folders or shard sets",
    "evaluate": "metrics of a checkpoint (fid50k_full, kid, pr, ppl)",
}


def command_module(name: str) -> str:
    return f"lightning_gans.commands.{name.replace('-', '_')}"


USAGE = "usage: lightning-gans COMMAND [ARGS]\n\ncommands:\n" + "\n".join(
    f"  {name:14s} {help_}" for name, help_ in COMMANDS.items()
) + "\n\n`lightning-gans COMMAND --help` for a command's options."


def _train(argv: list[str]) -> int:
    return importlib.import_module(command_module("train")).run(argv)


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
    from .errors import UserExit, check_env, find_user_error

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
    try:
        check_env()  # issue 19: e.g. LG_OPS=fast as one line, not an op's traceback
        return int(importlib.import_module(command_module(name)).main(rest) or 0)
    except UserExit as e:  # an LGError that left the Hydra train app
        print(f"error: {e.error}", file=sys.stderr)
        return 2
    except SystemExit as e:  # --help (argparse, Hydra) exits 0: a status to return, as for any command
        if e.code in (0, None):
            return 0
        raise
    except Exception as e:
        user_error = find_user_error(e)
        if user_error is None:
            raise
        print(f"error: {user_error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
