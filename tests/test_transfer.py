"""`lightning-gans transfer`: StarGAN v2 reference/latent-guided translation on a tiny model."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from helpers.synth_utils import make_checkpoint, make_stargan_checkpoint
from PIL import Image

from lightning_gans.checkpoint import atomic_save, file_sha256
from lightning_gans.commands.transfer import main
from lightning_gans.errors import CheckpointError, ConfigError, DataError, LGError
from lightning_gans.modules.stargan_v2 import StarGANv2Module
from lightning_gans.synthesis.common import SynthesisError
from lightning_gans.synthesis.images import read_provenance
from lightning_gans.synthesis.transfer import as_stargan, transfer

RES = 32


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory) -> Path:
    return make_stargan_checkpoint(tmp_path_factory.mktemp("ckpt") / "sg2.ckpt", RES)


def _photo(path: Path, seed: int, size=(40, 48)) -> Path:
    rng = np.random.RandomState(seed)
    Image.fromarray(rng.randint(0, 256, (size[1], size[0], 3), dtype=np.uint8)).save(path)
    return path


@pytest.fixture(scope="module")
def faces(tmp_path_factory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("faces")
    (root / "src").mkdir()
    (root / "ref").mkdir()
    for i in range(2):
        _photo(root / "src" / f"s{i}.png", i)
    for i in range(3):
        _photo(root / "ref" / f"r{i}.jpg", 10 + i)
    return root / "src", root / "ref"


def test_api_reference_and_latent_dependence(ckpt, faces):
    src, ref = faces
    net = as_stargan(ckpt)
    out = transfer(net, src, ref, domain=1, latent_seeds=[0, 1])
    assert out["source"].shape == (2, 3, RES, RES)
    assert out["reference_guided"].shape == (3, 2, 3, RES, RES)
    assert out["latent_guided"].shape == (2, 2, 3, RES, RES)
    rg, lg = out["reference_guided"], out["latent_guided"]
    assert not torch.allclose(rg[0], rg[1])          # changes with the reference
    assert not torch.allclose(lg[0], lg[1])          # changes with the latent seed
    assert not torch.allclose(rg[0, 0], rg[0, 1])    # and with the source
    again = transfer(ckpt, src, ref, domain="1", latent_seeds=[0, 1])
    assert torch.equal(again["reference_guided"], rg) and torch.equal(again["latent_guided"], lg)
    other = transfer(net, src, ref, domain=0, latent_seeds=[0])
    assert not torch.allclose(other["latent_guided"][0], lg[0])  # domain matters
    with pytest.raises(ConfigError, match="out of range"):
        transfer(net, src, ref, domain=2)
    with pytest.raises(ConfigError, match="not a domain"):
        transfer(net, src, ref, domain="cat")


def test_cli_writes_pngs_with_provenance_and_grid(ckpt, faces, tmp_path):
    src, ref = faces
    out = tmp_path / "out"
    assert main([str(ckpt), "--source", str(src), "--reference", str(ref), "--domain", "1",
                 "--latent-seeds", "0-1", "--outdir", str(out), "--grid", "--device", "cpu"]) == 0
    pngs = sorted(out.glob("*.png"))
    assert len(pngs) == 3 * 2 + 2 * 2 + 1
    sha = file_sha256(ckpt)
    for p in pngs:
        meta = read_provenance(p)
        assert meta["synthetic"] == "true" and meta["checkpoint_sha256"] == sha
        assert meta["model_kind"] == "stargan_v2" and meta["domain"] == "1"
    assert read_provenance(out / "ref_s0__r1.png")["reference_file"] == "r1.jpg"
    assert read_provenance(out / "latent_s1__seed0001.png")["seed"] == "1"
    with Image.open(out / "grid.png") as g:
        assert g.size == ((1 + 2) * RES, (1 + 3) * RES)  # (1+R) rows x (1+S) cols
    single = tmp_path / "single"
    assert main([str(ckpt), "--source", str(src / "s0.png"), "--reference", str(ref / "r2.jpg"),
                 "--domain", "0", "--outdir", str(single), "--network", "G"]) == 0
    assert [p.name for p in single.glob("*.png")] == ["ref_s0__r2.png"]
    assert read_provenance(single / "ref_s0__r2.png")["network"] == "G"


def test_errors(ckpt, faces, tmp_path):
    src, ref = faces
    sg2 = make_checkpoint(tmp_path / "sg2.ckpt")
    with pytest.raises(CheckpointError, match="holds a .stylegan2. model .*this command takes a stargan_v2 model"):
        main([str(sg2), "--source", str(src), "--reference", str(ref), "--domain", "0",
              "--outdir", str(tmp_path / "o")])
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"not an image at all")
    with pytest.raises(DataError, match="not a readable image"):
        main([str(ckpt), "--source", str(bad), "--reference", str(ref), "--domain", "0",
              "--outdir", str(tmp_path / "o")])
    with pytest.raises(ConfigError, match="out of range"):
        main([str(ckpt), "--source", str(src), "--latent-seeds", "0", "--domain", "5",
              "--outdir", str(tmp_path / "o")])
    with pytest.raises(LGError, match="nothing to do"):
        main([str(ckpt), "--source", str(src), "--domain", "0", "--outdir", str(tmp_path / "o")])
    # w_hpf > 0 models need FAN masks
    m = StarGANv2Module(resolution=RES, base_dim=16, max_conv_dim=32, num_domains=2, w_hpf=1,
                        latent_dim=16, style_dim=16)
    hpf = atomic_save({"state_dict": m.state_dict(), "hyper_parameters": dict(m.hparams),
                       "model_config": m.model_config()}, tmp_path / "hpf.ckpt")
    with pytest.raises(CheckpointError, match="FAN"):
        as_stargan(hpf)
    for err in (CheckpointError, DataError, SynthesisError):
        assert issubclass(err, LGError)
