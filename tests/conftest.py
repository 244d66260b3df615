"""Shared test settings: quiet, offline, single-threaded where it keeps CPU runs fast."""

import os

import pytest
import torch

os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("WANDB_SILENT", "true")
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")



@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
    yield
