"""Bad input to `lightning-gans train`: one-line errors, and corrupt samples that train on."""

import io
import tarfile

import numpy as np
import pytest
from helpers.train_utils import read_metrics, series, train
from PIL import Image

from lightning_gans.cli import main
from lightning_gans.data.demo import ensure_demo_data


def run_cli(capsys, *args) -> tuple[int, str]:
    try:
        rc = main(list(args))
    except SystemExit as e:  # the Hydra app exits through sys.exit
        rc = e.code
    return rc, capsys.readouterr().err


def test_missing_shard_path(tmp_path, capsys):
    rc, err = run_cli(capsys, "train", "experiment=demo", "data=shards", f"data.shards={tmp_path}/nope.tar",
                      f"hydra.run.dir={tmp_path}/run", "logger=csv")
    assert rc == 2
    lines = [ln for ln in err.splitlines() if ln.startswith("error:")]
    assert len(lines) == 1 and "nope.tar" in lines[0] and "data.shards" in lines[0]


def test_unknown_config_key(tmp_path, capsys):
    rc, err = run_cli(capsys, "train", "experiment=demo", "model.r1_gama=1", f"hydra.run.dir={tmp_path}/run")
    assert rc not in (0, None)
    assert "model.r1_gama" in err


def test_wrong_resolution_for_data(tmp_path, capsys):
    shards = ensure_demo_data(resolution=32, count=64, root=tmp_path / "cache")
    rc, err = run_cli(capsys, "train", "experiment=demo", "data=shards", f"data.shards={shards}",
                      "model.resolution=16", f"hydra.run.dir={tmp_path}/run", "logger=csv")
    assert rc == 2
    line = [ln for ln in err.splitlines() if ln.startswith("error:")][0]
    assert "32 px" in line and "16 px" in line


def _png(rng, size=32) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(rng.integers(0, 255, (size, size, 3), dtype=np.uint8)).save(buf, format="PNG")
    return buf.getvalue()


def _add(tar, name, data):
    info = tarfile.TarInfo(name)
    info.size = len(data)
    tar.addfile(info, io.BytesIO(data))


def test_corrupt_samples_are_skipped_and_counted(tmp_path):
    rng = np.random.default_rng(0)
    shard = tmp_path / "data-000000.tar"
    with tarfile.open(shard, "w") as tar:
        for i in range(14):
            _add(tar, f"{i:04d}.png", _png(rng))
        good = io.BytesIO()
        Image.fromarray(rng.integers(0, 255, (32, 32, 3), dtype=np.uint8)).save(good, format="JPEG")
        _add(tar, "bad1.jpg", good.getvalue()[: len(good.getvalue()) // 3])  # truncated JPEG
        _add(tar, "bad2.txt", b"not an image")  # a member with no image at all
    run_dir = tmp_path / "run"
    out = train(run_dir, "experiment=demo", "data=shards", f"data.shards={shard}", "data.num_workers=0",
                "logger=csv", "trainer.max_steps=6", "trainer.log_every_n_steps=1",
                "trainer.enable_progress_bar=false", "callbacks.samples.every_n_steps=0")
    assert out["global_step"] == 6
    skipped = series(read_metrics(run_dir), "data/skipped")
    # 48 samples drawn from a 16-member shard: both bad members were met, at least twice
    assert max(skipped.values()) >= 4
    assert all(np.isfinite(v) for v in series(read_metrics(run_dir), "loss/D_main").values())


@pytest.mark.parametrize("bad", ["model=nope"])
def test_unknown_config_option(tmp_path, capsys, bad):
    rc, err = run_cli(capsys, "train", bad, f"hydra.run.dir={tmp_path}/run")
    assert rc not in (0, None) and "nope" in err
