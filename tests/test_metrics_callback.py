"""The in-training metrics callback: rank-sharded samples gathered in order (1 vs 2 gloo
processes), metrics in the CSV log at their step, best_fid.ckpt kept on improvement only and
across a resume, the same FID as `evaluate` on the checkpoint, training RNG untouched.

Feature extraction uses a small deterministic stand-in (the callback's `feature_net` hook);
tests/test_evaluate.py runs the real Inception."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from lightning_gans.metrics.generated import GeneratorFns, generated_features, render_samples
from lightning_gans.models.stylegan2 import Generator

pytestmark = pytest.mark.usefixtures("one_thread")


class Quadrants(torch.nn.Module):
    """Stand-in for Inception: per-channel mean and std of each image quadrant, [N, 24]."""

    identity = "test/quadrants-v1"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, c, h, w = x.shape
        q = x.double().reshape(n, c, 2, h // 2, 2, w // 2)
        return (torch.cat([q.mean((3, 5)).flatten(1), q.std((3, 5)).flatten(1)], 1) / 255).float()


def tiny_fns() -> GeneratorFns:
    torch.manual_seed(0)
    G = Generator(z_dim=16, w_dim=16, img_resolution=16, channel_base=256, channel_max=16,
                  mapping_kwargs=dict(num_layers=2))
    with torch.no_grad():
        for name, p in G.named_parameters():
            if name.endswith("noise_strength"):
                p.fill_(0.5)  # so the per-batch noise matters
    return GeneratorFns(G.eval(), {})


NUM, BATCH = 10, 3  # 4 batches: rank 0 renders batches 0 and 2 (6 images), rank 1 batches 1 and 3 (4)


def _gather_worker(rank: int, world: int, init_file: str, out_dir: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    try:
        feats = generated_features(tiny_fns(), Quadrants(), NUM, BATCH, seed=7)
        np.save(Path(out_dir) / f"rank{rank}.npy", feats)
    finally:
        dist.destroy_process_group()


def test_rank_sharded_features_equal_one_process(tmp_path):
    fns, net = tiny_fns(), Quadrants()
    single = generated_features(fns, net, NUM, BATCH, seed=7)
    # sample order: batch b holds samples [3b, 3b + 3), rendered with batch b's noise
    direct = torch.cat([net((render_samples(fns, s, min(s + BATCH, NUM), s // BATCH, 7) * 127.5 + 128)
                            .clamp(0, 255).to(torch.uint8).float()) for s in range(0, NUM, BATCH)])
    np.testing.assert_array_equal(single, direct.numpy())
    mp.spawn(_gather_worker, args=(2, str(tmp_path / "init"), str(tmp_path)), nprocs=2, join=True)
    for rank in (0, 1):  # every rank gets all features, in sample order, bit for bit
        np.testing.assert_array_equal(np.load(tmp_path / f"rank{rank}.npy"), single)
    assert not np.array_equal(single[:BATCH], single[BATCH : 2 * BATCH])


# ---------------------------------------------------------------------------- training runs

FAST = ["experiment=demo", "logger=csv", "trainer.enable_progress_bar=false",
        "trainer.log_every_n_steps=1", "callbacks.samples.every_n_steps=0"]


def demo_data() -> str:
    from lightning_gans.data.demo import ensure_demo_data

    return str(ensure_demo_data(resolution=32, count=512))


def callback(**kw):
    from lightning_gans.callbacks.metrics import MetricsCallback

    args = dict(metrics=["fid50k_full"], num=16, num_real=64, batch_size=8, feature_net=Quadrants())
    return MetricsCallback(**{**args, **kw})


def test_logs_history_and_matches_evaluate(tmp_path):
    from helpers.train_utils import read_metrics, series, train

    from lightning_gans.checkpoint import safe_load
    from lightning_gans.metrics.evaluate import evaluate_checkpoint

    run, cache = tmp_path / "run", tmp_path / "cache"
    # batch 8: every 0.016 kimg = every 2 steps, then once more at the end (step 5)
    cb = callback(metrics=["fid50k_full", "kid50k"], every_kimg=0.016, cache_dir=str(cache))
    train(run, *FAST, "trainer.max_steps=5", callbacks=[cb])
    assert [h["step"] for h in cb.history] == [2, 4, 5]
    assert [h["kimg"] for h in cb.history] == [0.016, 0.032, 0.04]
    fids = {h["step"]: h["results"]["fid16_full"] for h in cb.history}
    rows = read_metrics(run)
    assert series(rows, "metrics/fid16_full") == pytest.approx(fids, rel=1e-12)
    assert set(series(rows, "metrics/kid16")) == {2, 4, 5}
    history = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    assert history == cb.history
    best_step = min(fids, key=fids.get)
    best = safe_load(run / "checkpoints" / "best_fid.ckpt")
    assert best["global_step"] == best_step and cb.best == fids[best_step]
    assert best["callbacks"]["MetricsCallback"]["best"] == fids[best_step]
    # `evaluate` on the final checkpoint draws the same samples: the same FID
    last = run / "checkpoints" / "last.ckpt"
    assert safe_load(last)["global_step"] == 5
    record = evaluate_checkpoint(last, ["fid50k_full"], data=demo_data(), num=16, num_real=64,
                                 batch=8, cache_dir=cache, feature_net=Quadrants())
    assert record["results"]["fid16_full"] == pytest.approx(fids[5], rel=1e-9)

    # Sampling ran in a forked RNG: the same run without the callback trains identically.
    plain = tmp_path / "plain"
    train(plain, *FAST, "trainer.max_steps=5")
    a, b = read_metrics(run), read_metrics(plain)
    for key in ("loss/G_main", "loss/D_main"):
        assert series(a, key) == series(b, key), key


def test_best_checkpoint_only_on_improvement_and_across_resume(tmp_path):
    from helpers.train_utils import train

    from lightning_gans.callbacks.metrics import MetricsCallback
    from lightning_gans.checkpoint import safe_load

    class Scripted(MetricsCallback):
        """Real logging/saving; FIDs from a script; records best_fid.ckpt after each eval."""

        def __init__(self, values, **kw):
            super().__init__(**{"metrics": ["fid2k"], "every_kimg": 0.008, "feature_net": Quadrants(), **kw})
            self.values, self.seen = list(values), []

        def compute(self, trainer, pl_module):
            return {"fid2k": self.values.pop(0)}

        def evaluate(self, trainer, pl_module):
            out = super().evaluate(trainer, pl_module)
            path = self.checkpoint_dir(trainer) / "best_fid.ckpt"
            self.seen.append(safe_load(path)["global_step"] if path.exists() else None)
            return out

    run = tmp_path / "run"
    cb = Scripted([3.0, 2.0, 2.5, 1.0, 1.0])  # one evaluation per step (batch 8 = 0.008 kimg)
    train(run, *FAST, "trainer.max_steps=5", callbacks=[cb])
    assert cb.seen == [1, 2, 2, 4, 4] and (cb.best, cb.best_step) == (1.0, 4)
    assert [h["best"] for h in cb.history] == [True, True, False, True, False]

    resumed = Scripted([1.5])  # worse than the restored best: best_fid.ckpt stays at step 4
    train(run, *FAST, "trainer.max_steps=6", f"ckpt_path={run / 'checkpoints' / 'last.ckpt'}",
          callbacks=[resumed])
    assert resumed.seen == [4] and resumed.best == 1.0 and len(resumed.history) == 6

    at_end = Scripted([0.5], every_kimg=0)  # only at the end of training; saved from on_train_end
    train(run, *FAST, "trainer.max_steps=7", f"ckpt_path={run / 'checkpoints' / 'last.ckpt'}",
          callbacks=[at_end])
    assert at_end.seen == [7] and (at_end.best, at_end.best_step) == (0.5, 7)


def test_hydra_group_and_refusals(tmp_path):
    from helpers.train_utils import compose_train, train
    from hydra.utils import instantiate

    from lightning_gans.callbacks.metrics import MetricsCallback
    from lightning_gans.errors import ConfigError

    cfg = compose_train(tmp_path, "experiment=demo", "+callbacks/metrics=fid", "callbacks.metrics.num=2000")
    cb = instantiate(cfg.callbacks.metrics, _convert_="all")
    assert isinstance(cb, MetricsCallback) and [s.name for s in cb.specs] == ["fid2k_full"]
    assert cb.best_metric == "fid2k_full" and cb.every_kimg == 50
    assert "metrics" not in compose_train(tmp_path, "experiment=demo").callbacks  # off by default
    with pytest.raises(ConfigError, match="unknown metric"):
        MetricsCallback(metrics=["fid50k_fulll"])
    with pytest.raises(ConfigError, match="best_metric"):
        MetricsCallback(metrics=["fid50k_full"], best_metric="kid50k")
    with pytest.raises(ConfigError, match="StarGAN v2 checkpoints with `lightning-gans evaluate`"):
        train(tmp_path / "sg", "experiment=stargan_v2_demo", "logger=csv", "trainer.max_steps=1",
              "trainer.enable_progress_bar=false", "+callbacks/metrics=fid")
