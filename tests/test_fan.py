"""The face-landmark network (FAN) behind StarGAN v2's high-pass skips: architecture, the
official wing.ckpt layout, the mask recipe, and its use in training, `transfer` and `interpolate`.

The published weights are not available offline: a FAN with random weights stands in for them,
its head's biases calibrated so that each heatmap keeps only its strongest 1% (as real,
peaked landmark heatmaps do; uncalibrated random heatmaps saturate the masks at 1).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from helpers.synth_utils import make_stargan_checkpoint
from helpers.train_utils import read_metrics, train
from PIL import Image

from lightning_gans.checkpoint import file_sha256, safe_load
from lightning_gans.cli import main as cli_main
from lightning_gans.data.demo import _astronaut, drawn_face, photo_crop
from lightning_gans.errors import CheckpointError, ConfigError, LGError
from lightning_gans.interop.stargan_v2 import load_fan, save_fan
from lightning_gans.models.fan import FAN, landmark_masks
from lightning_gans.modules.stargan_v2 import StarGANv2Module
from lightning_gans.pretrained.weights import FAN_ENV, MissingFANWeightsError
from lightning_gans.synthesis.images import read_provenance
from lightning_gans.synthesis.style_interp import interpolate_styles
from lightning_gans.synthesis.transfer import as_stargan, transfer

pytestmark = pytest.mark.usefixtures("one_thread")

# Parameters of the official core/wing.py FAN (num_modules=1, 98 landmarks): counted by building
# that class (clovaai/stargan-v2 @875b70a, its unused cv2/munch/skimage imports stubbed) and
# summing p.numel() over .parameters(); its state dict has the same 336 keys and shapes as ours.
OFFICIAL_FAN_PARAMS = 6_333_603
TINY = dict(width=8, depth=4)  # a cheap FAN of the same layout for the runs below
RES = 32


def _tensor(img: Image.Image) -> torch.Tensor:
    return torch.from_numpy(np.asarray(img, dtype=np.float32)).permute(2, 0, 1) / 127.5 - 1


def faces(size: int = 64, n: int = 3, seed: int = 0) -> torch.Tensor:
    """Demo faces [n, 3, size, size] in [-1, 1]: drawn faces and an astronaut photo crop."""
    rng = np.random.default_rng(seed)
    out = [_tensor(drawn_face(size, rng)) for _ in range(n - 1)]
    return torch.stack(out + [_tensor(photo_crop(_astronaut(size), size, rng))])


def calibrated_fan(width: int, depth: int, seed: int = 0) -> FAN:
    """Random FAN (random BN statistics too) whose heatmaps are peaked on the demo faces."""
    torch.manual_seed(seed)
    fan = FAN(width=width, depth=depth)
    with torch.no_grad():
        for m in fan.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.normal_(0, 0.1)
                m.running_var.uniform_(0.5, 1.5)
                m.weight.uniform_(0.5, 1.5)
                m.bias.normal_(0, 0.1)
        raw = fan(F.interpolate(faces(), size=256, mode="bilinear") * 0.5 + 0.5)
        top = torch.quantile(raw.transpose(0, 1).flatten(1), 0.99, dim=1)
        fan.l0.bias -= top - 0.1
    return fan


@pytest.fixture(scope="module")
def wing(tmp_path_factory) -> Path:
    """A tiny FAN saved exactly like the official wing.ckpt: {'state_dict': ...}, official keys."""
    path = tmp_path_factory.mktemp("fan") / "wing.ckpt"
    torch.save({"state_dict": calibrated_fan(**TINY).state_dict()}, path)
    return path


@pytest.fixture(autouse=True)
def no_fan_env(monkeypatch):
    monkeypatch.delenv(FAN_ENV, raising=False)


# ---- network and weights -------------------------------------------------------------------------

def test_published_architecture_parameter_count_and_keys():
    fan = FAN()
    assert sum(p.numel() for p in fan.parameters()) == OFFICIAL_FAN_PARAMS
    sd = fan.state_dict()
    assert len(sd) == 336
    # a few official key names and shapes (core/wing.py)
    assert sd["conv1.conv.weight"].shape == (64, 6, 7, 7)           # RGB + row, col, radius
    assert sd["m0.coordconv.conv.weight"].shape == (256, 259, 1, 1)  # no boundary channels
    assert sd["conv2.downsample.2.weight"].shape == (128, 64, 1, 1)
    assert sd["m0.b2_plus_1.conv3.weight"].shape == (64, 64, 3, 3)
    assert sd["l0.weight"].shape == (99, 256, 1, 1)                  # 98 landmarks + boundary
    assert not any(p.requires_grad for p in fan.parameters()) and not fan.training
    assert not fan.train().training  # frozen in eval mode


def test_official_layout_round_trips(tmp_path):
    fan = calibrated_fan(**TINY, seed=3)
    sd = fan.state_dict()
    x = faces()
    # the published file: {'state_dict': ...}; per the Jittor port's report (281 of 287 tensors
    # matched) it lacks BatchNorm's num_batches_tracked and holds a few extra tensors.
    official = {k: v for k, v in sd.items() if not k.endswith("num_batches_tracked")}
    official["unused.extra"] = torch.zeros(3)
    torch.save({"state_dict": official}, tmp_path / "wing.ckpt")
    back = load_fan(tmp_path / "wing.ckpt")
    assert back.config() == {"width": 8, "depth": 4, "num_landmarks": 98}
    for k, v in back.state_dict().items():
        if not k.endswith("num_batches_tracked"):
            assert torch.equal(v, sd[k]), k
    torch.testing.assert_close(back.masks(x), fan.masks(x), rtol=0, atol=0)
    # our own format, an official {step}_nets_ema.ckpt 'fan' entry, a DataParallel prefix
    save_fan(fan, tmp_path / "ours.pt")
    torch.save({"generator": {}, "mapping_network": {}, "style_encoder": {}, "fan": sd}, tmp_path / "nets.ckpt")
    torch.save({"state_dict": {f"module.{k}": v for k, v in sd.items()}}, tmp_path / "dp.ckpt")
    for name in ("ours.pt", "nets.ckpt", "dp.ckpt"):
        torch.testing.assert_close(load_fan(tmp_path / name).masks(x), fan.masks(x), rtol=0, atol=0)


def test_bad_weight_files_are_named(tmp_path):
    sd = calibrated_fan(**TINY).state_dict()
    del sd["m0.b3_2.conv1.weight"]
    torch.save({"state_dict": sd}, tmp_path / "partial.ckpt")
    with pytest.raises(CheckpointError, match=r"partial\.ckpt.*missing 1 weights.*m0\.b3_2\.conv1\.weight"):
        load_fan(tmp_path / "partial.ckpt")
    torch.save({"state_dict": {"a": torch.zeros(1)}}, tmp_path / "other.ckpt")
    with pytest.raises(CheckpointError, match=r"other\.ckpt: not a FAN state dict"):
        load_fan(tmp_path / "other.ckpt")
    (tmp_path / "junk.ckpt").write_bytes(b"junk")
    with pytest.raises(CheckpointError, match=r"junk\.ckpt is unreadable"):
        load_fan(tmp_path / "junk.ckpt")
    with pytest.raises(MissingFANWeightsError, match=r"nope\.ckpt does not exist.*wing\.ckpt"):
        load_fan(tmp_path / "nope.ckpt")


# ---- masks -----------------------------------------------------------------------------------------

def _recipe_step_by_step(h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The mask recipe literally, step by step on all 98 channels (the order the official
    `preprocess` documents it in): the executable spec of the grouped `landmark_masks`."""
    x = torch.where(h < 0.1, torch.zeros_like(h), h)
    lo, hi = x.amin((2, 3), keepdim=True), x.amax((2, 3), keepdim=True)
    x = (x - lo) / (hi - lo + 1e-6)

    def up(t, px):
        return torch.roll(t, -px, dims=2)

    for (a, b), px, power in (((8, 25), 0, 3), ((33, 51), -7, 2), ((55, 60), 8, 4), ((77, 82), -8, 4),
                              ((83, 88), 8, 4), ((88, 96), -2, 3)):
        x[:, a:b] = up(x[:, a:b], px) ** power
    x[:, [*range(0, 8), *range(25, 33), 33, 46, 76, 82]] = 0
    x[:, 52:55] = up(x[:, 52:55], 4)
    eyes = x[:, 60:76].clone()
    x[:, 60:76] = up(eyes, -8) ** 3 + up(eyes, -24)
    x2 = x.clone()
    x2[:, 8:25] = 0
    x2[:, 76:96] = 0
    x2[:, 33:51] = 0
    return x.sum(1, keepdim=True).clamp(0, 1), x2.sum(1, keepdim=True).clamp(0, 1)


def test_recipe_matches_the_step_by_step_spec():
    g = torch.Generator().manual_seed(0)
    yy, xx = torch.meshgrid(torch.arange(256.0), torch.arange(256.0), indexing="ij")
    cy, cx = torch.randint(30, 226, (2, 2, 98), generator=g).float()
    h = torch.exp(-((yy - cy[..., None, None]) ** 2 + (xx - cx[..., None, None]) ** 2) / 72)
    h = h * torch.rand(2, 98, 1, 1, generator=g) + 0.05 * torch.rand(2, 98, 256, 256, generator=g)
    got, want = landmark_masks(h), _recipe_step_by_step(h.clone())
    for a, b in zip(got, want):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-6)
    assert 0.01 < want[1].mean() < want[0].mean() < 0.9  # neither empty nor saturated
    # one nostril blob moves 8 px up; channels the recipe drops contribute nothing
    one = torch.zeros(1, 98, 256, 256)
    one[0, 56, 100, 50] = 1.0
    one[0, 0, 10, 10] = 1.0  # outer jaw: dropped
    m, m2 = landmark_masks(one)
    assert m[0, 0, 92, 50] == pytest.approx(1, abs=1e-4) and m.sum() == m[0, 0, 92, 50] and torch.equal(m, m2)


def test_masks_shapes_range_and_input_dependence(wing):
    fan = load_fan(wing)
    x = faces()
    m, m2 = fan.masks(x)
    assert m.shape == m2.shape == (3, 1, 256, 256)
    for t in (m, m2):
        assert t.dtype == torch.float32 and 0 <= t.min() and t.max() <= 1 and not t.requires_grad
        assert 0.02 < t.mean() < 0.9
    assert (m >= m2).all()  # mask2 is mask without jaw line, eyebrows and mouth
    assert (m[0] - m[1]).abs().mean() > 0.02 and (m[0] - m[2]).abs().mean() > 0.02  # other face, other mask
    # any input size: resized to 256 first; a 2x smaller image of the same face gives similar masks
    small = fan.masks(F.interpolate(x, size=32, mode="bilinear", antialias=True))[0]
    assert (small - m).abs().mean() < (m[0] - m[1]).abs().mean()
    torch.testing.assert_close(fan.masks(x[1:2])[0], m[1:2], rtol=0, atol=1e-5)  # per-sample


# ---- training -----------------------------------------------------------------------------------------

FAST = ["experiment=stargan_v2_demo", "logger=csv", "trainer.enable_progress_bar=false",
        "trainer.log_every_n_steps=1", "model.max_conv_dim=32", "model.batch_size=4", "model.w_hpf=1",
        "callbacks.checkpoint.every_n_train_steps=3", "callbacks.stargan_samples.every_n_steps=3",
        "callbacks.stargan_samples.num_mean_samples=64", "callbacks.stargan_samples.psis=[1.0]"]


def test_training_with_high_pass_skips(tmp_path, wing, monkeypatch):
    with pytest.raises(MissingFANWeightsError, match=r"model\.fan_weights=PATH.*LG_FAN_WEIGHTS.*wing\.ckpt"):
        train(tmp_path / "none", *FAST, "trainer.max_steps=1")
    assert issubclass(MissingFANWeightsError, ConfigError)

    # Spy on the FAN: per iteration the masks of the real sources (D and G steps), then those of
    # the two G branches' translated images (cycle reconstruction), as the official solver does.
    calls, sources = [], []
    real_masks = FAN.masks

    def spy(self, x):
        calls.append(x.clone())
        return real_masks(self, x)

    class Sources(pl.Callback):
        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
            sources.append((len(calls), batch["x_src"].clone()))

    monkeypatch.setattr(FAN, "masks", spy)
    out = train(tmp_path / "run", *FAST, "trainer.max_steps=3", f"model.fan_weights={wing}", callbacks=[Sources()])
    assert len(sources) == 3
    for first, x_src in sources:
        assert torch.equal(calls[first], x_src)
        for fake in calls[first + 1:first + 3]:
            assert fake.shape == x_src.shape and not torch.equal(fake, x_src)
    rows = read_metrics(tmp_path / "run")
    keys = [k for k in rows[-1] if k.startswith("loss/")]
    assert len(keys) >= 16 and all(np.isfinite(r[k]) for r in rows for k in keys if k in r)
    names = {p.name.split("-step")[0] for p in (tmp_path / "run" / "samples").glob("*.png")}
    assert names == {"latent_psi1", "reference"}

    ckpt = safe_load(out["checkpoint"])
    hp = ckpt["hyper_parameters"]
    assert hp["fan_weights"] == str(wing.resolve()) and hp["fan_sha256"] == file_sha256(wing)
    assert not any("fan" in k or k.startswith(("m0.", "l0.")) for k in ckpt["state_dict"])  # not saved
    model = StarGANv2Module(**hp)
    model.load_state_dict(ckpt["state_dict"])
    assert model._fan is None and "_fan" not in dict(model.named_modules())
    # the trained G's skips see the masks: zeroing them changes the output
    x = faces(RES, 2)
    masks = model.fan_masks(x)
    assert masks is not None and model._fan is not None
    assert sum(p.numel() for p in model.parameters()) == sum(p.numel() for p in StarGANv2Module(
        **{**hp, "fan_weights": None}).parameters())  # the FAN adds no parameters
    with torch.no_grad():
        s = model.F(torch.randn(2, 16), torch.tensor([0, 1]))
        y = model.G(x, s, masks=masks)
        y0 = model.G(x, s, masks=[torch.zeros_like(m) for m in masks])
    assert torch.isfinite(y).all() and (y - y0).abs().mean() > 1e-3


def test_module_reads_env_var(monkeypatch, wing):
    m = StarGANv2Module(resolution=RES, base_dim=16, max_conv_dim=32, w_hpf=1)
    monkeypatch.setenv(FAN_ENV, str(wing))
    assert m.fan_masks(faces(RES, 2))[0].shape == (2, 1, 256, 256)
    assert m.hparams.fan_sha256 == file_sha256(wing)
    assert StarGANv2Module(resolution=RES, base_dim=16, max_conv_dim=32, w_hpf=0).fan_masks(faces(RES, 2)) is None


# ---- synthesis ----------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def hpf_ckpt(tmp_path_factory) -> Path:
    return make_stargan_checkpoint(tmp_path_factory.mktemp("ckpt") / "hpf.ckpt", RES, w_hpf=1)


def test_transfer_cli_with_and_without_fan_weights(tmp_path, hpf_ckpt, wing, capsys):
    src, ref = tmp_path / "src", tmp_path / "ref"
    src.mkdir()
    ref.mkdir()
    for i, img in enumerate(faces(48, 3)):
        Image.fromarray(((img.permute(1, 2, 0) + 1) * 127.5).round().byte().numpy()).save(
            (src if i < 2 else ref) / f"f{i}.png")
    args = ["transfer", str(hpf_ckpt), "--source", str(src), "--reference", str(ref), "--domain", "1",
            "--latent-seeds", "0", "--outdir", str(tmp_path / "out")]
    assert cli_main(args) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "hpf.ckpt" in err and "--fan-weights=PATH" in err
    assert "LG_FAN_WEIGHTS" in err and "wing.ckpt" in err
    assert cli_main(args + ["--fan-weights", str(tmp_path / "missing.ckpt")]) == 2
    assert "missing.ckpt (from --fan-weights) does not exist" in capsys.readouterr().err

    assert cli_main(args + ["--fan-weights", str(wing)]) == 0
    pngs = sorted((tmp_path / "out").glob("*.png"))
    assert len(pngs) == 4  # 2 sources x (1 reference + 1 seed)
    assert read_provenance(pngs[0])["fan_sha256"] == file_sha256(wing)

    # the API: masks from the sources change the outputs (G's skips are live)
    net = as_stargan(hpf_ckpt, fan_weights=wing)
    x = faces(RES, 2)
    out = transfer(net, x, domain=1, latent_seeds=[0])["latent_guided"]
    net.fan = None  # no masks -> the generator refuses
    with pytest.raises(ValueError, match="masks"):
        transfer(net, x, domain=1, latent_seeds=[0])
    assert torch.isfinite(out).all()


def test_interpolate_uses_masks(monkeypatch, hpf_ckpt, wing):
    with pytest.raises(LGError, match="LG_FAN_WEIGHTS"):
        as_stargan(hpf_ckpt)
    monkeypatch.setenv(FAN_ENV, str(wing))
    net = as_stargan(hpf_ckpt)
    x = faces(RES, 1)
    imgs, styles = interpolate_styles(net, x, seeds=[0, 1], domain=1, frames=2)
    assert imgs.shape == (3, 3, RES, RES) and torch.isfinite(imgs).all()
    # keyframes are the latent-guided transfer outputs
    ends = transfer(net, x, domain=1, latent_seeds=[0, 1])["latent_guided"][:, 0]
    torch.testing.assert_close(imgs[[0, 2]], ends, rtol=0, atol=1e-5)


def test_interpolate_and_evaluate_take_fan_weights(tmp_path, hpf_ckpt, wing, capsys):
    """`interpolate --fan-weights` and `evaluate fan_weights=` give w_hpf > 0 models their masks."""
    from lightning_gans.commands.evaluate import main as evaluate_main

    src = tmp_path / "face.png"
    Image.fromarray(((faces(48, 1)[0].permute(1, 2, 0) + 1) * 127.5).round().byte().numpy()).save(src)
    args = ["interpolate", str(hpf_ckpt), "--source", str(src), "--seeds", "0,1", "--domain", "1",
            "--frames", "2", "--format", "gif", "--outdir", str(tmp_path / "walk")]
    assert cli_main(args) == 2 and "LG_FAN_WEIGHTS" in capsys.readouterr().err
    assert cli_main(args + ["--fan-weights", str(wing)]) == 0
    assert len(list((tmp_path / "walk" / "frames").glob("*.png"))) == 3

    data = tmp_path / "val"
    for d in (0, 1):
        (data / f"d{d}").mkdir(parents=True)
        for i, img in enumerate(faces(RES, 2, seed=d)):
            Image.fromarray(((img.permute(1, 2, 0) + 1) * 127.5).round().byte().numpy()).save(
                data / f"d{d}" / f"{i}.png")
    seen = []

    def feats(x: torch.Tensor) -> torch.Tensor:
        seen.append(x.shape[0])
        return x.float().flatten(1)[:, :8]

    def dist(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return (a - b).abs().flatten(1).mean(1)

    ev = [f"ckpt={hpf_ckpt}", f"data={data}", "num=2", "num_outs=2", "batch=2", "out=none",
          "metrics=[latent]", "device=cpu"]
    with pytest.raises(LGError, match="LG_FAN_WEIGHTS"):  # cli.main prints it
        evaluate_main(ev, feature_net=feats, distance=dist)
    assert evaluate_main(ev + [f"fan_weights={wing}"], feature_net=feats, distance=dist) == 0
    record = capsys.readouterr().out.strip().splitlines()[-1]
    assert '"FID_latent/mean"' in record and seen
