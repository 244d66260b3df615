"""Shared test settings: quiet, offline, single-threaded where it keeps CPU runs fast."""

import os
from pathlib import Path

import pytest
import torch

os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("WANDB_SILENT", "true")
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
    yield


def parity_dir() -> Path | None:
    """../shared/parity (or $LG_PARITY_DIR): outputs of the official implementations."""
    env = os.environ.get("LG_PARITY_DIR")
    path = Path(env) if env else REPO.parent / "shared" / "parity"
    return path if (path / "README.md").is_file() else None
