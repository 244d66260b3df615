"""The fault and bad-input battery (issue 19): nothing hangs, nothing is lost, one clear line.

Each error case checks the one line: exit status 2, no traceback, the key or file named and
what to do. Data-loss cases hash the inputs before and after. Commands run in-process through
lightning_gans.cli.main (a subprocess costs seconds of imports), except where a real signal
or a second live process is the point.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import pickle
import signal
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import numpy as np
import pytest
import pytorch_lightning as pl
import torch
from helpers.train_utils import read_metrics, train
from PIL import Image

from lightning_gans.checkpoint import atomic_save, safe_load
from lightning_gans.cli import main
from lightning_gans.data.demo import ensure_demo_data

pytestmark = pytest.mark.usefixtures("one_thread")

FAST = ("experiment=demo", "logger=csv", "trainer.enable_progress_bar=false",
        "callbacks.samples.every_n_steps=0", "trainer.log_every_n_steps=1")


def run_cli(capsys, *args) -> tuple[int, str]:
    try:
        rc = main([str(a) for a in args])
    except SystemExit as e:  # the Hydra app exits through sys.exit
        rc = e.code
    finally:
        # Hydra's console/file handlers stay on the root logger and would write to this test's
        # captured (then closed) stream in later tests: take them off.
        root = logging.getLogger()
        for h in list(root.handlers):
            if not type(h).__module__.startswith("_pytest"):
                root.removeHandler(h)
                h.close()
    out = capsys.readouterr()
    return rc, out.err + out.out


def one_error_line(rc, text: str, *must: str) -> str:
    """The single `error:` line of a failed command; asserts status 2, no traceback, and that
    each of `must` appears in it."""
    assert rc == 2, text[-3000:]
    assert "Traceback" not in text, text[-3000:]
    lines = [ln for ln in text.splitlines() if ln.startswith("error:")]
    assert len(lines) == 1, text[-3000:]
    for m in must:
        assert m in lines[0], lines[0]
    assert "weights_only" not in lines[0]
    return lines[0]


def sha(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def tree_hashes(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): sha(p) for p in sorted(Path(root).rglob("*")) if p.is_file()}


def _add(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    tar.addfile(info, io.BytesIO(data))


def _png(rng, size=32) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(rng.integers(0, 255, (size, size, 3), dtype=np.uint8)).save(buf, format="PNG")
    return buf.getvalue()


@pytest.fixture(scope="module")
def demo_shards(tmp_path_factory) -> Path:
    return ensure_demo_data(resolution=32, count=64, root=tmp_path_factory.mktemp("cache"))


@pytest.fixture(scope="module")
def trained(tmp_path_factory, demo_shards) -> Path:
    """A 2-step tiny StyleGAN2 run: its run dir (checkpoints/last.ckpt)."""
    run_dir = tmp_path_factory.mktemp("trained") / "run"
    train(run_dir, *FAST, "data=shards", f"data.shards={demo_shards}", "trainer.max_steps=2",
          "callbacks.checkpoint.every_n_train_steps=1")
    return run_dir


# ---------------------------------------------------------------- hangs / data loss


def test_all_corrupt_shards_give_up_in_bounded_time(tmp_path, capsys):
    """Intact tars and manifest, every payload corrupt: one line, quickly, not an endless run."""
    rng = np.random.default_rng(0)
    folder = tmp_path / "shards"
    folder.mkdir()
    shards = []
    for s in range(2):
        name = f"shard-{s:06d}.tar"
        with tarfile.open(folder / name, "w") as tar:
            for i in range(300):
                _add(tar, f"{s}{i:05d}.png", b"\x89PNG\r\n\x1a\n" + rng.bytes(200))  # header, then junk
        shards.append({"name": name, "count": 300})
    (folder / "manifest.json").write_text(json.dumps({"format": 1, "resolution": 32, "count": 600,
                                                      "shards": shards, "labels": None}))
    t0 = time.monotonic()
    rc, err = run_cli(capsys, "train", *FAST, "data=shards", f"data.shards={folder}", "data.num_workers=2",
                      "trainer.max_steps=5", f"hydra.run.dir={tmp_path}/run")
    elapsed = time.monotonic() - t0
    line = one_error_line(rc, err, "gave up on the shards", str(folder), "lightning-gans shards")
    assert "1000 samples in a row" in line
    assert elapsed < 60, elapsed
    assert "UnidentifiedImageError" in line  # why the samples were dropped


def test_skips_are_said_on_the_console(tmp_path, caplog):
    """Skips in DataLoader workers are also announced by the main process (the console)."""
    rng = np.random.default_rng(0)
    shard = tmp_path / "data-000000.tar"
    with tarfile.open(shard, "w") as tar:
        for i in range(14):
            _add(tar, f"{i:04d}.png", _png(rng))
        _add(tar, "bad1.png", b"junk")
        _add(tar, "bad2.png", b"more junk")
    caplog.set_level("WARNING", logger="lightning_gans.data.stream")
    train(tmp_path / "run", *FAST, "data=shards", f"data.shards={shard}", "data.num_workers=1",
          "trainer.max_steps=4")
    said = [r.getMessage() for r in caplog.records if r.process == os.getpid()
            and "samples skipped so far" in r.getMessage()]
    assert said and said[0].startswith("data: ")


def test_truncated_shards_one_line(tmp_path, capsys, demo_shards):
    folder = tmp_path / "shards"
    folder.mkdir()
    for p in demo_shards.iterdir():
        data = p.read_bytes()
        (folder / p.name).write_bytes(data[:700] if p.suffix == ".tar" else data)
    rc, err = run_cli(capsys, "train", *FAST, "data=shards", f"data.shards={folder}", "data.num_workers=1",
                      "trainer.max_steps=3", f"hydra.run.dir={tmp_path}/run")
    one_error_line(rc, err, str(folder), "check")


def test_manifest_not_json(tmp_path, capsys, demo_shards):
    folder = tmp_path / "shards"
    folder.mkdir()
    for p in demo_shards.iterdir():
        (folder / p.name).write_bytes(p.read_bytes())
    (folder / "manifest.json").write_text("{not json")
    rc, err = run_cli(capsys, "train", *FAST, "data=shards", f"data.shards={folder}",
                      f"hydra.run.dir={tmp_path}/run")
    one_error_line(rc, err, "manifest.json", "not a readable JSON manifest", "lightning-gans shards")


@pytest.mark.parametrize("link", ["same", "symlink", "hardlink"])
def test_convert_never_writes_over_its_input(tmp_path, capsys, trained, link):
    src = tmp_path / "run.ckpt"
    src.write_bytes((trained / "checkpoints" / "last.ckpt").read_bytes())
    out = {"same": src, "symlink": tmp_path / "sym.ckpt", "hardlink": tmp_path / "hard.ckpt"}[link]
    if link == "symlink":
        out.symlink_to(src)
    elif link == "hardlink":
        os.link(src, out)
    before = sha(src)
    rc, err = run_cli(capsys, "convert", src, out, "--to", "official-state-dict", "--flavor", "rosinality")
    one_error_line(rc, err, "refusing to write over an input", str(src), "another output path")
    assert sha(src) == before
    safe_load(src)  # still our training checkpoint


def test_evaluate_out_is_not_the_checkpoint(tmp_path, capsys, trained):
    ckpt = trained / "checkpoints" / "last.ckpt"
    before = sha(ckpt)
    rc, err = run_cli(capsys, "evaluate", ckpt, "metrics=fid50k_full", f"out={ckpt}")
    one_error_line(rc, err, "refusing to write over an input", "out=")
    assert sha(ckpt) == before


def test_resume_appends_metrics_and_second_run_is_refused(tmp_path, capsys, demo_shards):
    run_dir = tmp_path / "run"
    common = (*FAST, "data=shards", f"data.shards={demo_shards}", "callbacks.checkpoint.every_n_train_steps=2")
    train(run_dir, *common, "trainer.max_steps=2")
    first = read_metrics(run_dir)
    assert {int(r["step"]) for r in first} >= {0, 1}
    train(run_dir, *common, "trainer.max_steps=4", "ckpt_path=last")
    rows = read_metrics(run_dir)
    assert rows[: len(first)] == first  # the earlier rows are still there, unchanged
    assert {int(r["step"]) for r in rows} >= {0, 1, 2, 3}
    assert not (run_dir / ".lg-run.lock").exists()  # released at the end

    # a live holder (another process) of the run dir: refused with one line
    holder = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        (run_dir / ".lg-run.lock").write_text(json.dumps(
            {"pid": holder.pid, "host": os.uname().nodename, "token": "x"}))
        rc, err = run_cli(capsys, "train", *common, "trainer.max_steps=6", "ckpt_path=last",
                          f"hydra.run.dir={run_dir}")
        one_error_line(rc, err, f"run dir {run_dir} is in use by another live run", "hydra.run.dir")
    finally:
        holder.kill()
        holder.wait()
    # the holder died without releasing (kill -9): the stale lock is recovered
    rows_before = len(read_metrics(run_dir))
    train(run_dir, *common, "trainer.max_steps=5", "ckpt_path=last")
    assert len(read_metrics(run_dir)) > rows_before
    assert not (run_dir / ".lg-run.lock").exists()


def test_resume_with_another_model_is_one_line(tmp_path, capsys, trained, demo_shards):
    ckpt = trained / "checkpoints" / "last.ckpt"
    rc, err = run_cli(capsys, "train", *FAST, "data=shards", f"data.shards={demo_shards}",
                      "model.channel_max=16", f"ckpt_path={ckpt}", f"hydra.run.dir={tmp_path}/run")
    line = one_error_line(rc, err, f"ckpt_path={ckpt}", "init_from=", "tensors of another shape")
    assert len(line) < 600 and len(err) < 20000


# ---------------------------------------------------------------- checkpoints


def test_random_bytes_and_unexpected_globals(tmp_path, capsys):
    rand = tmp_path / "rand.ckpt"
    rand.write_bytes(np.random.default_rng(0).bytes(4096))
    rc, err = run_cli(capsys, "generate", rand, "--seeds", "0", "--outdir", tmp_path / "out")
    one_error_line(rc, err, str(rand), "not a torch checkpoint", "another copy")

    # the same for a network pickle: random bytes, and a pickle of plain data with no networks
    rand_pkl = tmp_path / "rand.pkl"
    rand_pkl.write_bytes(np.random.default_rng(1).bytes(4096))
    rc, err = run_cli(capsys, "generate", rand_pkl, "--seeds", "0", "--outdir", tmp_path / "out")
    one_error_line(rc, err, str(rand_pkl), "not a readable network pickle", "another copy")
    plain = tmp_path / "plain.pkl"
    plain.write_bytes(pickle.dumps({"training_set_kwargs": {"resolution": 64}}))
    rc, err = run_cli(capsys, "generate", plain, "--seeds", "0", "--outdir", tmp_path / "out")
    one_error_line(rc, err, str(plain), "no G or G_ema", "network-snapshot")

    glob = tmp_path / "np.ckpt"
    torch.save({"state_dict": {}, "x": np.zeros(3)}, glob)
    rc, err = run_cli(capsys, "generate", glob, "--seeds", "0", "--outdir", tmp_path / "out")
    line = one_error_line(rc, err, str(glob), "multiarray._reconstruct", "lightning-gans convert")
    assert "weights_only" not in err and "trust" not in line


def test_hand_edited_model_config_fails_before_building(tmp_path, capsys, trained):
    ckpt = safe_load(trained / "checkpoints" / "last.ckpt")
    ckpt["model_config"]["G_kwargs"]["w_dim"] = 10**7  # 10^14 weights if it were built
    bad = atomic_save(ckpt, tmp_path / "edited.ckpt")
    t0 = time.monotonic()
    rc, err = run_cli(capsys, "generate", bad, "--seeds", "0", "--outdir", tmp_path / "out")
    one_error_line(rc, err, str(bad), "model_config G_kwargs asks for more than", "MiB of tensors but the file "
                   "holds", "damaged or hand-edited")
    assert time.monotonic() - t0 < 10


def test_stale_temp_files_are_removed(tmp_path):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    stale = tmp_path / f".last.ckpt.tmp{dead.pid}"
    stale.write_bytes(b"")
    old = time.time() - 3600
    os.utime(stale, (old, old))
    fresh = tmp_path / f".other.ckpt.tmp{os.getppid()}"  # a live writer's temp: kept
    fresh.write_bytes(b"")
    atomic_save({"a": torch.zeros(2)}, tmp_path / "last.ckpt")
    assert not stale.exists() and fresh.exists()
    assert safe_load(tmp_path / "last.ckpt")["a"].shape == (2,)


def test_unwritable_and_full_disk_say_so(tmp_path, monkeypatch):
    from lightning_gans.errors import CheckpointError

    def full(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(torch, "save", full)
    (tmp_path / "last.ckpt").write_bytes(b"previous")
    with pytest.raises(CheckpointError, match=r"no space left on the disk of .*needs about 4 MiB"):
        atomic_save({"w": torch.zeros(1 << 20)}, tmp_path / "last.ckpt")
    assert (tmp_path / "last.ckpt").read_bytes() == b"previous"
    assert not list(tmp_path.glob(".*tmp*"))
    monkeypatch.undo()
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    if os.geteuid() == 0:  # root writes anywhere: the refusal the kernel would give, at the write

        def refused(*args, **kwargs):
            raise PermissionError(13, "Permission denied")

        monkeypatch.setattr(torch, "save", refused)
    with pytest.raises(CheckpointError, match="give a writable folder"):
        atomic_save({"a": 1}, ro / "x.ckpt")


# ---------------------------------------------------------------- silent wrong results


def test_divergence_is_said_stopped_and_never_saved(tmp_path, capsys, demo_shards):
    run_dir = tmp_path / "run"
    rc, err = run_cli(capsys, "train", *FAST, "data=shards", f"data.shards={demo_shards}", "model.lr=1e6",
                      "trainer.max_steps=40", "callbacks.checkpoint.every_n_train_steps=1",
                      "callbacks.divergence.max_nonfinite_steps=3", f"hydra.run.dir={run_dir}")
    line = one_error_line(rc, err, "training diverged", "last good checkpoint", "model.lr")
    assert "non-finite values at step" in err  # said on the console when it happened
    ckpts = sorted((run_dir / "checkpoints").glob("*.ckpt"))
    assert ckpts, "the finite steps before the divergence were saved"
    for p in ckpts:  # no checkpoint holds NaN/inf weights
        state = safe_load(p)["state_dict"]
        assert all(torch.isfinite(v).all() for v in state.values() if v.is_floating_point()), p
    named = line.split("last good checkpoint: ")[1].split(";")[0]
    assert Path(named) in ckpts
    assert int(safe_load(named)["global_step"]) < 40


class _TermAt(pl.Callback):
    """Sends this process SIGTERM at the end of iteration `at` (as `kill PID` or Slurm would)."""

    def __init__(self, at: int):
        self.at = at

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        if trainer.global_step == self.at:
            os.kill(os.getpid(), signal.SIGTERM)


def test_sigterm_saves_says_so_and_exits_nonzero(tmp_path, caplog, demo_shards):
    run_dir = tmp_path / "run"
    caplog.set_level("WARNING", logger="lightning_gans.callbacks.requeue")
    with pytest.raises(SystemExit) as exc:
        train(run_dir, *FAST, "data=shards", f"data.shards={demo_shards}", "trainer.max_steps=50",
              "callbacks.checkpoint.every_n_train_steps=5", callbacks=[_TermAt(3)])
    assert exc.value.code == 143
    last = run_dir / "checkpoints" / "last.ckpt"
    assert safe_load(last)["global_step"] == 3  # saved where it stopped, not at a periodic step
    said = [r.getMessage() for r in caplog.records if "SIGTERM received" in r.getMessage()]
    assert said and str(last) in said[0] and "ckpt_path=" in said[0]
    assert not (run_dir / ".lg-run.lock").exists()
    # Resumed from it, the checkpoint callback goes on writing last.ckpt (not last-v1.ckpt beside a
    # last.ckpt left at step 3, which ckpt_path=last would read again). The same checkpoint
    # settings: Lightning keys a callback's saved state by them.
    train(run_dir, *FAST, "data=shards", f"data.shards={demo_shards}", "trainer.max_steps=5",
          "callbacks.checkpoint.every_n_train_steps=5", "ckpt_path=last")
    assert safe_load(last)["global_step"] == 5
    assert sorted(p.name for p in last.parent.glob("last*")) == ["last.ckpt"]


@pytest.fixture(scope="module")
def gen_ckpt(trained) -> Path:
    return trained / "checkpoints" / "last.ckpt"


@pytest.mark.parametrize("flags,must", [
    (["--truncation", "nan"], "--truncation nan"),
    (["--truncation-cutoff", "-2"], "--truncation-cutoff -2"),
    (["--grid", "--grid-cols", "0"], "--grid-cols 0"),
    (["--batch", "0"], "--batch 0"),
])
def test_generate_flags_refused(tmp_path, capsys, gen_ckpt, flags, must):
    rc, err = run_cli(capsys, "generate", gen_ckpt, "--seeds", "0-1", "--outdir", tmp_path / "out", *flags)
    one_error_line(rc, err, must)
    assert not list((tmp_path / "out").glob("*.png"))


def test_generate_warns_on_extreme_truncation(tmp_path, capsys, gen_ckpt):
    rc, err = run_cli(capsys, "generate", gen_ckpt, "--seeds", "0", "--outdir", tmp_path / "out",
                      "--truncation", "-3", "--no-watermark")
    assert rc == 0 and "warning: --truncation -3" in err


def test_nan_weights_and_latents_refused(tmp_path, capsys, gen_ckpt):
    ckpt = safe_load(gen_ckpt)
    key = next(k for k in ckpt["state_dict"] if k.startswith("G_ema.synthesis.") and k.endswith("weight"))
    ckpt["state_dict"][key] = torch.full_like(ckpt["state_dict"][key], float("nan"))
    bad = atomic_save(ckpt, tmp_path / "nan.ckpt")
    rc, err = run_cli(capsys, "generate", bad, "--seeds", "0", "--outdir", tmp_path / "out")
    one_error_line(rc, err, str(bad), "NaN/inf", key[len("G_ema."):], "earlier checkpoint")

    G = safe_load(gen_ckpt)["model_config"]["G_kwargs"]
    w = np.full((1, 1, G["w_dim"]), np.nan, np.float32)
    np.savez(tmp_path / "nan.npz", w=w)
    rc, err = run_cli(capsys, "generate", gen_ckpt, "--latent", tmp_path / "nan.npz", "--outdir", tmp_path / "out")
    one_error_line(rc, err, "nan.npz", "NaN/inf")
    assert not list((tmp_path / "out").glob("*.png"))


@pytest.mark.parametrize("bad,must", [
    ("model.resolution=abc", "model.resolution='abc'"),
    ("model.resolution=100", "power of two"),
    ("model.lr=fast", "model.lr='fast'"),
    ("model.batch_size=0", "model.batch_size=0"),
    ("data.num_workers=-1", "data.num_workers=-1"),
    ("trainer.max_steps=0", "trainer.max_steps=0"),
    ("model.mbstd_group_size=3", "model.mbstd_group_size=3"),
    ("data=shards", "data.shards=DIR"),
    ("LG_OPS=fast", "LG_OPS='fast'"),
    ("LG_UPFIRDN2D=fast", "LG_UPFIRDN2D='fast'"),
])
def test_wrong_config_values_are_one_line(tmp_path, capsys, monkeypatch, bad, must):
    cache = tmp_path / "cache"
    monkeypatch.setenv("LG_CACHE_DIR", str(cache))
    args = [bad]
    if bad.startswith("LG_"):  # an environment variable
        monkeypatch.setenv(*bad.split("="))
        args = []
    rc, err = run_cli(capsys, "train", *FAST, *args, f"hydra.run.dir={tmp_path}/run")
    line = one_error_line(rc, err, must)
    assert "give" in line or "use" in line  # says what to do
    assert not cache.exists()  # refused before any demo data was built


@pytest.mark.parametrize("bad,must", [
    (["trainer.max_stepz=1"], ["'trainer.max_stepz'", "+trainer.max_stepz=1"]),   # no such key
    (["model=paper9"], ["model/paper9", "paper256", "stylegan2"]),                 # every option listed
    (["trainer.max_steps=[1"], ["[1", "override_grammar"]),                        # syntax
])
def test_unknown_keys_and_options_are_one_line(tmp_path, capsys, bad, must):
    """Hydra's own composition errors (several lines, exit 1) come out as one line, exit 2."""
    rc, err = run_cli(capsys, "train", *FAST, *bad, f"hydra.run.dir={tmp_path}/run")
    one_error_line(rc, err, *must)
    assert not (tmp_path / "run").exists()


def test_sweep_is_checked_before_any_job(tmp_path, capsys, monkeypatch):
    """-m with one bad value among good ones: refused before the first (good) job trains, and
    without a sweep dir; a bad group option in a second swept key alike, and a glob() option whose
    config cannot train."""
    monkeypatch.chdir(tmp_path)
    sweep = f"hydra.sweep.dir={tmp_path}/sweep"
    monkeypatch.delenv("LG_FAN_WEIGHTS", raising=False)
    for bad, must in (["model.lr=0.002,abc", "model.lr='abc'"], ["model=auto,paper9", "model/paper9"],
                      # the second option a glob matches needs a FAN weights file that is not given
                      ["model=glob(stargan_v2_*,exclude=stargan_v2_tiny)", "model.fan_weights=PATH"]):
        rc, err = run_cli(capsys, "train", "-m", *FAST, "trainer.max_steps=1", "model.resolution=16,32",
                          bad, sweep)
        one_error_line(rc, err, must)
        assert not (tmp_path / "sweep").exists() and not (tmp_path / "multirun").exists()


def test_sweep_jobs_cover_every_value_once():
    from lightning_gans.commands._hydra import sweep_jobs

    jobs = sweep_jobs(["experiment=demo", "model.lr=range(1,3)", "x=a,b,c"])
    assert jobs == [["experiment=demo", "model.lr=1", "x=a"], ["experiment=demo", "model.lr=2", "x=a"],
                    ["experiment=demo", "model.lr=1", "x=b"], ["experiment=demo", "model.lr=1", "x=c"]]
    # a glob over one of our groups: each option it matches (conf/model/paper*.yaml), sorted as Hydra does
    assert sweep_jobs(["model=glob(paper*,exclude=paper512)", "x=1,2"]) == [
        ["model=paper1024", "x=1"], ["model=paper256", "x=1"], ["model=paper1024", "x=2"]]
    # Hydra's own groups too (its plugins' options beside ours), as the sweep itself lists them
    launchers = [job[0] for job in sweep_jobs(["hydra/launcher=glob(*)"])]
    assert {"hydra/launcher=basic", "hydra/launcher=slurm"} <= set(launchers) and launchers == sorted(launchers)
    assert sweep_jobs(["model=glob(zz*)", "x=1,2"]) == []  # a glob that matches nothing runs no job


def test_run_dir_that_is_a_file(tmp_path, capsys):
    (tmp_path / "file").write_text("x")
    rc, err = run_cli(capsys, "train", *FAST, f"hydra.run.dir={tmp_path}/file/run")
    one_error_line(rc, err, "run dir", "hydra.run.dir")


def test_transfer_same_stem_sources_get_unique_outputs(tmp_path, capsys):
    from helpers.synth_utils import make_stargan_checkpoint

    ckpt = make_stargan_checkpoint(tmp_path / "sg.ckpt", 32)
    src = tmp_path / "src"
    src.mkdir()
    rng = np.random.default_rng(0)
    for ext in ("png", "jpg"):  # face.png and face.jpg: the same stem
        Image.fromarray(rng.integers(0, 255, (40, 40, 3), dtype=np.uint8)).save(src / f"face.{ext}")
    before = tree_hashes(src)
    rc, err = run_cli(capsys, "transfer", ckpt, "--source", src, "--reference", src, "--domain", "1",
                      "--latent-seeds", "0", "--outdir", src, "--no-watermark")
    assert rc == 0, err
    written = sorted(p.name for p in src.glob("*.png") if p.name != "face.png")
    assert len(written) == 2 * 2 + 2  # every (source, reference) pair and (source, seed): none lost
    assert "ref_face_png__face_jpg.png" in written and "latent_face_jpg__seed0000.png" in written
    assert f"wrote {len(written)} files" in err
    assert {k: v for k, v in tree_hashes(src).items() if k in before} == before  # inputs untouched


def test_fid_skips_corrupt_images_and_warns_on_few(tmp_path, capsys, caplog, monkeypatch):
    import lightning_gans.metrics.folders as fid_lib
    from lightning_gans.cli import main as cli_main
    from lightning_gans.metrics.dataset_stats import compute_feature_stats

    class Means(torch.nn.Module):  # stand-in feature network: per-channel means
        kind, file_hash, identity = "test", "0", None

        def forward(self, x):
            return torch.cat([x.mean((2, 3)), x.std((2, 3))], 1).double()

    rng = np.random.default_rng(0)
    for side in ("a", "b"):
        (tmp_path / side).mkdir()
        for i in range(3):
            Image.fromarray(rng.integers(0, 255, (16, 16, 3), dtype=np.uint8)).save(tmp_path / side / f"{i}.png")
    good = io.BytesIO()
    Image.fromarray(rng.integers(0, 255, (16, 16, 3), dtype=np.uint8)).save(good, format="JPEG")
    (tmp_path / "a" / "bad.jpg").write_bytes(good.getvalue()[:40])  # truncated JPEG
    caplog.set_level("WARNING", logger="lightning_gans.metrics.dataset_stats")
    stats = compute_feature_stats(tmp_path / "a", Means())
    assert stats.num_items == 3
    assert any("skipped 1 unreadable images" in r.getMessage() and "bad.jpg" in r.getMessage()
               for r in caplog.records)
    monkeypatch.setattr(fid_lib, "load_inception", lambda *a, **k: Means())
    monkeypatch.setattr(fid_lib, "fid_from_stats", lambda *a, **k: 1.0)
    assert cli_main(["fid", str(tmp_path / "a"), str(tmp_path / "b")]) == 0
    assert "warning: FID from 3 images is unreliable" in capsys.readouterr().err
    assert cli_main(["fid", str(tmp_path / "a"), str(tmp_path / "b"), "--resolution", "0"]) == 2
    assert "error: --resolution 0 is not valid" in capsys.readouterr().err


def test_tiny_images_and_one_image_datasets_are_called_out(tmp_path, capsys, caplog):
    from lightning_gans.data.datamodule import ShardDataModule
    from lightning_gans.data.shards import shards_from_folder

    folder = tmp_path / "imgs"
    folder.mkdir()
    Image.new("RGB", (1, 1), (200, 10, 10)).save(folder / "dot.png")  # a 1x1 image
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (40, 40, 3), dtype=np.uint8)).save(folder / "ok.png")
    m = shards_from_folder(folder, tmp_path / "shards", resolution=32)
    assert m["count"] == 1
    assert any("dot.png" in s and "too small to upscale" in s for s in m["skipped"])
    rc, err = run_cli(capsys, "shards", folder, tmp_path / "s0", "--resolution", "0")
    one_error_line(rc, err, "--resolution 0")
    caplog.set_level("WARNING", logger="lightning_gans.data.datamodule")
    dm = ShardDataModule(tmp_path / "shards", resolution=32, batch_size=8, num_workers=0)
    dm.setup("fit")
    assert any("holds only 1 image" in r.getMessage() for r in caplog.records)


def _children(pid: int) -> set[int]:
    """Live descendants of pid (from /proc; zombies count as gone: only PID 1's reaping is left)."""
    parent: dict[int, int] = {}
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                fields = (d / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if fields[0] != "Z":
                parent[int(d.name)] = int(fields[1])
    out, todo = set(), [pid]
    while todo:
        p = todo.pop()
        kids = [c for c, pp in parent.items() if pp == p]
        out.update(kids)
        todo += kids
    return out


@pytest.mark.skipif(not Path("/proc/self/stat").is_file(), reason="needs /proc")
def test_kill_9_of_a_training_run_leaves_no_process_behind(tmp_path):
    """W&B's service (wandb-core) and the DataLoader workers end with the run they serve."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "lightning_gans", "train", "experiment=demo",
                             "trainer.max_steps=100000", "data.num_workers=1", f"hydra.run.dir={tmp_path}"],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 240
        while time.time() < deadline and not list(tmp_path.glob("csv/**/metrics.csv")) and proc.poll() is None:
            time.sleep(1)  # the loggers exist and the loader's workers run once a step was logged
        kids = _children(proc.pid)
        assert proc.poll() is None and kids, "the run did not start"
    finally:
        proc.kill()
        proc.wait(timeout=30)
    deadline = time.time() + 30
    while time.time() < deadline and _live(kids):
        time.sleep(0.5)
    assert not _live(kids), f"left behind: {sorted(_live(kids))}"


def _live(pids: set[int]) -> set[int]:
    out = set()
    for p in pids:
        try:
            if Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z":
                out.add(p)
        except OSError:
            pass
    return out
