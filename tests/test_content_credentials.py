"""Signed C2PA manifests on generated images, tamper detection, watermark records and the escaped
`provenance` report (content_credentials.py, images.save_png, commands/provenance.py). Offline throughout."""

import hashlib
import json
import struct
import zlib

import c2pa
import numpy as np
import pytest
from helpers.synth_utils import make_checkpoint
from PIL import Image, PngImagePlugin
from skimage import data

from lightning_gans.commands.generate import main as generate_main
from lightning_gans.commands.provenance import main as provenance_main
from lightning_gans.errors import ConfigError
from lightning_gans.synthesis import content_credentials as cc
from lightning_gans.synthesis.images import provenance, save_png

pytestmark = pytest.mark.usefixtures("one_thread")
SHA = "c0ffee12" * 8


@pytest.fixture(autouse=True)
def _cache(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("LG_CACHE_DIR", str(tmp_path_factory.getbasetemp() / "lgcache"))
    monkeypatch.delenv("LG_SIGN_KEY", raising=False)
    monkeypatch.delenv("LG_SIGN_CERT", raising=False)
    cc.configure()
    yield
    cc.configure()


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    return make_checkpoint(tmp_path_factory.mktemp("ckpt") / "tiny.ckpt")


def photo256():
    return np.asarray(Image.fromarray(data.astronaut()).resize((256, 256), Image.LANCZOS))


def replace_idat(path, pixels):
    """Swap a PNG's pixel data for `pixels` (same size, 8-bit RGB) keeping every other chunk (the manifest)."""
    raw = path.read_bytes()
    pos, chunks = 8, []
    while pos < len(raw):
        n, kind = struct.unpack(">I4s", raw[pos : pos + 8])
        chunks.append((kind, raw[pos + 8 : pos + 8 + n]))
        pos += 12 + n
    scan = b"".join(b"\x00" + row.tobytes() for row in pixels.astype(np.uint8))
    idat = zlib.compress(scan)
    out, done = [raw[:8]], False
    for kind, body in chunks:
        if kind == b"IDAT":
            if done:
                continue
            kind, body, done = b"IDAT", idat, True
        out.append(struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body)))
    path.write_bytes(b"".join(out))


def test_generated_png_validates_and_names_the_model(ckpt, tmp_path, capsys):
    assert generate_main([str(ckpt), "--seeds", "7", "--outdir", str(tmp_path)]) == 0
    png = tmp_path / "seed0007.png"
    sha = hashlib.sha256(ckpt.read_bytes()).hexdigest()
    with open(png, "rb") as f, c2pa.Reader("image/png", f) as reader:
        store = json.loads(reader.json())
        assert reader.get_validation_state() == "Valid"
    active = store["manifests"][store["active_manifest"]]
    labels = {a["label"]: a["data"] for a in active["assertions"]}
    ours = labels[cc.ASSERTION]
    assert ours["checkpoint_sha256"] == sha and ours["seed"] == "7" and ours["model_kind"] == "stylegan2"
    assert ours["watermark"].startswith("none (output below 256 px")  # the tiny model makes 32 px images
    created = labels["c2pa.actions.v2"]["actions"][0] if "c2pa.actions.v2" in labels else labels["c2pa.actions"][
        "actions"][0]
    assert created["digitalSourceType"] == cc.SOURCE_TYPE
    assert created["parameters"]["checkpoint_sha256"] == sha
    # the PNG text chunks stay as before
    assert Image.open(png).text["checkpoint_sha256"] == sha
    capsys.readouterr()
    assert provenance_main([str(png), "--json"]) == 0
    r = json.loads(capsys.readouterr().out)
    assert r["file"] == str(png) and r["c2pa"]["present"] and r["c2pa"]["valid"]
    assert "TEST" in r["c2pa"]["signer"] and r["watermark"]["found"] is False and not r["warnings"]


def test_tampered_pixels_do_not_match(tmp_path, capsys):
    png = save_png(photo256(), tmp_path / "a.png", provenance(checkpoint_sha256=SHA, seed=1))
    assert cc.read(png)["valid"]
    px = np.asarray(Image.open(png).convert("RGB")).copy()
    px[100:110, 100:110] = 255 - px[100:110, 100:110]
    replace_idat(png, px)
    assert np.array_equal(np.asarray(Image.open(png).convert("RGB")), px)
    r = cc.read(png)
    assert r["present"] and not r["valid"]
    assert any("mismatch" in e for e in r["errors"]), r["errors"]
    provenance_main([str(png)])
    out = capsys.readouterr().out
    assert "INVALID" in out and "does not match this file" in out


def test_watermark_recorded_and_turned_off(tmp_path, capsys):
    png = save_png(photo256(), tmp_path / "m.png", provenance(checkpoint_sha256=SHA))
    assert Image.open(png).text["watermark"] == "embedded synthetic:c0ffee12"
    assert cc.read(png)["assertion"]["watermark"] == "embedded synthetic:c0ffee12"
    provenance_main([str(png), "--json"])
    assert json.loads(capsys.readouterr().out)["watermark"]["payload"] == "synthetic:c0ffee12"
    cc.configure(watermark=False)
    off = save_png(photo256(), tmp_path / "off.png", provenance(checkpoint_sha256=SHA))
    assert cc.read(off)["assertion"]["watermark"] == "none (turned off with --no-watermark)"
    assert np.array_equal(np.asarray(Image.open(off).convert("RGB")), photo256())


def test_user_key_and_cert(tmp_path, monkeypatch):
    monkeypatch.setenv("LG_CACHE_DIR", str(tmp_path / "other"))
    key, chain = cc.test_credentials()  # a CA-issued leaf, used here as if it were the user's own
    (tmp_path / "k.pem").write_bytes(key)
    (tmp_path / "c.pem").write_bytes(chain)
    cc.configure(tmp_path / "k.pem", tmp_path / "c.pem")
    png = save_png(photo256()[:64, :64], tmp_path / "u.png", provenance(checkpoint_sha256=SHA))
    r = cc.read(png)
    assert r["valid"] and r["assertion"]["signing_certificate"] == "user-supplied"
    with pytest.raises(ConfigError, match="go together"):
        cc.configure(tmp_path / "k.pem", None)
    with pytest.raises(ConfigError, match="not a file"):
        cc.configure(tmp_path / "nope.pem", tmp_path / "c.pem")


def test_report_escapes_and_flags_edited_synthetic(tmp_path, capsys):
    png = save_png(photo256(), tmp_path / "w.png", provenance(checkpoint_sha256=SHA))
    info = PngImagePlugin.PngInfo()  # re-save with edited text chunks: drops the manifest, keeps the mark
    for k, v in Image.open(png).text.items():
        info.add_text(k, v)
    info.add_text("synthetic", "false")
    info.add_text("note", "\x1b[2J\x1b[31mtrust me\x07")
    edited = tmp_path / "edited.png"
    Image.open(png).save(edited, pnginfo=info)
    assert Image.open(edited).text["synthetic"] == "false"
    provenance_main([str(edited)])
    out = capsys.readouterr().out
    assert "\x1b" not in out and "\x07" not in out and "\\x1b[2J" in out
    assert "a claim anyone can edit" in out and "the metadata was edited" in out
    provenance_main([str(edited), "--json"])
    line = capsys.readouterr().out
    assert "\x1b" not in line and json.loads(line)["warnings"]
