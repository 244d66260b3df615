"""Fine-tuning: init_from (ours or official), fresh optimizers, the one-command `finetune`."""

import numpy as np
import pytest
import torch
from helpers.parity_utils import parity_dir
from helpers.train_utils import read_metrics, series
from PIL import Image

from lightning_gans.checkpoint import safe_load
from lightning_gans.cli import main
from lightning_gans.errors import CheckpointError
from lightning_gans.models.latents import seeds_to_z
from lightning_gans.modules.init_from import load_initial_weights
from lightning_gans.modules.stylegan2 import StyleGAN2Module

needs_parity = pytest.mark.skipif(parity_dir() is None, reason="../shared/parity (official outputs) not present")
SG2ADA_ARCH = dict(resolution=32, z_dim=512, w_dim=512, mapping_layers=8, channel_base=1024, channel_max=32)


@pytest.fixture(scope="module")
def converted(tmp_path_factory):
    """The official StyleGAN2-ADA fixture network, converted to our checkpoint format."""
    if parity_dir() is None:
        pytest.skip("../shared/parity not present")
    out = tmp_path_factory.mktemp("conv") / "sg2ada.ckpt"
    assert main(["convert", str(parity_dir() / "sg2ada"), str(out)]) == 0
    return out


@needs_parity
def test_init_from_copies_networks_not_run_state(converted):
    model = StyleGAN2Module(**SG2ADA_ARCH)
    left = load_initial_weights(model, converted)
    src = safe_load(converted)["state_dict"]
    for k in ("G.mapping.fc0.weight", "G_ema.synthesis.b32.torgb.weight", "D.b4.out.weight"):
        assert torch.equal(model.state_dict()[k], src[k])
    assert int(model.nimg) == 0 and set(left) >= {"nimg", "pl_mean"}


@needs_parity
def test_init_from_mismatch_is_one_line_error(converted):
    with pytest.raises(CheckpointError, match="shape") as e:
        load_initial_weights(StyleGAN2Module(**{**SG2ADA_ARCH, "channel_max": 16}), converted)
    assert "\n" not in str(e.value)
    with pytest.raises(CheckpointError):
        load_initial_weights(StyleGAN2Module(**{**SG2ADA_ARCH, "resolution": 64}), converted)


@needs_parity
def test_finetune_command_on_a_small_face_set(converted, tmp_path):
    rng = np.random.default_rng(0)
    photos = tmp_path / "faces"
    photos.mkdir()
    from skimage import data

    face = data.astronaut()[20:240, 120:340]
    for i in range(12):  # small aligned-face set: shifted, flipped crops of one portrait
        y, x = rng.integers(0, 20, size=2)
        crop = face[y : y + 200, x : x + 200]
        Image.fromarray(crop[:, ::-1] if i % 2 else crop).save(photos / f"{i}.png")
    out = tmp_path / "ft"
    rc = main(["finetune", f"photos={photos}", f"from={converted}", f"out={out}", "aligned=true",
               "kimg=0.032", "batch=4", "logger=csv", "trainer.log_every_n_steps=1",
               "trainer.enable_progress_bar=false", "data.num_workers=0", "callbacks.samples.every_n_steps=4"])
    assert rc == 0
    rows = read_metrics(out / "run")
    assert len(series(rows, "loss/G_main")) == 8
    assert all(np.isfinite(v) for v in series(rows, "loss/D_main").values())
    assert "ada/p" in rows[-1]
    start, end = safe_load(converted)["state_dict"], safe_load(out / "run" / "checkpoints" / "last.ckpt")
    assert end["global_step"] == 8 and end["hyper_parameters"]["freeze_d"] == 7
    model0, model1 = StyleGAN2Module(**SG2ADA_ARCH), StyleGAN2Module(**end["hyper_parameters"])
    model0.load_state_dict(start, strict=False)
    model1.load_state_dict(end["state_dict"])
    z = seeds_to_z([0, 1], 512)
    with torch.no_grad():
        a = model0.G_ema(z, noise_mode="const")
        b = model1.G_ema(z, noise_mode="const")
        g = model1.G(z, noise_mode="const")
    # G_ema (half-life 10 kimg) has barely moved after 32 images; G itself has moved more.
    assert 0 < (a - b).abs().mean() < 0.05
    assert (a - g).abs().mean() > (a - b).abs().mean()


# ---------------------------------------------------------------------------- the command


def test_help_lists_every_conf_key_with_its_default_and_an_example(capsys):
    from omegaconf import OmegaConf

    from lightning_gans.commands import finetune as command
    from lightning_gans.commands._hydra import COMMANDS_FOLDER

    conf = OmegaConf.to_container(OmegaConf.load(COMMANDS_FOLDER / "finetune.yaml"))
    assert conf == {"photos": None, "from": None, "out": "finetune", "kimg": 200, "batch": 8, "aligned": False}
    assert list(conf) == list(command.HELP) == list(command.TYPES)
    assert main(["finetune", "--help"]) == 0
    out = capsys.readouterr().out
    for key, default in conf.items():
        shown = "null" if default is None else str(default).lower()
        row = next(line for line in out.splitlines() if line.startswith(f"  {key}={shown} "))
        assert command.HELP[key] in row
    assert "\nexample:\n  lightning-gans finetune photos=" in out


def test_bad_arguments_are_one_line(tmp_path, capsys, monkeypatch):
    from helpers.synth_utils import make_checkpoint

    monkeypatch.chdir(tmp_path)  # out= defaults to ./finetune

    ckpt = make_checkpoint(tmp_path / "tiny.ckpt")
    photos = tmp_path / "photos"
    photos.mkdir()
    cases = [
        (["--photos", str(photos), f"from={ckpt}"], ["--photos", "photos=..."]),
        ([f"photos={photos}"], ["from=CKPT is required"]),
        ([f"from={ckpt}"], ["photos=DIR is required"]),
        ([f"photos={photos}", f"from={ckpt}", "kimg=lots"], ["kimg='lots' is not a number"]),
        ([f"photos={photos}", f"from={ckpt}", "aligned=yes"], ["aligned='yes' is not true or false"]),
        ([f"photos={photos}", f"from={ckpt}", "batch=0"], ["batch=0 is not valid"]),
        ([f"photos={photos}", f"from={tmp_path / 'none.ckpt'}"], ["from=", "does not exist"]),
        # not finetune's key: a train override, checked before any face is prepared
        ([f"photos={photos}", f"from={ckpt}", "nope=1"], ["'nope'", "finetune's own keys: photos, from"]),
        ([f"photos={photos}", f"from={ckpt}", "model.nope=1"], ["nope"]),
    ]
    for argv, words in cases:
        assert main(["finetune", *argv]) == 2, argv
        err = capsys.readouterr().err
        assert err.startswith("error: ") and all(w in err for w in words), (argv, err)
        assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert not (tmp_path / "finetune").exists() and list(photos.iterdir()) == []


def test_finetune_one_step_reads_the_checkpoint_once(tmp_path, monkeypatch, capsys):
    """from= is described once for the plan; the run's init_from= gets the same ModelFile."""
    from helpers.synth_utils import TINY, make_checkpoint

    import lightning_gans.checkpoint as checkpoint_mod

    ckpt = make_checkpoint(tmp_path / "tiny.ckpt")
    photos = tmp_path / "faces"
    photos.mkdir()
    rng = np.random.default_rng(0)
    for i in range(4):
        Image.fromarray(rng.integers(0, 256, (40, 40, 3), np.uint8)).save(photos / f"{i}.png")
    calls = []
    real_load = checkpoint_mod._weights_only_load
    monkeypatch.setattr(checkpoint_mod, "_weights_only_load",
                        lambda src, *a, **kw: calls.append(str(src)) or real_load(src, *a, **kw))
    out = tmp_path / "ft"
    rc = main(["finetune", f"photos={photos}", f"from={ckpt}", f"out={out}", "aligned=true", "kimg=0.002",
               "batch=2", "logger=csv", "trainer.enable_progress_bar=false", "data.num_workers=0",
               "callbacks.samples.every_n_steps=0", "trainer.log_every_n_steps=1"])
    assert rc == 0
    assert calls.count(str(ckpt)) == 1, calls
    stdout = capsys.readouterr().out
    assert "sharded 4 aligned faces" in stdout and f"init_from={ckpt}" in stdout
    end = safe_load(out / "run" / "checkpoints" / "last.ckpt")
    assert end["global_step"] == 1
    hp = end["hyper_parameters"]
    assert {k: hp[k] for k in ("resolution", "z_dim", "channel_base", "channel_max", "batch_size")} == \
        {"resolution": TINY["resolution"], "z_dim": TINY["z_dim"], "channel_base": TINY["channel_base"],
         "channel_max": TINY["channel_max"], "batch_size": 2}
    assert hp["freeze_d"] == 7 and hp["ada_kimg"] == 100  # conf/experiment/finetune.yaml + resume settings


@needs_parity
def test_an_official_file_is_read_once_for_the_plan_and_init_from(tmp_path, monkeypatch):
    """An official StyleGAN2-ADA state-dict folder (G/D/G_ema.npz): each npz is read once for
    finetune's plan and the run's init_from= together (the official reader is not torch.load)."""
    from lightning_gans.finetune import plan
    from lightning_gans.interop import convert

    folder = parity_dir() / "sg2ada"
    reads = []
    real_npz = convert._npz
    monkeypatch.setattr(convert, "_npz", lambda p: reads.append(p.name) or real_npz(p))
    p = plan(folder, tmp_path / "ft", kimg=0.1, batch=4)
    assert p.kind == "stylegan2" and p.resolution == 32
    assert {f"model.{k}={v}" for k, v in SG2ADA_ARCH.items()} <= set(p.overrides)
    assert f"init_from={folder.resolve()}" in p.overrides and "trainer.max_steps=25" in p.overrides
    model = StyleGAN2Module(**SG2ADA_ARCH)
    load_initial_weights(model, folder.resolve())
    assert sorted(reads) == ["D.npz", "G.npz", "G_ema.npz"]
    G_ema = {k[6:]: v for k, v in model.state_dict().items() if k.startswith("G_ema.")}
    assert torch.equal(G_ema["synthesis.b4.const"], real_npz(folder / "G_ema.npz")["synthesis.b4.const"])
