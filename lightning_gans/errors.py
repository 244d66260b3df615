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
