"""Helpers for tests that run real training jobs through the Hydra configs."""

from __future__ import annotations

import csv
from pathlib import Path

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
