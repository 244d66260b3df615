"""Official TensorFlow StyleGAN (v1) and StyleGAN2 network pickles: read without running anything,
converted networks held to the official outputs in ../shared/parity/tf_stylegan*/ (every shape and
setting read from the files, via LG_PARITY_DIR), refusals, `convert`, and fine-tuning a v1 file."""

import json
import os
import pickle
import pickletools
import re
import shutil
import sys
import types

import numpy as np
import pytest
import torch
from helpers.parity_utils import parity_dir
from helpers.train_utils import read_metrics, series

from lightning_gans.checkpoint import safe_load
from lightning_gans.cli import main
from lightning_gans.errors import CheckpointError
from lightning_gans.interop import load_official, to_checkpoint
from lightning_gans.interop.tf_pickle import load_tf_pickle

pytestmark = pytest.mark.usefixtures("one_thread")

PARITY = parity_dir()
FOLDERS = ("tf_stylegan1", "tf_stylegan1_fused", "tf_stylegan2")
EVIL_MARKER = "LG_TEST_MARKER"


def folder(name: str):
    path = PARITY / name if PARITY is not None else None
    if path is None or not path.is_dir():
        pytest.skip(f"{name} fixtures not present; set LG_PARITY_DIR")
    return path


def pickle_of(path):
    pkls = sorted(path.glob("*.pkl"))
    assert len(pkls) == 1, f"expected one network pickle in {path}, found {pkls}"
    return pkls[0]


def tol(ref: np.ndarray) -> float:
    # ../shared/parity/README.md: max|ours - ref| <= 1e-4 * max(1, max|ref|) per array.
    return 1e-4 * max(1.0, float(np.abs(ref).max()))


def check(out, ref: np.ndarray, key: str, atol: float | None = None) -> None:
    out = out.detach().cpu().numpy() if isinstance(out, torch.Tensor) else np.asarray(out)
    assert out.shape == ref.shape, f"{key}: shape {out.shape} vs {ref.shape}"
    err = float(np.abs(out - ref).max())
    assert err <= (tol(ref) if atol is None else atol), f"{key}: max|diff| {err:.3g}"


def truncations(ref) -> list[tuple[str, float, int | None]]:
    """(tag, psi, cutoff or None = the file's default) of every img_<tag> reference, from the key names:
    psi1, psi07 (= 0.7), psi05_cutoff4, ..."""
    out = []
    for key in ref.files:
        m = re.fullmatch(r"img_psi(\d+)(?:_cutoff(\d+))?", key)
        if m:
            digits = m[1]
            psi = float(digits[0] + "." + digits[1:]) if len(digits) > 1 else float(digits)
            out.append((key[4:], psi, int(m[2]) if m[2] else None))
    assert any(psi != 1 and cut is None for _, psi, cut in out), "expected a default-cutoff truncation reference"
    return out


@pytest.fixture(scope="module", params=FOLDERS)
def converted(request):
    path = folder(request.param)
    imp = load_official(pickle_of(path))
    return request.param, path, imp, np.load(path / "ref.npz", allow_pickle=False)


def test_converted_networks_reproduce_the_official_outputs(converted):
    name, path, imp, ref = converted
    v1 = imp.format == "tf-stylegan"
    assert imp.kind == ("stylegan" if v1 else "stylegan2") and imp.contents == ["G", "D", "Gs"]
    G, Gn, D = imp.networks["G_ema"], imp.networks["G"], imp.networks["D"]
    z = torch.from_numpy(ref["z"].astype(np.float32))
    assert G.z_dim == z.shape[1] and G.img_resolution == ref["img_psi1"].shape[-1]
    with torch.no_grad():
        check(G.mapping.w_avg, ref["dlatent_avg"], "dlatent_avg", atol=0)
        check(G.mapping(z, None, update_w_avg=False), ref["ws"], "ws")
        check(Gn.mapping(z, None, update_w_avg=False), ref["ws_G"], "ws_G")
        # The synthesis noise variables, which randomize_noise=False uses as they are.
        noise = {int(k.split("noise")[-1]): ref[k] for k in ref.files if k.startswith("noise/")}
        ours = [b for n, b in G.synthesis.named_buffers() if n.endswith("noise_const")]
        assert len(ours) == len(noise)
        for i, buf in enumerate(ours):
            check(buf, noise[i].reshape(buf.shape), f"noise{i}", atol=0)
        for tag, psi, cutoff in truncations(ref):
            cut = imp.truncation["cutoff"] if cutoff is None else cutoff  # the build function's default
            ws = G.mapping(z, None, psi, cut, update_w_avg=False)
            check(ws, ref[f"ws_{tag}"], f"ws_{tag}")
            img = G.synthesis(ws, noise_mode="const")
            check(img, ref[f"img_{tag}"], f"img_{tag}")
            check(D(torch.from_numpy(ref[f"img_{tag}"])), ref[f"D_{tag}"], f"D_{tag}")
        one = torch.cat([G.synthesis(G.mapping(z[i : i + 1], None, update_w_avg=False), noise_mode="const")
                         for i in range(z.shape[0])])
        check(one, ref["img_psi1_batch1"], "img_psi1_batch1")
        check(Gn.synthesis(Gn.mapping(z, None, update_w_avg=False), noise_mode="const"), ref["img_G_psi1"],
              "img_G_psi1")
        # Minibatch-stddev grouping: the README's finer bound, as one image at a time moves scores ~3e-4.
        x = torch.from_numpy(ref["D_rand_images"])
        check(D(x), ref["D_rand"], "D_rand", atol=1e-5)
        check(D(x[:2]), ref["D_rand_first2"], "D_rand_first2", atol=1e-5)
        check(torch.cat([D(x[i : i + 1]) for i in range(x.shape[0])]), ref["D_rand_one_at_a_time"],
              "D_rand_one_at_a_time", atol=1e-5)
        # G != Gs in these files, so reading the wrong one would be caught.
        assert np.abs(ref["img_G_psi1"] - ref["img_psi1"]).max() > 100 * tol(ref["img_psi1"])


def test_the_file_default_truncation_and_fused_scale_are_read(converted):
    name, path, imp, ref = converted
    kw = json.loads((path / "kwargs.json").read_text()) if (path / "kwargs.json").is_file() else None
    if kw is not None and "build_func_defaults_truncation" in kw.get("config", {}):
        want = kw["config"]["build_func_defaults_truncation"]
        assert imp.truncation == {"psi": want["truncation_psi"], "cutoff": want["truncation_cutoff"]}
    if imp.format != "tf-stylegan":
        return
    # v1: fused where TF fuses (an explicit fused_scale, else 'auto' = output >= 128 px).
    nets = load_tf_pickle(pickle_of(path))
    fs = nets["Gs"].components["synthesis"].static_kwargs.get("fused_scale", "auto")
    for layer in imp.networks["G_ema"].synthesis.modules():
        if hasattr(layer, "fused") and layer.up == 2:
            assert layer.fused == (layer.noise.resolution >= 128 if fs == "auto" else bool(fs))


def test_convert_cli_writes_a_checkpoint_the_tools_rebuild(converted, tmp_path):
    name, path, imp, ref = converted
    out = tmp_path / f"{name}.ckpt"
    assert main(["convert", str(pickle_of(path)), str(out)]) == 0
    ckpt = safe_load(out)  # weights only
    cfg = ckpt["model_config"]
    assert cfg["kind"] == imp.kind and ckpt["converted_from"]["format"] == imp.format
    assert cfg["truncation"] == imp.truncation
    if imp.kind == "stylegan":
        from lightning_gans.models.stylegan import Generator
        from lightning_gans.modules.stylegan import StyleGANModule

        module = StyleGANModule(**ckpt["hyper_parameters"])  # fine-tuning rebuilds it from these
        assert module.hparams.start_resolution == module.hparams.resolution == ref["img_psi1"].shape[-1]
        module.load_state_dict(ckpt["state_dict"], strict=True)
        assert int(module.resolution) == module.hparams.resolution and float(module.alpha) == 1
    else:
        from lightning_gans.models.stylegan2 import Generator
    G = Generator(**cfg["G_kwargs"])
    G.load_state_dict({k[6:]: v for k, v in ckpt["state_dict"].items() if k.startswith("G_ema.")})
    with torch.no_grad():
        z = torch.from_numpy(ref["z"].astype(np.float32))
        check(G.synthesis(G.mapping(z, None, update_w_avg=False), noise_mode="const"), ref["img_psi1"], "img_psi1")
    assert to_checkpoint(imp)["state_dict"].keys() == ckpt["state_dict"].keys()


def test_the_synthesis_tools_reproduce_the_official_images_from_the_checkpoint(converted, tmp_path):
    from lightning_gans.synthesis import as_generator
    from lightning_gans.synthesis.generate import generate
    from lightning_gans.synthesis.project import ProjectSchedule, project
    from lightning_gans.synthesis.stylemix import mix_ws

    name, path, imp, ref = converted
    out = tmp_path / f"{name}.ckpt"
    assert main(["convert", str(pickle_of(path)), str(out)]) == 0
    gen = as_generator(out)
    cfg = safe_load(out)["model_config"]
    seeds = [int(s) for s in ref["z_seeds"]]  # z of seed s = RandomState(s).randn(1, z_dim), as here
    assert cfg["truncation"] == imp.truncation
    for tag, psi, cutoff in truncations(ref):
        # No cutoff given: the file's default (v1 G_style: ws 0..7; v2 G_main: all ws), as `--truncation psi` alone.
        check(generate(gen, seeds, truncation_psi=psi, truncation_cutoff=cutoff), ref[f"img_{tag}"], f"img_{tag}")
    ws = torch.from_numpy(ref["ws"])
    mixed = mix_ws(ws[:1], ws[1:2], list(range(4, ws.shape[1])))[0, 0]  # row 0 with column 1's styles from 4 on
    assert torch.equal(mixed[:4], ws[0, :4]) and torch.equal(mixed[4:], ws[1, 4:])
    # Projection runs on the converted generator (MSE; a few steps bring the error down).
    target = generate(gen, seeds[:1])[0]
    res = project(gen, target, space="w", schedule=ProjectSchedule(steps=20, w_avg_samples=200))
    assert res.ws.shape == (1, gen.G.num_ws, gen.G.w_dim) and res.losses[-1] < res.losses[0]


# ---- a stand-in writer of the TF pickle format (for tampered files) -------------------------------

def write_tf_pickle(nets: dict, out, tamper=None) -> None:
    """Pickle (G, D, Gs) as dnnlib.tflib.network.Network objects with the states of `nets`."""
    mods = {n: types.ModuleType(n) for n in ("dnnlib", "dnnlib.tflib", "dnnlib.tflib.network")}

    class Network:
        pass

    Network.__module__, Network.__qualname__ = "dnnlib.tflib.network", "Network"
    mods["dnnlib.tflib.network"].Network = Network

    def to_obj(net):
        obj = Network()
        obj.__dict__.update(version=net.version, name=net.name, static_kwargs=dict(net.static_kwargs),
                            components={k: to_obj(c) for k, c in net.components.items()},
                            build_module_src="# placeholder", build_func_name=net.build_func_name,
                            variables=list(net.variables.items()))
        if tamper is not None:
            tamper(obj)
        return obj

    saved = {n: sys.modules.get(n) for n in mods}
    sys.modules.update(mods)
    try:
        out.write_bytes(pickle.dumps(tuple(to_obj(nets[n]) for n in ("G", "D", "Gs")), protocol=4))
    finally:
        for n, m in saved.items():
            if m is None:
                sys.modules.pop(n, None)
            else:
                sys.modules[n] = m


class Evil:
    def __reduce__(self):
        return (os.system, (f"touch {os.environ.get(EVIL_MARKER, '/nonexistent/x')}",))


def test_a_refused_global_is_named_and_nothing_runs(tmp_path, monkeypatch):
    path = folder("tf_stylegan1")
    nets = load_tf_pickle(pickle_of(path))
    marker = tmp_path / "ran"
    monkeypatch.setenv(EVIL_MARKER, str(marker))

    def tamper(obj):
        if obj.name == "G_mapping":
            obj.variables.append(("Dense0/evil", Evil()))

    bad = tmp_path / "network-snapshot-evil.pkl"
    write_tf_pickle(nets, bad, tamper)
    with pytest.raises(CheckpointError, match="refusing to load") as e:
        load_official(bad)
    msg = str(e.value)
    assert f"{os.system.__module__}.system" in msg and str(bad) in msg and "\n" not in msg
    assert main(["convert", str(bad), str(tmp_path / "x.ckpt")]) == 2
    assert not marker.exists() and not (tmp_path / "x.ckpt").exists()


def test_the_2019_numpy_names_load_and_a_rewritten_file_converts_identically(tmp_path):
    path = folder("tf_stylegan1")
    data = pickle_of(path).read_bytes()
    names = {arg for op, arg, _ in pickletools.genops(data) if op.name in ("SHORT_BINUNICODE", "BINUNICODE")}
    assert "numpy.core.multiarray" in names  # the numpy-1.x module name, which numpy 2 renamed
    # The same networks re-pickled by numpy 2 (numpy._core names) convert to the same tensors.
    again = tmp_path / "network-snapshot-again.pkl"
    write_tf_pickle(load_tf_pickle(pickle_of(path)), again)
    a = to_checkpoint(load_official(pickle_of(path)))["state_dict"]
    b = to_checkpoint(load_official(again))["state_dict"]
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize("name", ["tf_stylegan1", "tf_stylegan2"])
def test_variables_that_do_not_fit_are_named_in_one_line(name, tmp_path):
    path = folder(name)
    nets = load_tf_pickle(pickle_of(path))
    target = next(k for k in nets["Gs"].components["synthesis"].variables if k.endswith("Conv1/weight"))

    def wrong_shape(obj):
        if obj.name == "G_synthesis":
            obj.variables = [(k, v[:, :, :-1] if k == target else v) for k, v in obj.variables]

    def extra(obj):
        if obj.name == "D":
            obj.variables = [*obj.variables, ("Extra/weight", np.zeros([3], np.float32))]

    def kwarg(obj):
        if obj.name == "Gs":
            obj.static_kwargs = {**obj.static_kwargs, "label_size": 10}

    for tamper, words in ((wrong_shape, [target, "shape"]), (extra, ["Extra/weight"]), (kwarg, ["label_size"])):
        bad = tmp_path / f"{tamper.__name__}.pkl"
        write_tf_pickle(nets, bad, tamper)
        with pytest.raises(CheckpointError) as e:
            load_official(bad)
        assert all(w in str(e.value) for w in words) and "\n" not in str(e.value), str(e.value)
        assert main(["convert", str(bad), str(tmp_path / "x.ckpt")]) == 2


@pytest.mark.slow
def test_a_converted_v1_file_fine_tunes_at_full_resolution_and_resumes(tmp_path):
    from lightning_gans.data.demo import ensure_demo_data

    path = folder("tf_stylegan1")
    ckpt = tmp_path / "v1.ckpt"
    assert main(["convert", str(pickle_of(path)), str(ckpt)]) == 0
    R = safe_load(ckpt)["hyper_parameters"]["resolution"]
    out = tmp_path / "ft"
    out.mkdir()
    shutil.copytree(ensure_demo_data(root=tmp_path / "cache", resolution=R, count=32), out / "shards")
    batch, steps = 4, 20
    flags = ["finetune", f"photos={out / 'shards'}", f"from={ckpt}", f"out={out}", f"batch={batch}"]
    overrides = ["logger=csv", "trainer.log_every_n_steps=1", "trainer.enable_progress_bar=false",
                 "data.num_workers=0", "callbacks.samples.every_n_steps=10"]
    assert main([*flags, f"kimg={steps * batch / 1000}", *overrides]) == 0
    last = out / "run" / "checkpoints" / "last.ckpt"
    end = safe_load(last)
    assert end["global_step"] == steps and int(end["state_dict"]["nimg"]) == steps * batch
    assert end["hyper_parameters"]["start_resolution"] == R
    rows = read_metrics(out / "run")
    res = series(rows, "progress/resolution")
    assert len(res) == steps and set(res.values()) == {R}  # no progressive phase below R
    assert set(series(rows, "progress/alpha").values()) == {1.0}
    assert all(np.isfinite(v) for v in series(rows, "loss/D_main").values())
    start = safe_load(ckpt)["state_dict"]
    moved = (end["state_dict"]["G.synthesis.b8.layer1.conv.weight"] - start["G.synthesis.b8.layer1.conv.weight"])
    assert moved.abs().max() > 1e-4  # G trained from the converted weights
    # G_ema started as Gs (which differs from G in the file) and moved only a little toward G (half-life 10 kimg).
    k = "mapping.fc0.weight"
    ema_moved = (end["state_dict"][f"G_ema.{k}"] - start[f"G_ema.{k}"]).abs().max()
    assert 0 < ema_moved < 0.05 * (start[f"G_ema.{k}"] - start[f"G.{k}"]).abs().max()
    # Resume the same run from its last checkpoint for 4 more steps.
    more = steps + 4
    assert main([*flags, f"kimg={more * batch / 1000}", *overrides, f"ckpt_path={last}"]) == 0
    end2 = safe_load(last)
    assert end2["global_step"] == more and int(end2["state_dict"]["nimg"]) == more * batch
    assert f"Restored all states from the checkpoint at {last}" in (out / "run" / "train.log").read_text()
    assert max(series(read_metrics(out / "run"), "loss/G_main")) == more - 1
    k = "G.synthesis.b8.layer1.conv.weight"
    assert not torch.equal(end2["state_dict"][k], end["state_dict"][k])
