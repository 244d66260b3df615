"""Errors users can act on: each message names the input (file, key) and the fix.

The CLI prints these as one line (`error: ...`) and exits with status 2 instead of showing a
traceback; anything else is a bug and keeps its traceback.
"""


import os
from pathlib import Path


class LGError(Exception):
    """Base class of user-facing errors."""

    def __str__(self) -> str:
        text = super().__str__()
        # Re-raised from a DataLoader worker, the message is torch's "Caught DataError in
        # DataLoader worker process 0. Original Traceback ...": keep only the original message.
        if text.startswith("Caught ") and "Original Traceback" in text:
            last = [ln for ln in text.strip().splitlines() if ln.strip()][-1]
            name = type(self).__name__
            for prefix in (f"{type(self).__module__}.{name}: ", f"{name}: "):
                if last.startswith(prefix):
                    return last[len(prefix):]
            return last
        return text


class ConfigError(LGError):
    """A config key or value is wrong or inconsistent (e.g. model vs data resolution)."""


class DataError(LGError):
    """Input data is missing or unusable (missing shard, no images, wrong resolution)."""


class CheckpointError(LGError):
    """A checkpoint is missing, corrupt, unsafe, or of the wrong kind for the request."""


class UserExit(SystemExit):
    """An LGError leaving the Hydra train app. Hydra prints any Exception as a traceback itself;
    a SystemExit passes through it, so cli.main (the one place that prints errors) gets the
    error to print as one line. Exit status 2."""

    def __init__(self, error: LGError) -> None:
        super().__init__(2)
        self.error = error

    def __str__(self) -> str:
        return str(self.error)


def one_line(exc: BaseException, max_lines: int = 3) -> str:
    """The first lines of an exception message (Hydra/OmegaConf ones span several) joined by '; '."""
    lines = [ln.strip() for ln in str(exc).strip().splitlines() if ln.strip()]
    return "; ".join(lines[:max_lines]) or type(exc).__name__


def find_user_error(exc: BaseException) -> LGError | None:
    """The LGError behind `exc`, looking through wrappers (Hydra's InstantiationException)."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        if isinstance(exc, LGError):
            return exc
        seen.add(id(exc))
        exc = exc.__cause__ or exc.__context__
    return None


def _same_file(a: Path, b: Path) -> bool:
    try:
        return os.path.samefile(a, b)  # same inode: the path itself, a symlink or a hard link
    except OSError:
        return False


def refuse_overwrite(output: str | os.PathLike, inputs, what: str = "output") -> Path:
    """`output` unless it is (a symlink or hard link to) one of `inputs`: then a one-line
    LGError naming both. `inputs`: paths (str/PathLike) or (flag, path) pairs; folders among
    the inputs also refuse an output inside them when it would replace one of their files."""
    out = Path(output)
    for item in inputs:
        flag, path = item if isinstance(item, tuple) else ("input", item)
        if path is None:
            continue
        path = Path(path)
        if not path.exists():
            continue
        if out.exists() and _same_file(out, path):
            how = ("is" if out.resolve() == path.resolve() else
                   "is a link to" if out.is_symlink() or path.is_symlink() else "is a hard link to")
            raise LGError(f"{what} {out} {how} the {flag} {path}: refusing to write over an input; "
                          "give another output path")
    return out


# The environment variables with a fixed set of values (the first is the default when unset): the
# ops read them through here (ops/_jit.MODES, ops/upfirdn2d.CUDA_KERNELS) and check_env checks them.
ENV_CHOICES: dict[str, tuple[str, ...]] = {
    "LG_OPS": ("auto", "ref", "compiled"),
    "LG_UPFIRDN2D": ("direct", "tiled"),
}


def check_env() -> None:
    """Environment variables the project reads, checked up front (one line instead of a traceback
    from deep inside an op)."""
    for name, choices in ENV_CHOICES.items():
        if (os.environ.get(name) or choices[0]).strip().lower() not in choices:
            raise ConfigError(f"{name}={os.environ[name]!r} is not valid: use {', '.join(choices[:-1])} or "
                              f"{choices[-1]} (or unset it)")
