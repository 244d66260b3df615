"""`lightning-gans provenance FILE...`: what a generated image or video can prove about itself.

Per file: the C2PA manifest (present / valid / signer: signed, bound to the pixels), the watermark
in the pixels (found / payload: survives re-encodes), and the metadata we write as PNG text chunks /
comment tags / sidecars. That metadata is unsigned: anyone can edit it, so it is shown as a claim,
and a `synthetic` field that says anything but true is flagged when the manifest or watermark says
otherwise. Every value is printed escaped so that terminal control codes hidden in a text chunk
never reach the terminal raw. Exit status 1 when a file carries no provenance at all.
"""

from __future__ import annotations

import json
from pathlib import Path

from ..errors import DataError
from ..synthesis.provenance_report import print_text, report, safe_text
from . import _args


def main(argv: list[str] | None = None) -> int:
    p = _args.parser("provenance", __doc__, "out/seed0001.png out/interp.mp4 --json")
    p.add_argument("files", nargs="+", help="PNG / JPEG / GIF / mp4 (with its .json sidecar) / .npy files")
    p.add_argument("--json", action="store_true", help="one JSON object per file instead of text")
    a = _args.parse(p, argv)
    missing = [f for f in a.files if not Path(f).is_file()]
    if missing:
        raise DataError(f"{safe_text(missing[0])} does not exist or is not a file; check the path")
    without = 0
    for f in a.files:
        r = report(f)
        # Non-zero when a file has no provenance at all, so scripts can check a folder in one call.
        without += not (r["metadata"] or r["c2pa"]["present"] or r["watermark"]["found"])
        if a.json:
            print(json.dumps(r, sort_keys=True))  # json escapes control characters: terminal-safe
        else:
            print_text(r)
    return 1 if without else 0
