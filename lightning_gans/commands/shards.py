"""`lightning-gans shards FOLDER OUT`: write a folder (or .zip/.tar) of images into webdataset shards.

Images are found recursively; with --resolution they are centre-cropped to a square and
Lanczos-resized. OUT gets shard-000000.tar, ... and manifest.json; unreadable images are
skipped and listed.
"""

from __future__ import annotations

import sys

from ..data.shards import IMAGE_EXTS, shards_from_folder
from . import _args


def main(argv: list[str] | None = None) -> int:
    p = _args.parser("shards", __doc__, "faces/ shards/ --resolution 256 --labels-from-subfolders")
    p.add_argument("folder", help="folder of images (searched recursively), a .zip or a .tar")
    p.add_argument("out", help="output folder for {shard-000000.tar, ...} and manifest.json")
    p.add_argument("--resolution", type=int, default=None, help="centre-crop to square and Lanczos-resize to R x R")
    _args.add_labels_from_subfolders(p)
    p.add_argument("--maxcount", type=int, default=1000, help="images per shard")
    p.add_argument("--ext", choices=sorted(IMAGE_EXTS), default="png", help="stored encoding")
    a = _args.parse(p, argv)
    _args.at_least(a, resolution=1, maxcount=1)  # issue 19: not blamed on every image
    m = shards_from_folder(a.folder, a.out, a.resolution, a.labels_from_subfolders, a.maxcount, a.ext)
    for line in m["skipped"][:20]:
        print(f"skipped {line}", file=sys.stderr)
    if len(m["skipped"]) > 20:
        print(f"... and {len(m['skipped']) - 20} more skipped", file=sys.stderr)
    res = f"{m['resolution']} px" if m["resolution"] else "mixed sizes (pass --resolution)"
    labels = ", ".join(f"{k}={v}" for k, v in (m["label_counts"] or {}).items())
    print(f"wrote {m['count']} images to {a.out} in {len(m['shards'])} shards, {res}, "
          f"{len(m['skipped'])} skipped" + (f", labels: {labels}" if labels else ""))
    return 0
