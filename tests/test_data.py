"""Data layer: shard writer, folder ingestion, demo data, streaming datamodule, exact resume."""

import hashlib
import io
import json
import logging
import tarfile
import threading
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
import webdataset as wds
from PIL import Image

from lightning_gans.commands.shards import main
from lightning_gans.data.datamodule import ShardDataModule
from lightning_gans.data.demo import ensure_demo_data
from lightning_gans.data.shards import ShardWriter, shards_from_folder
from lightning_gans.data.stream import ShardStream, StreamLoader, worker_batches_before
from lightning_gans.errors import DataError

R = 16


def _png(i: int, size: int = R) -> bytes:
    """Image i: red = i (identifies it), green = column ramp (shows an x-flip), blue = 100."""
    a = np.zeros((size, size, 3), np.uint8)
    a[..., 0], a[..., 1], a[..., 2] = i, np.arange(size) * (256 // size), 100
    buf = io.BytesIO()
    Image.fromarray(a).save(buf, "PNG")
    return buf.getvalue()


def _ids(img: torch.Tensor) -> list[int]:
    return ((img[:, 0, 0, 0] + 1) * 127.5).round().long().tolist()


def _flipped(img: torch.Tensor) -> list[bool]:
    return (img[:, 1, 0, 0] > img[:, 1, 0, -1]).tolist()


def _write(out: Path, n: int, maxcount: int, labels: bool = True) -> dict:
    with ShardWriter(out, maxcount=maxcount) as w:
        for i in range(n):
            meta = {"label": i % 2, "label_name": "ab"[i % 2]} if labels else None
            w.write(f"s{i:04d}", _png(i), "png", meta)
    return w.close()


@pytest.fixture(scope="module")
def shards(tmp_path_factory) -> Path:
    """4 shards x 12 labelled 16 px images, ids 0..47."""
    out = tmp_path_factory.mktemp("shards")
    _write(out, 48, 12)
    return out


def test_writer_round_trip_and_manifest(tmp_path):
    m = _write(tmp_path, 7, 3)
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "manifest.json", "shard-000000.tar", "shard-000001.tar", "shard-000002.tar"]
    assert json.loads((tmp_path / "manifest.json").read_text()) == m
    assert (m["format_version"], m["count"], m["resolution"]) == (1, 7, R)
    assert [s["count"] for s in m["shards"]] == [3, 3, 1]
    assert m["labels"] == {"a": 0, "b": 1} and m["label_counts"] == {"a": 4, "b": 3}
    for s in m["shards"]:
        assert hashlib.sha256((tmp_path / s["name"]).read_bytes()).hexdigest() == s["sha256"]
    urls = [str(tmp_path / s["name"]) for s in m["shards"]]
    got = list(wds.WebDataset(urls, shardshuffle=False, nodesplitter=wds.split_by_node))
    assert [s["__key__"] for s in got] == [f"s{i:04d}" for i in range(7)]
    assert [s["png"] for s in got] == [_png(i) for i in range(7)]  # bytes stored as given
    assert json.loads(got[5]["json"]) == {"label": 1, "label_name": "b"}


def test_writer_failure_leaves_no_partial_shard_or_manifest(tmp_path):
    with pytest.raises(RuntimeError), ShardWriter(tmp_path, maxcount=3) as w:
        for i in range(4):
            w.write(f"k{i}", _png(i), "png")
        raise RuntimeError("killed")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["shard-000000.tar"]  # full one only
    with pytest.raises(DataError, match="not in its manifest"):
        ShardWriter(tmp_path)
    w = ShardWriter(tmp_path / "x", resolution=R)
    for bad, match in [(("k", _png(0), "gif"), "ext"), (("k", b"not an image", "png"), "readable"),
                       (("k", _png(0), "jpg"), "PNG but ext"), (("k", _png(0, 8), "png"), "8x8"),
                       (("a.b", _png(0), "png"), "key")]:
        with pytest.raises(DataError, match=match):
            w.write(*bad)
    w.write("k", _png(0), "png")
    with pytest.raises(DataError, match="twice"):
        w.write("k", _png(1), "png")


def test_writer_append_merges_manifest(tmp_path):
    _write(tmp_path, 5, 3)
    with pytest.raises(DataError, match="append=True"):
        ShardWriter(tmp_path)
    with ShardWriter(tmp_path, maxcount=3, append=True) as w:
        for i in range(5, 9):
            w.write(f"s{i:04d}", _png(i), "png", {"label": 0, "label_name": "a"})
    m = w.close()
    assert [s["name"] for s in m["shards"]] == [f"shard-00000{i}.tar" for i in range(4)]
    assert [s["count"] for s in m["shards"]] == [3, 2, 3, 1]
    assert m["count"] == 9 and m["label_counts"] == {"a": 7, "b": 2}
    assert not list(tmp_path.glob(".*"))  # no temp files left


def _save(path: Path, img: Image.Image, **kw) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    img.save(path, **kw)


def test_shards_from_folder_converts_and_skips_bad_files(tmp_path, capsys):
    src = tmp_path / "in"
    wide = Image.new("RGB", (20, 10), (255, 0, 0))
    wide.paste((0, 0, 255), (10, 0, 20, 10))  # left red, right blue
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 CW to display": red ends up on top
    _save(src / "exif.jpg", wide, exif=exif, quality=95)
    _save(src / "sub" / "alpha.png", Image.new("RGBA", (12, 12), (0, 0, 0, 0)))
    _save(src / "sub" / "palette.png", Image.new("RGB", (9, 9), (0, 200, 0)).convert("P"))
    _save(src / "grey16.png", Image.fromarray(np.full((10, 10), 32768, np.uint16)))
    _save(src / "cmyk.jpg", Image.new("CMYK", (10, 10), (0, 0, 0, 0)))
    (src / "broken.jpg").write_bytes(b"\xff\xd8\xff garbage")
    (src / "truncated.png").write_bytes(_png(1)[:60])
    (src / "notes.txt").write_text("not an image: reported as an unsupported extension")
    assert main([str(src), str(tmp_path / "out"), "--resolution", "8", "--maxcount", "2"]) == 0
    out = capsys.readouterr()
    assert "wrote 5 images" in out.out and "3 skipped" in out.out
    assert "broken.jpg" in out.err and "truncated.png" in out.err and "notes.txt" in out.err
    m = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert (m["count"], m["resolution"], len(m["shards"]), m["labels"]) == (5, 8, 3, None)
    urls = [str(tmp_path / "out" / s["name"]) for s in m["shards"]]
    got = {json.loads(s["json"])["source"]: np.array(Image.open(io.BytesIO(s["png"])))
           for s in wds.WebDataset(urls, shardshuffle=False, nodesplitter=wds.split_by_node)}
    assert sorted(got) == ["cmyk.jpg", "exif.jpg", "grey16.png", "sub/alpha.png",
                           "sub/palette.png"]
    assert all(a.shape == (8, 8, 3) and a.dtype == np.uint8 for a in got.values())
    assert got["exif.jpg"][1, 4, 0] > 200 and got["exif.jpg"][6, 4, 2] > 200  # red top, blue bottom
    assert np.abs(got["grey16.png"].astype(int) - 128).max() <= 1  # scaled, not clipped to 255
    assert got["sub/alpha.png"].min() == 255  # transparent -> white
    assert np.abs(got["cmyk.jpg"].astype(int) - 255).max() <= 2
    with pytest.raises(DataError, match="does not exist"):
        shards_from_folder(tmp_path / "missing", tmp_path / "o2")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="no images"):
        shards_from_folder(tmp_path / "empty", tmp_path / "o3")


def test_labels_from_subfolders(tmp_path):
    for name, n in [("dogs", 3), ("cats", 2)]:
        for i in range(n):
            _save(tmp_path / "in" / name / f"{i}.png", Image.new("RGB", (8, 8), (i, 0, 0)))
    _save(tmp_path / "in" / "stray.png", Image.new("RGB", (8, 8)))
    m = shards_from_folder(tmp_path / "in", tmp_path / "out", labels_from_subfolders=True)
    assert m["labels"] == {"cats": 0, "dogs": 1} and m["label_counts"] == {"cats": 2, "dogs": 3}
    assert m["skipped"] == ["stray.png: not in a class subfolder"]
    metas = [json.loads(s["json"]) for s in wds.WebDataset(
        str(tmp_path / "out" / "shard-000000.tar"), shardshuffle=False,
        nodesplitter=wds.split_by_node)]
    assert [(d["label"], d["label_name"], d["source"]) for d in metas] == [
        (0, "cats", "cats/0.png"), (0, "cats", "cats/1.png"), (1, "dogs", "dogs/0.png"),
        (1, "dogs", "dogs/1.png"), (1, "dogs", "dogs/2.png")]


def test_demo_data_deterministic_balanced_cached_and_concurrent(tmp_path):
    paths = []
    def build():
        paths.append(ensure_demo_data(tmp_path / "a", R, 16))

    threads = [threading.Thread(target=build) for _ in range(2)]
    [t.start() for t in threads]
    [t.join() for t in threads]
    assert len(set(paths)) == 1 and not list(paths[0].parent.glob(".*"))  # one winner, no temp
    a = json.loads((paths[0] / "manifest.json").read_text())
    b = json.loads((ensure_demo_data(tmp_path / "b", R, 16) / "manifest.json").read_text())
    c = json.loads((ensure_demo_data(tmp_path / "c", R, 16, seed=1) / "manifest.json").read_text())
    assert a["sha256"] == b["sha256"] != c["sha256"]
    assert a["labels"] == {"photo": 0, "drawn": 1} and a["label_counts"] == {"photo": 8, "drawn": 8}
    assert len(a["shards"]) >= 4 and a["resolution"] == R
    mtime = (paths[0] / "manifest.json").stat().st_mtime_ns
    assert ensure_demo_data(tmp_path / "a", R, 16) == paths[0]
    assert (paths[0] / "manifest.json").stat().st_mtime_ns == mtime  # cached, not rebuilt


def test_datamodule_batches(shards):
    dm = ShardDataModule(shards, R, batch_size=8, num_workers=0, use_labels=True, shuffle_buffer=0)
    dm.setup("fit")
    assert (dm.c_dim, dm.label_names, dm.resolution) == (2, ["a", "b"], R)
    batches = [b for _, b in zip(range(6), dm.train_dataloader())]
    b = batches[0]
    assert b["img"].shape == (8, 3, R, R) and b["img"].dtype == torch.float32
    assert b["img"].min() == -1 and b["img"].max() <= 1
    assert b["label"].dtype == torch.int64 and b["c"].shape == (8, 2)
    assert torch.equal(b["c"].argmax(1), b["label"]) and torch.all(b["c"].sum(1) == 1)
    ids = [i for b in batches for i in _ids(b["img"])]
    assert sorted(ids) == list(range(48))  # unshuffled, one pass over the shards = each once
    assert all(_ids(b["img"])[k] % 2 == b["label"][k] for b in batches for k in range(8))
    assert int(b["skipped"]) == 0 and b["skipped"].shape == ()
    nolab = next(iter(ShardDataModule(shards, R, 8, num_workers=0).train_dataloader()))
    assert nolab["c"].shape == (8, 0) and "label" not in nolab
    assert _ids(nolab["img"]) != ids[:8]  # shuffled by default


def test_xflip_is_seeded_per_sample(shards):
    def flips(seed):
        s = ShardStream([str(p) for p in sorted(shards.glob("*.tar"))], R, 8, seed=seed, xflip=True)
        return [f for _, b in zip(range(4), s) for f in _flipped(b["img"])]
    a = flips(0)
    assert 8 <= sum(a) <= 24 and a == flips(0) and a != flips(1)


def _loader(shards, rank=0, world=1, workers=0, start=0, **kw):
    urls = [str(p) for p in sorted(shards.glob("*.tar"))]
    kw.setdefault("shuffle_buffer", 16)
    stream = ShardStream(urls, R, 4, rank=rank, world_size=world, **kw)
    return StreamLoader(stream, workers, consumed=lambda: start)


def _take(loader, n):
    return [b for _, b in zip(range(n), loader)]


def test_ranks_and_workers_read_different_shards(shards):
    # no shuffle: each (rank, worker) slot starts on its own shard of the first pass
    per_slot = []
    for rank in (0, 1):
        batches = _take(_loader(shards, rank, 2, workers=2, shuffle_buffer=0), 4)
        for w in (0, 1):  # DataLoader batch i comes from worker i % 2
            per_slot.append([i for b in batches[w::2] for i in _ids(b["img"])])
    shard_of = [{i // 12 for i in ids} for ids in per_slot]
    assert all(len(s) == 1 for s in shard_of) and len(set.union(*shard_of)) == 4
    assert _ids(_take(_loader(shards, 1, 2, workers=0, seed=0), 1)[0]["img"]) != _ids(
        _take(_loader(shards, 1, 2, workers=0, seed=5), 1)[0]["img"])


@pytest.mark.parametrize("workers", [0, 2])
def test_resume_skips_exactly_the_consumed_batches(shards, workers):
    k = 5  # odd: the resumed stream must start on worker 1's turn
    fresh = _take(_loader(shards, workers=workers, xflip=True), k + 6)
    resumed = _take(_loader(shards, workers=workers, xflip=True, start=k), 6)
    for a, b in zip(fresh[k:], resumed):
        assert torch.equal(a["img"], b["img"])
    dm = ShardDataModule(shards, R, 4, num_workers=workers, xflip=True, shuffle_buffer=16)
    dm.set_resume_step(k)  # once: the next iterator starts at k, the one after at 0 again
    assert torch.equal(_take(dm.train_dataloader(), 1)[0]["img"], fresh[k]["img"])
    assert torch.equal(_take(dm.train_dataloader(), 1)[0]["img"], fresh[0]["img"])
    epochs = _take(_loader(shards, workers=workers, epoch_batches=3), 12)  # 4 epochs of 3
    assert len(epochs) == 3  # one iterator = one epoch
    # of 7 batches with 2 workers: worker 0 made 0,2,4,6 and worker 1 made 1,3,5; with epochs of
    # 3 (each starting at worker 0): worker 0 made 0,2 | 3,5 | 6 and worker 1 made 1 | 4
    assert [worker_batches_before(7, w, 2) for w in (0, 1)] == [4, 3]
    assert [worker_batches_before(7, w, 2, 3) for w in (0, 1)] == [5, 2]


def _corrupt_shard(path: Path) -> None:
    members = [("g0.png", _png(0)), ("bad.jpg", b"\xff\xd8\xffnot a jpeg"), ("g1.png", _png(1)),
               ("txt.txt", b"no image"), ("g2.png", _png(2)), ("small.png", _png(3, 8)),
               ("g3.png", _png(3)), ("g4.png", _png(4)), ("g5.png", _png(5))]
    with tarfile.open(path, "w") as tar:
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))


def test_corrupt_samples_are_skipped_and_counted(tmp_path, caplog):
    _corrupt_shard(tmp_path / "c-000000.tar")
    dm = ShardDataModule(str(tmp_path / "c-{000000..000000}.tar"), R, 3, num_workers=0,
                         shuffle_buffer=0)
    dm.setup("fit")  # first sample is readable: resolution check passes
    loader = dm.train_dataloader()
    with caplog.at_level(logging.WARNING):
        got = _take(loader, 4)
    assert [_ids(b["img"]) for b in got] == [[0, 1, 2], [3, 4, 5], [0, 1, 2], [3, 4, 5]]
    assert [int(b["skipped"]) for b in got] == [3, 3, 6, 6] and dm.skipped_samples == 6
    assert "bad:" in caplog.text and "no png/jpg/webp member" in caplog.text


def test_input_errors(tmp_path, shards):
    with pytest.raises(DataError, match="nope"):
        ShardDataModule(tmp_path / "nope", R, 8)
    with pytest.raises(DataError, match="shard-000004.tar not found"):
        ShardDataModule(str(shards / "shard-{000000..000007}.tar"), R, 8)
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="no shards"):
        ShardDataModule(tmp_path / "empty", R, 8)
    with pytest.raises(DataError, match="are 16 px but the model wants 32 px.*--resolution 32"):
        ShardDataModule(shards, 32, 8).setup("fit")
    (tmp_path / "nomanifest").mkdir()  # resolution from the first sample instead
    (tmp_path / "nomanifest" / "x.tar").write_bytes((shards / "shard-000000.tar").read_bytes())
    with pytest.raises(DataError, match="are 16 px"):
        ShardDataModule(tmp_path / "nomanifest", 64, 8).setup("fit")
    _write(tmp_path / "unlabelled", 4, 4, labels=False)
    with pytest.raises(DataError, match="no labels"):
        ShardDataModule(tmp_path / "unlabelled", R, 4, use_labels=True)
    dm = ShardDataModule(shards, R, 8)
    dm.trainer = SimpleNamespace(world_size=3, global_rank=0)
    with pytest.raises(DataError, match="not divisible by the 3 ranks"):
        dm.setup("fit")


@pytest.mark.filterwarnings("ignore")  # Lightning's hints about srun, workers, ModelCheckpoint
def test_resume_through_lightning_checkpoint(shards, tmp_path):
    """Trainer.fit(ckpt_path=...) continues the stream where the first run stopped."""
    import pytorch_lightning as pl

    class GAN(pl.LightningModule):  # two optimizer steps per batch, like G and D
        def __init__(self):
            super().__init__()
            self.automatic_optimization, self.seen = False, []
            self.g, self.d = torch.nn.Linear(1, 1), torch.nn.Linear(1, 1)

        def training_step(self, batch, i):
            self.seen.append(_ids(batch["img"]))
            for opt, net in zip(self.optimizers(), (self.g, self.d)):
                opt.zero_grad()
                self.manual_backward(net(torch.ones(1, 1)).sum())
                opt.step()

        def configure_optimizers(self):
            return [torch.optim.SGD(m.parameters(), 0.1) for m in (self.g, self.d)]

    def fit(batches, ckpt=None, save_every=None):
        m = GAN()
        cbs = [pl.callbacks.ModelCheckpoint(tmp_path, every_n_train_steps=2 * save_every)] \
            if save_every else []
        pl.Trainer(max_steps=2 * batches, logger=False, enable_progress_bar=False,
                   enable_model_summary=False, enable_checkpointing=bool(cbs), callbacks=cbs,
                   default_root_dir=tmp_path).fit(
            m, ShardDataModule(shards, R, 4, num_workers=2, shuffle_buffer=16), ckpt_path=ckpt)
        return m.seen

    full = fit(7)
    fit(4, save_every=3)
    (ckpt,) = tmp_path.glob("*.ckpt")
    assert fit(7, ckpt=str(ckpt)) == full[3:]


def test_shards_from_zip_and_tar(tmp_path):
    import tarfile
    import zipfile

    rng = np.random.default_rng(3)
    pngs = {f"a/{i}.png": _png_bytes(rng) for i in range(3)} | {f"b/{i}.png": _png_bytes(rng) for i in range(2)}
    with zipfile.ZipFile(tmp_path / "in.zip", "w") as z:
        for name, data in pngs.items():
            z.writestr(name, data)
    with tarfile.open(tmp_path / "in.tar", "w") as t:
        for name, data in pngs.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            t.addfile(info, io.BytesIO(data))
    for src in ("in.zip", "in.tar"):
        m = shards_from_folder(tmp_path / src, tmp_path / f"out-{src}", labels_from_subfolders=True)
        assert m["count"] == 5 and m["labels"] == {"a": 0, "b": 1}
        assert m["label_counts"] in ({"a": 3, "b": 2}, {"0": 3, "1": 2}, {0: 3, 1: 2})


def _png_bytes(rng) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(rng.integers(0, 255, (12, 12, 3), dtype=np.uint8)).save(buf, format="PNG")
    return buf.getvalue()
