"""Where the official implementations' reference outputs are (../shared/parity)."""

import os
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def parity_dir() -> Path | None:
    """../shared/parity (or $LG_PARITY_DIR): outputs of the official implementations."""
    env = os.environ.get("LG_PARITY_DIR")
    path = Path(env) if env else REPO.parent / "shared" / "parity"
    return path if (path / "README.md").is_file() else None
