"""model_file.describe: one read per file and command, the described kind/config/networks of ours and
of an official file, networks equal to a directly built and loaded one, the allocation guard."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers.parity_utils import parity_dir
from helpers.synth_utils import make_checkpoint, make_stargan_checkpoint
from PIL import Image

from lightning_gans import checkpoint, model_file
from lightning_gans.checkpoint import atomic_save, file_sha256, safe_load
from lightning_gans.cli import main as cli_main
from lightning_gans.errors import CheckpointError, ConfigError
from lightning_gans.model_file import describe
from lightning_gans.synthesis.common import run_synthesis, seeds_to_ws

pytestmark = pytest.mark.usefixtures("one_thread")
PARITY = parity_dir()


@pytest.fixture(autouse=True)
def _fresh_cache(monkeypatch):
    monkeypatch.setattr(model_file, "_last", None)


@pytest.fixture
def reads(monkeypatch):
    """The paths every weights-only load (the package's one torch.load) reads, in order."""
    seen: list[str] = []
    real = checkpoint._weights_only_load

    def counting(src, *args, **kwargs):
        seen.append(str(src))
        return real(src, *args, **kwargs)

    monkeypatch.setattr(checkpoint, "_weights_only_load", counting)
    return seen


@pytest.fixture(scope="module")
def v2(tmp_path_factory) -> Path:
    return make_checkpoint(tmp_path_factory.mktemp("v2") / "tiny.ckpt")


@pytest.fixture(scope="module")
def v1(tmp_path_factory) -> Path:
    from lightning_gans.modules.stylegan import StyleGANModule

    torch.manual_seed(3)
    m = StyleGANModule(resolution=32, z_dim=32, w_dim=32, mapping_layers=2, fmap_base=64, fmap_max=16,
                       start_resolution=8, name="v1")
    m.resolution.fill_(32)
    with torch.no_grad():
        m.G_ema.mapping.w_avg.normal_()
    return atomic_save({"state_dict": m.state_dict(), "hyper_parameters": dict(m.hparams),
                        "model_config": m.model_config()}, tmp_path_factory.mktemp("v1") / "v1.ckpt")


@pytest.fixture(scope="module")
def sg(tmp_path_factory) -> Path:
    return make_stargan_checkpoint(tmp_path_factory.mktemp("sg") / "sg.ckpt", 32)


def images(G, seeds=(0, 1)) -> torch.Tensor:
    return run_synthesis(G, seeds_to_ws(G, list(seeds), 0.7), "const", 4)


@pytest.mark.parametrize("network", ["G_ema", "G"])
def test_ours_v2_is_described_and_its_generator_is_the_files(v2, network):
    ckpt = safe_load(v2)
    mf = describe(v2)
    assert (mf.kind, mf.fmt, mf.sha256) == ("stylegan2", "lightning-gans", file_sha256(v2))
    assert mf.config == ckpt["model_config"] and mf.networks() == ["G", "D", "G_ema"]
    assert mf.architecture() == {"resolution": 32, "z_dim": 128, "w_dim": 128, "c_dim": 0, "mapping_layers": 2,
                                 "channel_base": 1024, "channel_max": 32, "conv_clamp": 256,
                                 "mbstd_num_channels": 1}
    from lightning_gans.models.stylegan2 import Generator

    direct = Generator(**ckpt["model_config"]["G_kwargs"])
    direct.load_state_dict(mf.state(network))
    gen = mf.generator(network)
    assert gen.network == network and gen.provenance()["checkpoint_sha256"] == file_sha256(v2)
    assert not any(p.requires_grad for p in gen.G.parameters()) and not gen.G.training
    torch.testing.assert_close(images(gen.G), images(direct.eval()), rtol=0, atol=0)
    other = describe(v2).generator("G" if network == "G_ema" else "G_ema")
    assert not torch.equal(images(gen.G), images(other.G))  # G and G_ema differ (w_avg, noise)


def test_ours_v1_is_described_with_its_start_resolution(v1):
    ckpt = safe_load(v1)
    mf = describe(v1, ("stylegan2", "stylegan"))
    assert (mf.kind, mf.networks()) == ("stylegan", ["G", "D", "G_ema"])
    arch = mf.architecture()
    assert arch["start_resolution"] == arch["resolution"] == 32 and arch["fmap_max"] == 16
    from lightning_gans.models.stylegan import TRUNCATION_CUTOFF, Generator

    direct = Generator(**ckpt["model_config"]["G_kwargs"]).eval()
    direct.load_state_dict(mf.state("G_ema"))
    direct.mapping.default_truncation_cutoff = TRUNCATION_CUTOFF
    G = mf.generator().G
    torch.testing.assert_close(images(G), images(direct), rtol=0, atol=0)


def test_a_v1_grown_part_way_is_refused_unless_allowed(v1, tmp_path):
    ckpt = safe_load(v1)
    ckpt["state_dict"]["resolution"].fill_(16)
    part = atomic_save(ckpt, tmp_path / "part.ckpt")
    with pytest.raises(CheckpointError, match="grown to 16 of 32 px"):
        describe(part).generator()
    assert describe(part).generator(allow_partial=True).G.img_resolution == 32


def test_stargan_nets_are_the_files(sg):
    from lightning_gans.models.stargan_v2 import build_networks

    mf = describe(sg, ("stargan_v2",))
    assert (mf.kind, mf.fmt) == ("stargan_v2", "lightning-gans")
    assert set(mf.networks()) == {"G", "F", "E", "D", "G_ema", "F_ema", "E_ema"}
    assert mf.architecture()["num_domains"] == 2
    nets = build_networks(**mf.config["net_kwargs"], he_init=False)
    x, z, y = torch.rand(2, 3, 32, 32) * 2 - 1, torch.randn(2, 16), torch.tensor([0, 1])
    for network, suffix in (("G_ema", "_ema"), ("G", ""), ("ema", "_ema"), ("trained", "")):
        net = mf.stargan(network)
        assert net.network == {"ema": "G_ema", "trained": "G"}.get(network, network)
        for attr, key in (("G", "generator"), ("F", "mapping_network"), ("E", "style_encoder")):
            nets[key].load_state_dict(mf.state(attr + suffix))
        with torch.no_grad():
            s = nets["mapping_network"].eval()(z, y)
            torch.testing.assert_close(net.F(z, y), s, rtol=0, atol=0)
            torch.testing.assert_close(net.E(x, y), nets["style_encoder"].eval()(x, y), rtol=0, atol=0)
            torch.testing.assert_close(net.G(x, s), nets["generator"].eval()(x, s), rtol=0, atol=0)
    with pytest.raises(ConfigError, match="out of range: this model has 2 domains"):
        net.domain_index(2)


@pytest.mark.skipif(PARITY is None, reason="../shared/parity (official outputs) not present; set LG_PARITY_DIR")
def test_an_official_stylegan2_ada_state_dict_is_described_and_renders_the_official_images():
    src = PARITY / "sg2ada"
    with np.load(src / "G_ema.npz") as g:
        const = g["synthesis.b4.const"].shape
    kw = json.loads((src / "kwargs.json").read_text())["G"]["init_kwargs"]
    mf = describe(src, ("stylegan2", "stylegan"), what="--from")
    assert (mf.kind, mf.fmt) == ("stylegan2", "sg2ada-state-dict")
    assert mf.networks() == ["G", "D", "G_ema"]
    G_kwargs = mf.config["G_kwargs"]
    assert (G_kwargs["img_resolution"], G_kwargs["z_dim"], G_kwargs["w_dim"]) == (
        kw["img_resolution"], kw["z_dim"], kw["w_dim"])
    assert tuple(mf.state("G_ema")["synthesis.b4.const"].shape) == const
    assert mf.architecture()["resolution"] == kw["img_resolution"]
    ref = np.load(src / "ref.npz")
    G = mf.generator().G
    with torch.no_grad():
        img = G.synthesis(G.mapping(torch.from_numpy(ref["z"]), None, truncation_psi=0.7), noise_mode="const")
    np.testing.assert_allclose(img.numpy(), ref["img_psi07"], rtol=0, atol=1e-4)
    again = describe(src).generator().G  # built from the converted state dict this time
    torch.testing.assert_close(again.mapping.w_avg, G.mapping.w_avg, rtol=0, atol=0)


def test_kind_and_resolution_refusals_name_the_flag(v2, sg, tmp_path):
    with pytest.raises(CheckpointError, match=r"^--from .*sg.ckpt holds a 'stargan_v2' model \(lightning-gans\); "
                                              r"--from takes a stylegan2 or stylegan model$"):
        describe(sg, ("stylegan2", "stylegan"), what="--from")
    with pytest.raises(CheckpointError, match=r"^init_from=.*tiny.ckpt is a stylegan2 model at 32 px .*asked for "
                                              r"resolution 64$"):
        describe(v2, kind="stylegan2", resolution=64, what="init_from=")
    with pytest.raises(CheckpointError, match="this command needs a stargan_v2 checkpoint"):
        describe(v2).stargan()
    foreign = tmp_path / "x.ckpt"
    torch.save({"weights": torch.zeros(3)}, foreign)
    with pytest.raises(CheckpointError, match=r"x.ckpt has no model_config and is no official format"):
        describe(foreign)
    with pytest.raises(CheckpointError, match="does not exist"):
        describe(tmp_path / "missing.ckpt", what="ckpt=")


def test_described_once_until_the_file_changes(v2, reads, tmp_path):
    path = tmp_path / "c.ckpt"
    path.write_bytes(v2.read_bytes())
    a = describe(path)
    b = describe(path, ("stylegan2",), kind="stylegan2", resolution=32, what="init_from=")
    assert a is b and reads == [str(path)]
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    c = describe(path)
    assert c is not a and len(reads) == 2
    describe(v2)  # one entry only: another file replaces it
    assert describe(path) is not c and len(reads) == 4


def test_every_synthesis_command_reads_its_checkpoint_once(v2, sg, reads, tmp_path):
    face = tmp_path / "face.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (40, 40, 3), dtype=np.uint8)).save(face)
    out = tmp_path / "out"
    commands = [
        (v2, ["generate", str(v2), "--seeds", "0,1", "--outdir", str(out)]),
        (v2, ["style-mix", str(v2), "--rows", "0", "--cols", "1", "--outdir", str(out)]),
        (v2, ["interpolate", str(v2), "--seeds", "0,1", "--frames", "2", "--format", "gif", "--no-frames",
              "--outdir", str(out / "walk")]),
        (sg, ["interpolate", str(sg), "--source", str(face), "--seeds", "0,1", "--domain", "1", "--frames", "2",
              "--format", "gif", "--no-frames", "--outdir", str(out / "walk2")]),
        (sg, ["transfer", str(sg), "--source", str(face), "--latent-seeds", "0", "--domain", "1",
              "--outdir", str(out / "tr")]),
    ]
    for path, argv in commands:
        model_file._last = None  # a fresh process
        reads.clear()
        assert cli_main(argv) == 0, argv
        assert reads == [str(path)], (argv[0], reads)


def test_a_huge_hand_edited_width_fails_in_one_line_before_allocating(v2, tmp_path, capsys):
    ckpt = safe_load(v2)
    ckpt["model_config"]["G_kwargs"].update(channel_base=10**6, channel_max=10**6)  # ~10^12 conv weights
    bad = atomic_save(ckpt, tmp_path / "wide.ckpt")
    t0 = time.monotonic()
    assert cli_main(["generate", str(bad), "--seeds", "0", "--outdir", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert time.monotonic() - t0 < 5
    assert len(err) == 1 and err[0].startswith(f"error: checkpoint {bad}: its model_config G_kwargs asks for more "
                                               "than "), err
    assert "MiB of tensors but the file holds 0.6 MiB; damaged or hand-edited" in err[0]


def test_a_mismatched_config_gives_the_shape_line(v2, sg, tmp_path):
    ckpt = safe_load(v2)
    ckpt["model_config"]["G_kwargs"]["channel_max"] = 16
    bad = atomic_save(ckpt, tmp_path / "narrow.ckpt")
    with pytest.raises(CheckpointError, match=r"its model_config G_kwargs does not match its weights \(\d+ "
                                              r"tensors of another shape, 0 missing, 0 unexpected; e\.g\. synthesis"
                                              r"\.b4\.const: \(32, 4, 4\) in the file, \(16, 4, 4\) from the config\)"):
        describe(bad).generator()
    ckpt = safe_load(sg)
    ckpt["model_config"]["net_kwargs"]["style_dim"] = 8
    bad = atomic_save(ckpt, tmp_path / "sg_bad.ckpt")
    with pytest.raises(CheckpointError, match="its model_config net_kwargs does not match its weights"):
        describe(bad).stargan()
    ckpt["model_config"]["net_kwargs"]["colour"] = 1
    bad = atomic_save(ckpt, tmp_path / "sg_bad2.ckpt")
    with pytest.raises(CheckpointError, match="net_kwargs does not build a network .*colour"):
        describe(bad).stargan()


def test_forget_drops_the_remembered_file(v2, reads):
    """init_from= ends with forget(): a training process does not keep the checkpoint's tensors."""
    describe(v2)
    describe(v2)
    assert len(reads) == 1 and model_file._last is not None
    model_file.forget()
    assert model_file._last is None
    describe(v2)
    assert len(reads) == 2


def test_an_edited_kwargs_json_beside_a_state_dict_is_read_again(v2, tmp_path):
    """A bare official state dict takes num_fp16_res from NAME.kwargs.json: editing that file
    (not the .pt) must not give the remembered description back."""
    out = tmp_path / "official.pt"
    assert cli_main(["convert", str(v2), str(out), "--to", "official-state-dict"]) == 0
    side = tmp_path / "official.kwargs.json"
    first = describe(out).config["G_kwargs"]["num_fp16_res"]
    rec = json.loads(side.read_text())
    for kw in (rec["G"]["init_kwargs"]["synthesis_kwargs"], rec["G_ema"]["init_kwargs"]["synthesis_kwargs"],
               rec["D"]["init_kwargs"]):
        kw["num_fp16_res"] = first + 1
    side.write_text(json.dumps(rec))
    assert describe(out).config["G_kwargs"]["num_fp16_res"] == first + 1
