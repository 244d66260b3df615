"""Lightning CheckpointIO that writes atomically and loads safely (see lightning_gans.checkpoint).

A checkpoint whose weights hold NaN/inf (a diverged run) is not written: the previous file at
that path (a good last.ckpt) stays, and `last_written` keeps naming the newest good one.
"""

from __future__ import annotations

import logging
import os
from typing import Any

from pytorch_lightning.plugins.io import TorchCheckpointIO

from ..checkpoint import atomic_save, nonfinite_tensors, safe_load

log = logging.getLogger(__name__)


class AtomicCheckpointIO(TorchCheckpointIO):
    """Lightning's default writes in place (a kill leaves a truncated file); this one renames."""

    last_written: str | None = None  # newest checkpoint written (all weights finite)

    def save_checkpoint(self, checkpoint: dict[str, Any], path, storage_options=None) -> None:
        bad = nonfinite_tensors((checkpoint.get("state_dict") or {}).items())
        if bad:
            kept = "the previous file stays" if os.path.exists(path) else "nothing written"
            log.warning("not saving checkpoint %s: %d tensors hold NaN/inf (e.g. %s); %s; last good "
                        "checkpoint: %s", path, len(bad), bad[0], kept, self.last_written or "none")
            return
        atomic_save(checkpoint, path)
        self.last_written = str(path)

    def load_checkpoint(self, path, map_location=None, weights_only=None) -> dict[str, Any]:
        return safe_load(path, map_location=map_location or "cpu")

    def remove_checkpoint(self, path) -> None:
        if os.path.exists(path):
            os.remove(path)
