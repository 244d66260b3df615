"""`prepare-faces` end to end: a folder of bad inputs, resume after interrupts and kills, zip/tar
inputs, domains, duplicates, workers (lightning_gans.data.faces.prepare)."""

import io
import json
import os
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageFilter
from skimage import data
from test_faces_decode import encode, exif_rotated_jpeg, png16, png_bomb

from lightning_gans.commands import prepare_faces as prepare_faces_cmd
from lightning_gans.data.faces import prepare, worker
from lightning_gans.data.faces.align import align_face
from lightning_gans.errors import DataError
from lightning_gans.pretrained.weights import MTCNN_INSTALL, resolve_mtcnn_weights

MARKED = np.array([(203.0, 101.5), (245.5, 102.5), (224.0, 126.0), (203.0, 140.0), (244.5, 141.0)])
ASTRO = Image.fromarray(data.astronaut())


def shard_samples(out: Path) -> dict[str, tuple[dict, bytes]]:
    """key -> (meta, png bytes) of every sample in the shards that manifest.json lists."""
    manifest = json.loads((out / "manifest.json").read_text())
    samples: dict[str, dict] = {}
    for shard in manifest["shards"]:
        with tarfile.open(out / shard["name"]) as tf:
            for m in tf:
                key, ext = m.name.split(".", 1)
                assert (key, ext) not in {(k, e) for k, v in samples.items() for e in v}, m.name
                samples.setdefault(key, {})[ext] = tf.extractfile(m).read()
    assert sum(s["count"] for s in manifest["shards"]) == manifest["count"] == len(samples)
    return {k: (json.loads(v["json"]), v["png"]) for k, v in samples.items()}


def report(out: Path) -> dict:
    return json.loads((out / "report.json").read_text())["files"]


# -- a folder of everything that goes wrong in real photo folders ---------------------------
def make_bad_folder(root: Path) -> dict[str, tuple[str, str | None]]:
    """Writes the inputs; returns {relative path: (status, reason)} as the report must say."""
    root.mkdir()
    jpg = encode(ASTRO, "JPEG", quality=92)
    (root / "good.jpg").write_bytes(jpg)
    (root / "truncated.jpg").write_bytes(jpg[: len(jpg) // 2])
    (root / "empty.jpg").write_bytes(b"")
    (root / "text.jpg").write_text("not a photo\n")
    (root / "cmyk.jpg").write_bytes(encode(ASTRO.convert("CMYK"), "JPEG", quality=95))
    grey16 = (np.asarray(ASTRO.convert("L"), np.uint16) * 257).astype(np.uint16)
    (root / "grey16.png").write_bytes(png16(grey16))
    rgba = ASTRO.convert("RGBA")
    rgba.putalpha(Image.fromarray(np.where(np.arange(512)[None, :] < 60, 0, 255)
                                  .astype(np.uint8).repeat(512, 0)))
    (root / "alpha.png").write_bytes(encode(rgba, "PNG"))
    (root / "palette.png").write_bytes(encode(ASTRO.quantize(256), "PNG", transparency=0))
    (root / "exif_rotated.jpg").write_bytes(exif_rotated_jpeg(ASTRO))
    (root / "mirrored.webp").write_bytes(
        encode(ASTRO.transpose(Image.Transpose.FLIP_LEFT_RIGHT), "WEBP", quality=95))
    (root / "coffee.png").write_bytes(encode(Image.fromarray(data.coffee()), "PNG"))
    blurred = ASTRO.filter(ImageFilter.GaussianBlur(4))
    (root / "blurry.jpg").write_bytes(encode(blurred, "JPEG", quality=92))
    canvas = Image.new("RGB", (640, 480), (120, 130, 140))
    canvas.paste(ASTRO.resize((256, 256), Image.Resampling.LANCZOS), (200, 100))
    (root / "tiny_face.jpg").write_bytes(encode(canvas, "JPEG", quality=92))
    huge = Image.new("RGB", (3000, 2400), (90, 90, 90))
    huge.paste(ASTRO.resize((2048, 2048), Image.Resampling.BILINEAR), (500, 200))
    (root / "huge.jpg").write_bytes(encode(huge, "JPEG", quality=85))
    (root / "bomb.png").write_bytes(png_bomb(40000, 40000))
    (root / "notes.txt").write_text("shot list\n")
    os.symlink("loop_b.jpg", root / "loop_a.jpg")
    os.symlink("loop_a.jpg", root / "loop_b.jpg")
    os.symlink("missing.jpg", root / "dangling.jpg")
    (root / "nested" / "a" / "b" / "c").mkdir(parents=True)
    (root / "sub").mkdir()
    os.symlink("..", root / "sub" / "back")  # a folder loop
    os.symlink("../nested", root / "sub" / "again")  # a second way into a folder
    written, skipped = ("written", None), "skipped"
    return {
        "good.jpg": written, "cmyk.jpg": written, "grey16.png": written, "alpha.png": written,
        "palette.png": written, "exif_rotated.jpg": written, "mirrored.webp": written,
        "huge.jpg": written,
        "truncated.jpg": (skipped, "corrupt image"), "empty.jpg": (skipped, "empty file"),
        "text.jpg": (skipped, "not an image"), "coffee.png": (skipped, "no face"),
        "tiny_face.jpg": (skipped, "small face"), "bomb.png": (skipped, "image too large"),
        "blurry.jpg": (skipped, "blurry"),
        "notes.txt": (skipped, "unsupported extension"),
        "loop_a.jpg": (skipped, "symlink loop"), "loop_b.jpg": (skipped, "symlink loop"),
        "dangling.jpg": (skipped, "unreadable"), "sub/back": (skipped, "symlink loop"),
        "sub/again": (skipped, "folder linked twice"),
    }


def _mae(a, b) -> float:
    return float(np.abs(np.asarray(a, np.float64) - np.asarray(b, np.float64)).mean())


def _png(b: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(b)))


def test_bad_inputs_are_reported_and_good_ones_written(tmp_path, capsys, monkeypatch):
    try:
        resolve_mtcnn_weights()
    except DataError:
        pytest.skip(f"no MTCNN weights: {MTCNN_INSTALL}")
    expected = make_bad_folder(tmp_path / "in")
    out = tmp_path / "out"
    rc = prepare_faces_cmd.main([str(tmp_path / "in"), str(out), "--resolution", "128",
                       "--min-face", "60", "--dup-distance", "-1"])
    assert rc == 0
    files = report(out)
    assert {k: (v["status"], v["reason"]) for k, v in files.items()} == expected
    assert files["tiny_face.jpg"]["detail"].startswith("face 4")  # ~42 px < 60

    samples = shard_samples(out)
    by_source = {meta["source"]: (meta, _png(png)) for meta, png in samples.values()}
    assert sorted(by_source) == sorted(k for k, v in expected.items() if v[0] == "written")
    good = by_source["good.jpg"][1]
    assert good.shape == (128, 128, 3)
    assert _mae(by_source["cmyk.jpg"][1], good) < 6  # colours survive the CMYK round trip
    assert _mae(by_source["alpha.png"][1], good) < 6  # the transparent strip is off the face
    grey = by_source["grey16.png"][1].astype(int)
    assert (grey[..., 0] == grey[..., 1]).all() and 60 < grey.mean() < 200  # scaled, not 255
    # EXIF applied: landmarks are in the upright photo, where we marked them.
    exif_lm = np.array(by_source["exif_rotated.jpg"][0]["landmarks"])
    assert np.hypot(*(exif_lm - MARKED).T).max() < 5
    # ...and the face written is the upright photo aligned at those landmarks.
    assert _mae(by_source["exif_rotated.jpg"][1], align_face(ASTRO, exif_lm, 128)) < 2
    # The huge photo: detected on a 1024 px copy, landmarks refined at full size (x4 here).
    huge_lm = np.array(by_source["huge.jpg"][0]["landmarks"])
    assert np.hypot(*(huge_lm - ((MARKED + 0.5) * 4 - 0.5 + (500, 200))).T).max() < 4 * 5
    assert by_source["good.jpg"][0]["score"] > 0.99

    printed = capsys.readouterr().out
    assert "written" in printed and "symlink loop" in printed and "image too large" in printed

    # Rerun with a lower --min-face: only the skipped photos are looked at again, and the tiny
    # face joins the shards next to the faces already there.
    calls, real = [], worker.process

    def counting(*a, **k):
        calls.append(a[0])
        return real(*a, **k)

    monkeypatch.setattr(prepare.worker, "process", counting)
    assert prepare_faces_cmd.main([str(tmp_path / "in"), str(out), "--resolution", "128",
                         "--min-face", "30", "--dup-distance", "-1"]) == 0
    assert sorted(calls) == sorted(k for k, v in expected.items()
                                   if v[0] == "skipped" and k.endswith((".jpg", ".png"))
                                   and not k.startswith(("loop", "dangling")))
    assert report(out)["tiny_face.jpg"]["status"] == "written"
    again = shard_samples(out)
    assert len(again) == len(samples) + 1 and set(samples) < set(again)


def test_one_face_per_photo_unless_all_faces(tmp_path):
    try:
        resolve_mtcnn_weights()
    except DataError:
        pytest.skip(f"no MTCNN weights: {MTCNN_INSTALL}")
    group = Image.new("RGB", (1000, 560), (128, 128, 128))
    group.paste(ASTRO, (0, 0))  # the subject
    group.paste(ASTRO.transpose(Image.Transpose.FLIP_LEFT_RIGHT).resize((400, 400)), (560, 60))
    (tmp_path / "in").mkdir()
    group.save(tmp_path / "in" / "group.png")
    args = [str(tmp_path / "in"), "--resolution", "64", "--min-face", "40"]
    assert prepare_faces_cmd.main([args[0], str(tmp_path / "one"), *args[1:]]) == 0
    (meta, _), = shard_samples(tmp_path / "one").values()
    assert meta["box"][2] < 512  # the larger face, on the left
    assert prepare_faces_cmd.main([args[0], str(tmp_path / "all"), *args[1:], "--all-faces"]) == 0
    boxes = sorted(meta["box"][0] for meta, _ in shard_samples(tmp_path / "all").values())
    assert len(boxes) == 2 and boxes[0] < 512 < boxes[1]
    assert report(tmp_path / "all")["group.png"]["faces"] == 2


# -- resume: interrupts and kills, with the detector bypassed by a landmarks file ------------
LM = [[60.0, 70.0], [100.0, 70.0], [80.0, 95.0], [64.0, 115.0], [96.0, 115.0]]


def make_domain_folder(root: Path, n: int = 10) -> tuple[Path, list[str]]:
    """n textured photos in two domain folders, one exact copy (a duplicate) and one photo
    missing from the landmarks file. Returns (landmarks json path, expected written paths)."""
    rng = np.random.default_rng(0)
    names, lms = [], {}
    for i in range(n):
        rel = f"{'cats' if i % 2 else 'dogs'}/{i:02d}.png"
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        pixels = rng.integers(0, 256, (20, 20, 3), dtype=np.uint8)
        img = Image.fromarray(pixels).resize((160, 160), Image.Resampling.BICUBIC)
        img.save(root / rel)
        names.append(rel)
        lms[rel] = LM
    (root / "dogs" / "zz_copy.png").write_bytes((root / names[0]).read_bytes())
    lms["dogs/zz_copy.png"] = LM
    (root / "cats" / "no_landmarks.png").write_bytes((root / names[1]).read_bytes())
    path = root.parent / "landmarks.json"
    path.write_text(json.dumps(lms))
    return path, names


def _args(inp, out, lms, *extra):
    return [str(inp), str(out), "--resolution", "64", "--landmarks", str(lms),
            "--labels-from-subfolders", "--maxcount", "3", "--blur-threshold", "0", *extra]


def _check_complete(out: Path, written: list[str]) -> dict:
    samples = shard_samples(out)
    sources = sorted(meta["source"] for meta, _ in samples.values())
    assert sources == sorted(written)  # every face exactly once
    files = report(out)
    assert files["dogs/zz_copy.png"]["reason"] == "duplicate"
    assert files["dogs/zz_copy.png"]["detail"] == "near-duplicate of dogs/00.png (face 0)"
    assert files["cats/no_landmarks.png"]["reason"] == "no landmarks given"
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["labels"] == {"cats": 0, "dogs": 1}
    for meta, _ in samples.values():
        assert meta["label_name"] == meta["source"].split("/")[0]
        assert meta["label"] == manifest["labels"][meta["label_name"]]
    return samples


def test_resume_after_limit_interrupt_and_kill(tmp_path, monkeypatch):
    inp = tmp_path / "in"
    lms, written = make_domain_folder(inp)
    fresh = tmp_path / "fresh"
    assert prepare_faces_cmd.main(_args(inp, fresh, lms)) == 0
    reference = _check_complete(fresh, written)

    out = tmp_path / "out"
    assert prepare_faces_cmd.main(_args(inp, out, lms, "--limit", "3")) == 0  # a trial run
    assert len(shard_samples(out)) == 3

    # Ctrl-C (or SIGTERM) during the 3rd new input: what was done before it is kept.
    calls, real = [], worker.process

    def interrupted(*a, **k):
        calls.append(a[0])
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real(*a, **k)

    monkeypatch.setattr(prepare.worker, "process", interrupted)
    assert prepare_faces_cmd.main(_args(inp, out, lms)) == 130
    monkeypatch.undo()
    assert len(shard_samples(out)) == 5

    # SIGKILL in the middle of a shard: no chance to clean up, a half shard and the lock stay.
    code = (
        "import os, signal, sys\n"
        "from lightning_gans.data.faces import worker\n"
        "from lightning_gans.commands import prepare_faces as prepare_faces_cmd\n"
        "real, n = worker.process, [0]\n"
        "def dying(*a, **k):\n"
        "    n[0] += 1\n"
        "    if n[0] == 3: os.kill(os.getpid(), signal.SIGKILL)\n"
        "    return real(*a, **k)\n"
        "worker.process = dying\n"
        f"sys.exit(prepare_faces_cmd.main({_args(inp, out, lms)!r}))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, timeout=120)
    assert proc.returncode == -9, proc.stderr.decode()[-2000:]
    assert list(out.glob(".shard-*.tmp")) and (out / ".prepare-faces.lock").exists()
    # A shard finished after the last manifest update (killed between the two): not counted.
    (out / "shard-000042.tar").write_bytes((out / "shard-000000.tar").read_bytes())

    assert prepare_faces_cmd.main(_args(inp, out, lms)) == 0
    samples = _check_complete(out, written)
    # Same keys, same pixels as the uninterrupted run.
    assert {k: png for k, (_, png) in samples.items()} == \
        {k: png for k, (_, png) in reference.items()}
    assert not list(out.glob(".*.tmp")) and not (out / ".prepare-faces.lock").exists()
    assert not (out / "shard-000042.tar").exists()

    # A last rerun has nothing left to do and changes nothing.
    before = (out / "manifest.json").read_text()
    assert prepare_faces_cmd.main(_args(inp, out, lms)) == 0
    assert json.loads((out / "manifest.json").read_text())["shards"] == \
        json.loads(before)["shards"]


def test_zip_tar_and_two_workers_match_the_folder(tmp_path):
    inp = tmp_path / "in"
    lms, written = make_domain_folder(inp, n=6)
    assert prepare_faces_cmd.main(_args(inp, tmp_path / "folder", lms)) == 0
    expected = json.loads((tmp_path / "folder" / "manifest.json").read_text())["sha256"]
    with zipfile.ZipFile(tmp_path / "in.zip", "w") as zf:
        for p in sorted(inp.rglob("*.png")):
            zf.write(p, p.relative_to(inp).as_posix())
    with tarfile.open(tmp_path / "in.tar.gz", "w:gz") as tf:
        for p in sorted(inp.rglob("*.png")):
            tf.add(p, "./" + p.relative_to(inp).as_posix())
    for src, extra in [("in.zip", []), ("in.tar.gz", []), ("in", ["--workers", "2"])]:
        out = tmp_path / f"out_{src}_{len(extra)}"
        assert prepare_faces_cmd.main(_args(tmp_path / src, out, lms, *extra)) == 0
        _check_complete(out, written)
        # Byte-identical shards: same keys, order and pixels whatever the source or workers.
        assert json.loads((out / "manifest.json").read_text())["sha256"] == expected


def test_domains_under_one_shared_top_folder():
    listing = prepare.Listing(files=["set/cats/a.jpg", "set/dogs/b.jpg", "set/dogs/x/c.jpg"])
    domains = prepare.Domains.from_listing(listing)
    assert domains.labels == {"cats": 0, "dogs": 1}
    assert domains.label("set/dogs/x/c.jpg") == (1, "dogs")
    flat = prepare.Domains.from_listing(prepare.Listing(files=["b/1.jpg", "a/2.jpg", "3.jpg"]))
    assert flat.labels == {"a": 0, "b": 1} and flat.label("3.jpg") is None


def test_landmarks_file_gives_exactly_the_aligned_face(tmp_path):
    (tmp_path / "in").mkdir()
    ASTRO.save(tmp_path / "in" / "a.png")
    (tmp_path / "lm.json").write_text(json.dumps({"./a.png": [MARKED.tolist()]}))
    out = tmp_path / "out"
    assert prepare_faces_cmd.main([str(tmp_path / "in"), str(out), "--resolution", "64",
                         "--landmarks", str(tmp_path / "lm.json")]) == 0
    (meta, png), = shard_samples(out).values()
    assert np.array_equal(_png(png), align_face(ASTRO, MARKED, 64))
    assert meta["detector"] == "landmarks" and meta["score"] is None
    assert meta["landmarks"] == MARKED.tolist()


def test_user_errors_name_the_fix(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        prepare_faces_cmd.main([str(tmp_path / "nope"), str(tmp_path / "out")])
    (tmp_path / "in").mkdir()
    ASTRO.save(tmp_path / "in" / "a.png")
    (tmp_path / "bad.json").write_text(json.dumps({"a.png": [[1, 2], [3, 4]]}))
    with pytest.raises(DataError, match="5 \\[x, y\\] points"):
        prepare_faces_cmd.main([str(tmp_path / "in"), str(tmp_path / "out"), "--landmarks",
                      str(tmp_path / "bad.json")])
    (tmp_path / "good.json").write_text(json.dumps({"a.png": MARKED.tolist()}))
    (tmp_path / "foreign").mkdir()
    (tmp_path / "foreign" / "manifest.json").write_text("{}")
    with pytest.raises(DataError, match="not made by prepare-faces"):
        prepare_faces_cmd.main([str(tmp_path / "in"), str(tmp_path / "foreign"), "--landmarks",
                      str(tmp_path / "good.json")])
