"""Helpers for tests that run real training jobs through the Hydra configs."""

from __future__ import annotations

import csv
from pathlib import Path

import pytorch_lightning as pl
import torch
from hydra import compose, initialize_config_dir

from lightning_gans.config import config_dir, register_resolvers
from lightning_gans.train import fit


def compose_train(run_dir: Path, *overrides: str):
    """The composed `lightning-gans train` config, with the run dir set (no Hydra runtime here)."""
    register_resolvers()
    with initialize_config_dir(version_base="1.3", config_dir=str(config_dir()), job_name="test"):
        return compose(config_name="train", overrides=[f"run_dir={run_dir}", *overrides])


def train(run_dir: Path, *overrides: str, callbacks: list | None = None) -> dict:
    return fit(compose_train(run_dir, *overrides), extra_callbacks=callbacks)


def read_metrics(run_dir: Path) -> list[dict[str, float]]:
    """Rows of the CSV logger, values as floats (empty cells dropped)."""
    path = Path(run_dir) / "csv" / "metrics.csv"
    with open(path) as f:
        return [{k: float(v) for k, v in row.items() if v != ""} for row in csv.DictReader(f)]


def series(rows: list[dict], key: str) -> dict[int, float]:
    """step -> value for the rows that logged `key`."""
    return {int(r["step"]): r[key] for r in rows if key in r}


class RestoreCheck(pl.Callback):
    """At the first batch of a resumed run, compare the module and optimizer state with the
    checkpoint it resumed from. `result` gets model / optim (bools), step, and `extra(module)`."""

    def __init__(self, saved: dict, extra=None):
        self.saved, self.extra, self.result = saved, extra, {}

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if self.result:
            return
        sd = pl_module.state_dict()
        self.result["model"] = all(torch.equal(sd[k], v) for k, v in self.saved["state_dict"].items())
        saved_opts = self.saved["optimizer_states"]
        ok = len(trainer.optimizers) == len(saved_opts)
        for opt, st in zip(trainer.optimizers, saved_opts):
            cur = opt.state_dict()
            ok &= cur["state"].keys() == st["state"].keys() and len(st["state"]) > 0
            for pid, s in st["state"].items():
                ok &= all(torch.equal(cur["state"][pid][k], v) for k, v in s.items())
            ok &= [g["lr"] for g in cur["param_groups"]] == [g["lr"] for g in st["param_groups"]]
        self.result["optim"] = bool(ok)
        self.result["step"] = trainer.global_step
        if self.extra is not None:
            self.result["extra"] = self.extra(pl_module)
