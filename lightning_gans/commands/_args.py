"""The argparse pieces every checkpoint tool shares: one parser style (defaults and an example
in --help, errors raised as one ConfigError line for cli.main to print) and the options that
mean the same thing in several commands, defined once so their names and values agree."""

from __future__ import annotations

import argparse
import math
import sys

from ..errors import ConfigError
from ..model_nets import NETWORKS
from ..synthesis.common import NOISE_MODES


class _Formatter(argparse.RawDescriptionHelpFormatter, argparse.ArgumentDefaultsHelpFormatter):
    """Keeps the docstring's line breaks and appends "(default: X)" to every option with one."""

    def _get_help_string(self, action: argparse.Action) -> str:
        help_ = action.help or ""
        if action.default in (None, False, argparse.SUPPRESS) or "%(default)" in help_:
            return help_  # "(default: None/False)" says nothing
        return super()._get_help_string(action)


class Parser(argparse.ArgumentParser):
    """An ArgumentParser whose errors are one ConfigError line (exit 2 through cli.main)
    instead of argparse's usage dump and sys.exit."""

    def error(self, message: str) -> None:  # type: ignore[override]
        raise ConfigError(f"{self.prog}: {message} (see `{self.prog} --help`)")


def parser(name: str, doc: str | None, example: str) -> Parser:
    """The parser of `lightning-gans NAME`: its docstring as description and one example."""
    return Parser(prog=f"lightning-gans {name}", description=(doc or "").strip(),
                  epilog=f"example:\n  lightning-gans {name} {example}", formatter_class=_Formatter)


def add_checkpoint(p: argparse.ArgumentParser, help_: str = "checkpoint: ours (`lightning-gans train`) "
                   "or an official StyleGAN2-ADA / TF StyleGAN file") -> None:
    p.add_argument("ckpt", metavar="CKPT", help=help_)


def add_network(p: argparse.ArgumentParser) -> None:
    p.add_argument("--network", default="G_ema", choices=NETWORKS,
                   help="G_ema: the moving-average networks; G: the trained ones")


def add_device(p: argparse.ArgumentParser) -> None:
    p.add_argument("--device", default=None, help="torch device (default: cuda when available, else cpu)")


def device(value: str | None) -> str:
    if value:
        return value
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def add_outdir(p: argparse.ArgumentParser, default: str = "out") -> None:
    p.add_argument("--outdir", default=default, help="output folder (created)")


def add_batch(p: argparse.ArgumentParser, default: int = 16) -> None:
    p.add_argument("--batch", type=int, default=default, help="images per forward pass")


def add_labels_from_subfolders(p: argparse.ArgumentParser) -> None:
    p.add_argument("--labels-from-subfolders", action="store_true",
                   help="each first-level subfolder is a class (StyleGAN2) or domain (StarGAN v2)")


def add_stylegan(p: argparse.ArgumentParser) -> None:
    """Truncation, class, noise: how a StyleGAN generator is sampled."""
    p.add_argument("--truncation", type=float, default=1.0, help="truncation psi (1 = none, 0 = mean face)")
    p.add_argument("--truncation-cutoff", type=int, default=None, help="truncate only the first N ws")
    p.add_argument("--class", dest="class_idx", type=int, default=None, help="class index (conditional G)")
    p.add_argument("--noise", default="const", choices=NOISE_MODES, help="noise inputs")


def add_synthesis(p: argparse.ArgumentParser) -> None:
    """What every StyleGAN synthesis command takes: the checkpoint, network, sampling, output."""
    add_checkpoint(p)
    add_network(p)
    add_stylegan(p)
    add_outdir(p)
    add_device(p)
    add_batch(p)
    add_output(p)


def add_output(p: argparse.ArgumentParser) -> None:
    """--sign-key/--sign-cert/--no-watermark: how every synthesis command marks its outputs."""
    g = p.add_argument_group("content credentials (C2PA) and watermark")
    g.add_argument("--sign-key", default=None,
                   help="PEM private key (EC or RSA) for the C2PA manifest (env LG_SIGN_KEY; default: the "
                        "installation's test certificate under $LG_CACHE_DIR/c2pa)")
    g.add_argument("--sign-cert", default=None, help="PEM certificate chain, leaf first (env LG_SIGN_CERT)")
    g.add_argument("--no-watermark", action="store_true",
                   help="embed no invisible watermark (recorded in the metadata and manifest)")


def at_least(a: argparse.Namespace, **flags: int) -> None:
    """Integer options that must be >= a bound (`batch=1`: --batch >= 1); None means unset."""
    for attr, low in flags.items():
        value = getattr(a, attr, None)
        if value is not None and value < low:
            raise ConfigError(f"--{attr.replace('_', '-')} {value} is not valid: give an integer >= {low}")


def parse(p: argparse.ArgumentParser, argv: list[str] | None) -> argparse.Namespace:
    """p.parse_args plus the checks every command shares (issue 19: numbers that would give
    wrong or no output), the device default and, for synthesis commands, how outputs are marked."""
    a = p.parse_args(argv)
    psi = getattr(a, "truncation", None)
    if psi is not None:
        if not math.isfinite(psi):
            raise ConfigError(f"--truncation {psi}: give a finite number (1 = none, 0.7 typical)")
        if psi < 0 or psi > 1.5:
            print(f"warning: --truncation {psi:g} extrapolates {'through and past' if psi < 0 else 'away from'} "
                  "the average face; outputs are usually broken (usual range 0.5..1)", file=sys.stderr)
    at_least(a, truncation_cutoff=0, batch=1, grid_cols=1)
    if hasattr(a, "device"):
        a.device = device(a.device)
    if hasattr(a, "sign_key"):
        from ..synthesis import content_credentials

        content_credentials.configure(a.sign_key, a.sign_cert, watermark=not a.no_watermark)
    return a
