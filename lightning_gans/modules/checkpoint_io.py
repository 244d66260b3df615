"""Lightning CheckpointIO that writes atomically and loads safely (see lightning_gans.checkpoint)."""

from __future__ import annotations

import os
from typing import Any

from pytorch_lightning.plugins.io import TorchCheckpointIO

from ..checkpoint import atomic_save, safe_load


class AtomicCheckpointIO(TorchCheckpointIO):
    """Lightning's default writes in place (a kill leaves a truncated file); this one renames."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path, storage_options=None) -> None:
        atomic_save(checkpoint, path)

    def load_checkpoint(self, path, map_location=None, weights_only=None) -> dict[str, Any]:
        return safe_load(path, map_location=map_location or "cpu")

    def remove_checkpoint(self, path) -> None:
        if os.path.exists(path):
            os.remove(path)
