"""`lightning-gans provenance FILE...`: print the provenance metadata of generated images and videos."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from ..errors import DataError
from .video import file_provenance


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="lightning-gans provenance", description=__doc__)
    p.add_argument("files", nargs="+", help="PNG / GIF / mp4 (with its .json sidecar) / .npy files")
    p.add_argument("--json", action="store_true", help="one JSON object per file instead of text")
    a = p.parse_args(argv)
    missing = [f for f in a.files if not Path(f).is_file()]
    if missing:
        raise DataError(f"{missing[0]} does not exist or is not a file; check the path")
    without = 0
    for f in a.files:
        meta = file_provenance(f)
        if a.json:
            print(json.dumps({"file": f, "provenance": meta}, sort_keys=True))
            without += not meta
            continue
        if not meta:
            without += 1
            print(f"{f}: NO provenance metadata (not written by lightning-gans, or stripped since)")
            continue
        print(f"{f}:")
        width = max(len(k) for k in meta)
        for k in sorted(meta):
            print(f"  {k:{width}s}  {meta[k]}")
    # Non-zero when a file has no metadata, so scripts can check a folder in one call.
    return 1 if without else 0
