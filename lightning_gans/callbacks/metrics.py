"""Metrics every N kimg from G_ema (FID, KID, precision/recall, PPL) and a best-FID checkpoint.

Enable with `+callbacks/metrics=fid` (conf/callbacks/metrics/fid.yaml) and tune with
`callbacks.metrics.every_kimg=10 callbacks.metrics.num=2000 ...`. Each rank renders its share of
the samples and the features are all-gathered in sample order (metrics.generated), so the
numbers do not depend on the process count and equal `lightning-gans evaluate` on a checkpoint
of the same step (same seed, batch size and noise mode). Rank 0 computes the metrics against
the cached real statistics and broadcasts them; every logger (W&B, CSV) gets `metrics/<name>`
at the current global step, `<run dir>/metrics.jsonl` gets one line per evaluation, and
`<checkpoint dir>/best_fid.ckpt` is rewritten (through the trainer's checkpoint IO: atomic)
whenever the FID improves. Sampling runs in a forked RNG: the training random streams, and so
the exactness of a resume, are not affected. Its own state (best FID, history) is checkpointed.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
from pytorch_lightning.utilities import rank_zero_info
from torch import nn

from ..errors import ConfigError, LGError
from ..metrics.dataset_stats import list_source
from ..metrics.evaluate import append_jsonl, stats_cache_dir
from ..metrics.generated import (
    Distance,
    FeatureNet,
    GeneratorFns,
    feature_metrics,
    generated_features,
    parse_metrics,
    ppl_metric,
    real_stats,
)
from ..pretrained.weights import resolve_inception_weights


class MetricsCallback(pl.Callback):
    """Compute `metrics` from G_ema every `every_kimg` thousand images and at the end of training."""

    def __init__(
        self,
        metrics: Sequence[str] = ("fid50k_full",),  # StyleGAN2-ADA names (see metrics.generated)
        every_kimg: float = 50.0,            # 0: only at the end of training
        num: int | None = None,              # override the generated count (fid50k_full -> fid2k_full)
        num_real: int | None = None,         # cap on real images
        data: str | None = None,             # real images; None: the datamodule's shard folder
        batch_size: int = 32,                # per forward pass; sample noise depends on it
        seed: int = 0,
        noise_mode: str = "random",
        at_train_end: bool = True,
        best_metric: str | None = "auto",    # result key to minimise; "auto": the first FID; None: off
        best_filename: str = "best_fid.ckpt",
        history_file: str = "metrics.jsonl",  # in the run dir
        inception_weights: str | None = None,
        vgg16_weights: str | None = None,
        lpips_weights: str | None = None,
        cache_dir: str | None = None,        # real statistics; None: $LG_CACHE_DIR/metrics
        feature_net: FeatureNet | None = None,  # hook: stand-in for Inception ([0, 255] -> [N, D])
        distance: Distance | None = None,       # hook: stand-in for LPIPS (PPL)
    ) -> None:
        self.specs = parse_metrics(list(metrics), num, num_real)  # bad names fail at construction
        self.every_kimg = float(every_kimg)
        self.data = data
        self.batch_size, self.seed, self.noise_mode = int(batch_size), int(seed), noise_mode
        self.at_train_end = at_train_end
        self.best_filename, self.history_file = best_filename, history_file
        self.inception_weights, self.vgg16_weights, self.lpips_weights = (
            inception_weights, vgg16_weights, lpips_weights)
        self.cache_dir = cache_dir
        self.feature_net, self.distance = feature_net, distance
        names = [s.name for s in self.specs]
        if best_metric == "auto":
            best_metric = next((s.name for s in self.specs if s.family == "fid"), None)
        elif best_metric is not None and best_metric not in names:
            raise ConfigError(f"best_metric={best_metric!r} is none of the computed metrics {names}")
        self.best_metric = best_metric
        self.best: float | None = None
        self.best_step: int | None = None
        self.history: list[dict[str, Any]] = []
        self._last_tick: int | None = None
        self._last_step: int | None = None
        self._reals: dict[int, dict] = {}  # resolution -> real FeatureStats per cap (rank 0)

    # ---- setup -------------------------------------------------------------------------------
    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        if stage != "fit":
            return
        if not hasattr(pl_module, "G_ema") or not hasattr(pl_module, "nimg"):
            raise ConfigError(f"the metrics callback needs a StyleGAN / StyleGAN2 module (G_ema, nimg); "
                              f"{type(pl_module).__name__} has none: evaluate StarGAN v2 checkpoints "
                              "with `lightning-gans evaluate`")
        feature_specs = [s for s in self.specs if s.needs_real]
        if feature_specs:
            if self.data is None:
                dm = getattr(trainer, "datamodule", None)
                shards = (getattr(dm, "hparams", None) or {}).get("shards")
                if not (isinstance(shards, str) and Path(shards).is_dir()):
                    raise ConfigError("callbacks.metrics.data=PATH is required: the training data is "
                                      f"not one shard folder ({shards!r})")
                self.data = shards
            list_source(self.data)
            if self.feature_net is None:  # fail now, not after the first N kimg
                resolve_inception_weights(self.inception_weights, ", ".join(s.name for s in feature_specs))
        if any(s.family == "ppl" for s in self.specs) and self.distance is None:
            from ..pretrained.lpips import load_lpips

            self.distance = load_lpips(self.vgg16_weights, self.lpips_weights,
                                       metric=", ".join(s.name for s in self.specs if s.family == "ppl"))

    def _tick(self, pl_module) -> int:
        if self.every_kimg <= 0:
            return 0
        return math.floor(int(pl_module.nimg) / (self.every_kimg * 1000) + 1e-9)

    def on_train_start(self, trainer, pl_module) -> None:
        if self._last_tick is None:  # not restored from a checkpoint
            self._last_tick = self._tick(pl_module)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        tick = self._tick(pl_module)
        if self.every_kimg > 0 and tick > (self._last_tick or 0):
            self._last_tick = tick
            self.evaluate(trainer, pl_module)

    def on_train_end(self, trainer, pl_module) -> None:
        if self.at_train_end and self._last_step != trainer.global_step:
            self.evaluate(trainer, pl_module)

    # ---- one evaluation ----------------------------------------------------------------------
    def _feature_net(self, device) -> FeatureNet:
        if self.feature_net is None:
            from ..metrics.inception import load_inception

            names = ", ".join(s.name for s in self.specs if s.needs_real)
            self.feature_net = load_inception(self.inception_weights, device, metric=names)
        if isinstance(self.feature_net, nn.Module):
            self.feature_net.to(device)
        return self.feature_net

    def compute(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> dict[str, float]:
        """The metrics of the current G_ema, the same dict on every rank (collective call)."""
        extra = pl_module.synthesis_kwargs() if hasattr(pl_module, "synthesis_kwargs") else {}
        fns = GeneratorFns(pl_module.G_ema, extra)
        feature_specs = [s for s in self.specs if s.needs_real]
        gen = None
        if feature_specs:  # every rank renders its share; all get all features
            net = self._feature_net(pl_module.device)
            gen = generated_features(fns, net, max(s.num_gen for s in feature_specs),
                                     self.batch_size, self.seed, self.noise_mode)
        results, error = None, None
        if trainer.is_global_zero:
            try:
                results = {}
                if feature_specs:
                    res = extra.get("resolution", fns.G.img_resolution)
                    if res not in self._reals:
                        self._reals[res] = real_stats(feature_specs, self.data, self.feature_net, res,
                                                      self.batch_size, stats_cache_dir(self.cache_dir))
                    results.update(feature_metrics(feature_specs, gen, self._reals[res], pl_module.device))
                for s in self.specs:
                    if s.family == "ppl":
                        results[s.name] = ppl_metric(s, fns, self.distance, batch_size=self.batch_size,
                                                     seed=self.seed)
            except Exception as e:  # tell the other ranks instead of leaving them in broadcast
                results, error = None, f"{type(e).__name__}: {e}" if not isinstance(e, LGError) else str(e)
                if trainer.world_size == 1:
                    raise
        results, error = trainer.strategy.broadcast((results, error), src=0)
        if error is not None:
            raise LGError(f"metrics callback: {error}")
        return results

    def evaluate(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> dict[str, float]:
        """Compute, log, record, and keep the best checkpoint; all ranks must call it."""
        t0 = time.perf_counter()
        results = self.compute(trainer, pl_module)
        step, kimg = trainer.global_step, int(pl_module.nimg) / 1000
        self._last_step = step
        # A progressive (v1) run is compared only once at its final resolution, fully faded in:
        # FIDs at different resolutions do not rank the same model.
        extra = pl_module.synthesis_kwargs() if hasattr(pl_module, "synthesis_kwargs") else {}
        final = not extra or (extra["resolution"] == pl_module.G_ema.img_resolution and extra["alpha"] >= 1)
        value = results.get(self.best_metric) if self.best_metric and final else None
        improved = value is not None and (self.best is None or value < self.best)
        if improved:
            self.best, self.best_step = value, step
        record = {"step": step, "kimg": kimg, "results": results, "best": improved,
                  "seconds": round(time.perf_counter() - t0, 3), **extra}
        self.history.append(record)
        if trainer.is_global_zero:
            for logger in trainer.loggers:
                logger.log_metrics({f"metrics/{k}": v for k, v in results.items()}, step=step)
                logger.save()
            append_jsonl(Path(trainer.default_root_dir) / self.history_file, record)
            shown = ", ".join(f"{k} {v:.4g}" for k, v in results.items())
            rank_zero_info(f"metrics at step {step} ({kimg:g} kimg): {shown} [{record['seconds']:.1f} s]")
        if improved:
            trainer.save_checkpoint(self.checkpoint_dir(trainer) / self.best_filename, weights_only=False)
        return results

    @staticmethod
    def checkpoint_dir(trainer: pl.Trainer) -> Path:
        """Where ModelCheckpoint writes (else <run dir>/checkpoints)."""
        cb = trainer.checkpoint_callback
        if cb is not None and getattr(cb, "dirpath", None):
            return Path(cb.dirpath)
        return Path(trainer.default_root_dir) / "checkpoints"

    # ---- checkpointed state ------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        return {"best": self.best, "best_step": self.best_step, "last_tick": self._last_tick,
                "last_step": self._last_step, "history": self.history}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.best, self.best_step = state_dict.get("best"), state_dict.get("best_step")
        self._last_tick, self._last_step = state_dict.get("last_tick"), state_dict.get("last_step")
        self.history = list(state_dict.get("history") or [])
