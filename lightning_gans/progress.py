"""One progress bar for the long commands (evaluate, fid, convert, prepare-faces, project, shards).

A tqdm bar with ETA on stderr when stderr is a terminal, nothing at all otherwise (CI logs, Slurm
output files, pipes), so logs hold results, not carriage returns. LG_PROGRESS=1 forces the bar on,
LG_PROGRESS=0 off. tqdm comes with pytorch-lightning (its own progress bar).
"""

from __future__ import annotations

import os
import sys
from typing import Any


def bar(total: int | None, desc: str, unit: str = "img", disable: bool | None = None, **kwargs: Any):
    """disable=True: never (e.g. ranks other than 0); None: as LG_PROGRESS / the terminal say."""
    from tqdm import tqdm

    if disable is None:
        disable = {"1": False, "0": True}.get(os.environ.get("LG_PROGRESS", ""))  # None: tqdm decides
    return tqdm(total=total, desc=desc, unit=unit, disable=disable, file=sys.stderr,
                dynamic_ncols=True, mininterval=0.5, **kwargs)
