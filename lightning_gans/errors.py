"""Errors users can act on: each message names the input (file, key) and the fix.

The CLI prints these as one line (`error: ...`) and exits with status 2 instead of showing a
traceback; anything else is a bug and keeps its traceback.
"""


class LGError(Exception):
    """Base class of user-facing errors."""


class ConfigError(LGError):
    """A config key or value is wrong or inconsistent (e.g. model vs data resolution)."""


class DataError(LGError):
    """Input data is missing or unusable (missing shard, no images, wrong resolution)."""


class CheckpointError(LGError):
    """A checkpoint is missing, corrupt, unsafe, or of the wrong kind for the request."""


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
