"""One progress bar for the long commands (evaluate, fid, convert, prepare-faces, project, shards).

A tqdm bar with ETA on stderr when stderr is a terminal, nothing at all otherwise (CI logs, Slurm
output files, pipes), so logs hold results, not carriage returns. LG_PROGRESS=1 forces the bar on,
LG_PROGRESS=0 off. tqdm comes with pytorch-lightning (its own progress bar).
"""

from __future__ import annotations

import os
import sys
from typing import Any


def bar(total: int | None, desc: str, unit: str = "img", **kwargs: Any):
    from tqdm import tqdm

    force = os.environ.get("LG_PROGRESS", "")
    disable = {"1": False, "0": True}.get(force)  # None: tqdm decides (off when not a TTY)
    return tqdm(total=total, desc=desc, unit=unit, disable=disable, file=sys.stderr,
                dynamic_ncols=True, mininterval=0.5, **kwargs)
