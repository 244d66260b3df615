"""Metrics of a checkpoint: what `lightning-gans evaluate` (commands/evaluate.py) runs.

StyleGAN / StyleGAN2: G_ema's samples (truncation 1; see metrics.generated for how sample i is
drawn) against the real images of `data` (a shard set or an image folder; default: the shard
folder the checkpoint was trained on), real statistics cached per (source, resolution, feature
network, N). A progressive StyleGAN (v1) checkpoint renders at the resolution and fade-in it
last trained, and its real images are resized to match. StarGAN v2: the protocol of
metrics.stargan_eval (FID per task + LPIPS diversity; metrics `latent` and `reference`), with
`data` a labelled shard set or a folder of domain subfolders.

The file is read once, through model_file (weights only: no pickled code runs). Progress goes to
stderr; errors are raised (LGError). `feature_net=` and `distance=` take a stand-in feature
network (images [N, 3, H, W] in [0, 255] -> [N, D]; an `identity` string enables the stats
cache) and LPIPS-like distance, for tests and experiments.
"""

from __future__ import annotations

import json
import os
import sys
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from ..errors import ConfigError
from ..model_nets import NETWORKS
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

if TYPE_CHECKING:  # the reader is imported when a checkpoint is evaluated (callbacks import this module)
    from ..model_file import ModelFile

KINDS = ("stylegan", "stylegan2", "stargan_v2")
STARGAN_METRICS = ("latent", "reference")


@dataclass(frozen=True)
class _Options:
    """evaluate_checkpoint's keyword arguments, passed on to the per-family evaluation."""

    metrics: list[str]
    data: str | None
    real: str | None
    num: int | None
    num_real: int | None
    batch: int
    seed: int
    noise_mode: str
    network: str
    num_outs: int
    device: str
    inception_weights: str | None
    vgg16_weights: str | None
    lpips_weights: str | None
    fan_weights: str | None
    cache_dir: str | None


def metric_names(value: list[str] | tuple[str, ...] | str | None) -> list[str]:
    """["fid50k_full", ...] from a list or a "[a,b]" / "a,b" string (None: [])."""
    if value is None:
        return []
    if isinstance(value, str):
        value = value.strip().strip("[]").split(",")
    return [str(v).strip() for v in value if str(v).strip()]


def stats_cache_dir(value: str | os.PathLike | None) -> Path | None:
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


def generator_fns(mf: ModelFile, network: str = "G_ema", device: torch.device | str = "cpu") -> GeneratorFns:
    """G_ema (or G) of a StyleGAN / StyleGAN2 file, ready for the metrics; a progressive v1
    checkpoint renders at the resolution and fade-in alpha it last trained."""
    G = mf.generator(network=network, device=device, allow_partial=True).G
    state = mf.ckpt.get("state_dict") or {}
    extra = {}
    if mf.kind == "stylegan" and "resolution" in state:  # progressive: where it trained
        extra = {"resolution": int(state["resolution"]), "alpha": float(state["alpha"])}
    return GeneratorFns(G.eval().requires_grad_(False), extra)


def _stderr(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def _evaluate_stylegan(mf: ModelFile, o: _Options, feature_net: FeatureNet | None,
                       distance: Distance | None) -> tuple[dict, dict]:
    names = o.metrics or ["fid50k_full"]
    if any(n.lower() in STARGAN_METRICS for n in names):
        raise ConfigError(f"metrics {names}: latent/reference are the StarGAN v2 protocol; checkpoint "
                          f"{mf.path} holds a {mf.kind} model (use fid50k_full, kid50k_full, ...)")
    specs = parse_metrics(names, o.num, o.num_real)
    fns = generator_fns(mf, o.network, o.device)
    data = o.data or _training_data(mf.ckpt)
    feature_specs = [s for s in specs if s.needs_real]
    if feature_specs:
        if data is None:
            raise ConfigError("data=PATH is required: the real images (shard folder or image folder); "
                              "the checkpoint names no shard folder that exists here")
        list_source(data)  # a bad path fails before any network loads
        if feature_net is None:
            feature_net = load_inception(o.inception_weights, o.device,
                                         metric=", ".join(s.name for s in feature_specs))
    ppl_specs = [s for s in specs if s.family == "ppl"]
    if ppl_specs and distance is None:
        distance = load_lpips(o.vgg16_weights, o.lpips_weights, o.device,
                              metric=", ".join(s.name for s in ppl_specs))
    results: dict[str, float] = {}
    resolution = fns.synthesis_kwargs.get("resolution", fns.G.img_resolution)
    if feature_specs:
        t0 = time.perf_counter()
        reals = real_stats(feature_specs, data, feature_net, resolution, o.batch, stats_cache_dir(o.cache_dir))
        _stderr(f"real statistics of {data}: {time.perf_counter() - t0:.1f} s")
        num = max(s.num_gen for s in feature_specs)
        t0 = time.perf_counter()
        gen = generated_features(fns, feature_net, num, o.batch, o.seed, o.noise_mode)
        dt = time.perf_counter() - t0
        _stderr(f"{num} generated images: {dt:.1f} s ({num / max(dt, 1e-9):.1f} img/s incl. features)")
        results.update(feature_metrics(feature_specs, gen, reals, o.device))
    for s in ppl_specs:
        t0 = time.perf_counter()
        results[s.name] = ppl_metric(s, fns, distance, batch_size=o.batch, seed=o.seed)
        _stderr(f"{s.name} ({s.num_gen} paths): {time.perf_counter() - t0:.1f} s")
    meta = {"metrics": [s.name for s in specs], "data": None if data is None else str(data),
            "features": getattr(feature_net, "identity", None),
            "counts": {s.name: _counts(s) for s in specs}, "noise_mode": o.noise_mode,
            **({"resolution": resolution, "alpha": fns.synthesis_kwargs["alpha"]}
               if fns.synthesis_kwargs else {})}
    return results, meta


def _counts(s: MetricSpec) -> dict:
    return {"gen": s.num_gen, **({"real": s.num_real} if s.needs_real else {})}


def _evaluate_stargan(mf: ModelFile, o: _Options, feature_net: FeatureNet | None,
                      distance: Distance | None) -> tuple[dict, dict]:
    from .domains import Batches, domain_images
    from .stargan_eval import evaluate_stargan

    modes = [n.lower() for n in (o.metrics or STARGAN_METRICS)]
    bad = [n for n in modes if n not in STARGAN_METRICS]
    if bad:
        raise ConfigError(f"metrics {bad}: checkpoint {mf.path} is a StarGAN v2 model, evaluated with "
                          "its protocol (FID per task + LPIPS diversity): metrics=[latent,reference]")
    net = mf.stargan(network=o.network, device=o.device, fan_weights=o.fan_weights)
    data = o.data or _training_data(mf.ckpt)
    if data is None:
        raise ConfigError("data=PATH is required: labelled shards or a folder with one subfolder "
                          "per domain; the checkpoint names no shard folder that exists here")
    list_source(data)
    if feature_net is None:
        feature_net = load_inception(o.inception_weights, o.device, metric="StarGAN v2 FID")
    if distance is None:
        distance = load_lpips(o.vgg16_weights, o.lpips_weights, o.device, metric="StarGAN v2 LPIPS diversity")
    t0 = time.perf_counter()
    images, data_names = domain_images(data, net.img_size, net.num_domains, o.num, net.domain_names)
    real = images
    if o.real:
        real, _ = domain_images(o.real, net.img_size, net.num_domains, None, net.domain_names)
    domain_names = net.domain_names or data_names
    _stderr(f"images of {net.num_domains} domains: {time.perf_counter() - t0:.1f} s")
    batches = {d: Batches(x, o.batch) for d, x in images.items()}
    reals = {d: Batches(x, o.batch) for d, x in real.items()}
    nets = {"generator": net.G, "mapping_network": net.F, "style_encoder": net.E}
    results: dict[str, float] = {}
    for mode in modes:
        t0 = time.perf_counter()
        results.update(evaluate_stargan(
            nets, batches, reals, lambda x: feature_net(quantize_images(x)), distance, mode=mode,
            num_outs=o.num_outs, latent_dim=net.latent_dim, domain_names=domain_names,
            seed=o.seed, device=o.device, masks_fn=net.masks if net.fan is not None else None))
        _stderr(f"StarGAN v2 {mode}-guided: {time.perf_counter() - t0:.1f} s")
    meta = {"metrics": modes, "data": str(data), "real": str(o.real or data),
            "domains": domain_names, "num_outs": o.num_outs,
            "features": getattr(feature_net, "identity", None),
            "counts": {str(d): int(x.shape[0]) for d, x in images.items()}}
    return results, meta


def _at_least(**values: int | None) -> None:
    for key, (value, low) in values.items():
        if value is not None and value < low:
            raise ConfigError(f"{key}={value} is not valid: give an integer >= {low}")


def evaluate_checkpoint(
    ckpt: str | os.PathLike,
    metrics: list[str] | tuple[str, ...] | str | None = None,
    *,
    data: str | os.PathLike | None = None,
    real: str | os.PathLike | None = None,
    num: int | None = None,
    num_real: int | None = None,
    batch: int = 32,
    seed: int = 0,
    noise_mode: str = "random",
    network: str = "G_ema",
    num_outs: int = 10,
    device: str | torch.device | None = None,
    inception_weights: str | None = None,
    vgg16_weights: str | None = None,
    lpips_weights: str | None = None,
    fan_weights: str | None = None,
    cache_dir: str | os.PathLike | None = None,
    feature_net: FeatureNet | None = None,   # stand-in for Inception (tests); None: load it
    distance: Distance | None = None,        # stand-in for LPIPS (tests); None: load it
) -> dict[str, Any]:
    """Compute the metrics of one checkpoint; returns the JSON record (results + provenance).

    metrics: StyleGAN names (default fid50k_full) or, for StarGAN v2, latent/reference (default
    both). See `lightning-gans evaluate --help` for every argument."""
    if network not in NETWORKS:
        raise ConfigError(f"network={network!r}: use G_ema (the moving-average networks) or G (the trained ones)")
    if noise_mode not in ("random", "const", "none"):
        raise ConfigError(f"noise_mode={noise_mode!r}: use random, const or none")
    _at_least(batch=(batch, 1), num_outs=(num_outs, 1), num=(num, 1), num_real=(num_real, 1))
    o = _Options(metric_names(metrics), None if data is None else str(data), None if real is None else str(real),
                 num, num_real, batch, seed, noise_mode, network, num_outs,
                 str(device or ("cuda" if torch.cuda.is_available() else "cpu")), inception_weights,
                 vgg16_weights, lpips_weights, fan_weights, None if cache_dir is None else str(cache_dir))
    from ..model_file import describe

    t0 = time.perf_counter()
    mf = describe(ckpt, kinds=KINDS, what="ckpt=")  # read once: every network below comes from it
    if mf.kind == "stargan_v2":
        results, meta = _evaluate_stargan(mf, o, feature_net, distance)
    else:
        results, meta = _evaluate_stylegan(mf, o, feature_net, distance)
    nimg = (mf.ckpt.get("state_dict") or {}).get("nimg")
    identity = meta.get("features") or ""
    return {
        "results": results, **meta,
        "checkpoint": str(ckpt), "checkpoint_sha256": mf.sha256, "kind": mf.kind,
        "model_name": str(mf.config.get("name", "?")), "network": network,
        "step": mf.ckpt.get("global_step"), "kimg": None if nimg is None else int(nimg) / 1000,
        "seed": seed, "batch": batch,
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


def record_path(out: str | None, ckpt: str | os.PathLike) -> Path | None:
    """Where the JSON record goes: out= (a file, or metrics.jsonl in a folder), metrics.jsonl next
    to the checkpoint by default, None for out=none."""
    if out == "none":
        return None
    path = Path(out) if out else Path(ckpt).parent / "metrics.jsonl"
    return path / "metrics.jsonl" if path.is_dir() else path
