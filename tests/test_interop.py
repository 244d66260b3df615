"""interop/: official StyleGAN2-ADA pickles (read without running them), rosinality and StarGAN v2 files,
parity with the official outputs in ../shared/parity, `convert` to ours and back, refusals."""

import argparse
import builtins
import io
import json
import os
import pickle
import subprocess
import sys
import types
from collections import OrderedDict
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers.parity_utils import parity_dir

from lightning_gans.checkpoint import safe_load
from lightning_gans.commands.convert import main as convert_main
from lightning_gans.errors import CheckpointError
from lightning_gans.interop import PersistentRecord, convert, load_official, safe_unpickle, sg2ada, to_checkpoint
from lightning_gans.interop.safe_pickle import RestrictedUnpickler
from lightning_gans.models.stargan_v2 import build_networks

PARITY = parity_dir()
needs_parity = pytest.mark.skipif(
    PARITY is None, reason="../shared/parity (official outputs) not present; set LG_PARITY_DIR"
)
ATOL = 1e-4
# Stands in for the embedded official source: if anything exec()s module_src, this leaves a file behind.
EVIL_SRC = "import pathlib, os\npathlib.Path(os.environ['LG_TEST_MARKER']).write_text('ran')\n"


def close(out, ref, key):
    out = out.detach().numpy() if isinstance(out, torch.Tensor) else out
    assert out.shape == ref[key].shape, key
    np.testing.assert_allclose(out, ref[key], rtol=0, atol=ATOL, err_msg=key)


# ------------------------------------------------- a look-alike network-snapshot pickle (tests only)
def _fake_module(monkeypatch, name, **attrs):
    mod = types.ModuleType(name)
    for k, v in attrs.items():
        v.__module__, v.__qualname__ = name, k
        setattr(mod, k, v)
    monkeypatch.setitem(sys.modules, name, mod)
    return mod


class _Persistent:
    """Pickles as torch_utils.persistence._reconstruct_persistent_obj(meta), like the official classes."""

    def __init__(self, meta):
        self.meta = meta

    def __reduce__(self):
        return (sys.modules["torch_utils.persistence"]._reconstruct_persistent_obj, (self.meta,))


def _value(spec, easy):
    if spec["type"] == "numpy.float64":
        return np.float64(spec["value"])
    return spec["value"]


def _easy(kwargs, kw_types, easy):
    return {k: easy(v) if kw_types.get(k) == "dnnlib.util.EasyDict" else v for k, v in kwargs.items()}


def build_snapshot_pickle(path, structure, tensors, easy, extra=None):
    """Write a pickle laid out as structure.json says, holding the given tensors (by module path)."""
    internal = structure["torch_module_internal_keys"]["keys"]

    def record(net, mods, mpath):
        m = mods[mpath]
        prefix = "" if mpath == "<root>" else mpath + "."
        state = {}
        for key in m["state_keys"]:
            if key == "training":
                state[key] = False
            elif key in ("_parameters", "_buffers"):
                specs = m["parameters" if key == "_parameters" else "buffers"]
                od = OrderedDict()
                for name, spec in specs.items():
                    t = tensors[net].get(prefix + name, torch.zeros(spec["shape"]))
                    od[name] = torch.nn.Parameter(t.clone(), requires_grad=False) if key == "_parameters" else t.clone()
                state[key] = od
            elif key == "_non_persistent_buffers_set":
                state[key] = set()
            elif key == "_is_full_backward_hook":
                state[key] = None
            elif key == "_modules":
                state[key] = OrderedDict((c, record(net, mods, prefix + c)) for c in m["children"])
            elif key in internal:
                state[key] = OrderedDict()
            elif key == "_init_args":
                state[key] = list(m["init_args"])
            elif key == "_init_kwargs":
                state[key] = _easy(m["init_kwargs"], m.get("init_kwargs_types", {}), easy)
            else:
                state[key] = _value(m["attributes"][key], easy)
        meta = dict(type="class", version=6, module_src=EVIL_SRC, class_name=m["class_name"], state=state)
        return _Persistent(meta)

    kw = json.loads(json.dumps(structure["top_level"]["training_set_kwargs"]["value"]))
    snap = {"training_set_kwargs": kw}
    for net in ("G", "D", "G_ema", "augment_pipe"):
        snap[net] = record(net, structure["modules"][net], "<root>")
    snap.update(extra or {})
    with open(path, "wb") as f:
        pickle.dump(snap, f, protocol=4)


def _globals(data):
    """module.name of every global the pickle references (seen by the restricted unpickler)."""
    seen = set()

    class Recording(RestrictedUnpickler):
        def find_class(self, module, name):
            seen.add(f"{module}.{name}")
            return super().find_class(module, name)

    Recording(io.BytesIO(data)).load()
    return seen


@pytest.fixture(scope="module")
def sg2ada_pickle(tmp_path_factory):
    if PARITY is None:
        pytest.skip("../shared/parity not present")
    mp = pytest.MonkeyPatch()
    try:
        def _reconstruct_persistent_obj(meta):  # never called: the loader under test must not import it
            raise AssertionError("the official reconstructor ran")

        class EasyDict(dict):
            pass

        mp.setitem(sys.modules, "torch_utils", types.ModuleType("torch_utils"))
        mp.setitem(sys.modules, "dnnlib", types.ModuleType("dnnlib"))
        _fake_module(mp, "torch_utils.persistence", _reconstruct_persistent_obj=_reconstruct_persistent_obj)
        _fake_module(mp, "dnnlib.util", EasyDict=EasyDict)
        p = PARITY / "sg2ada"
        structure = json.loads((p / "structure.json").read_text())
        tensors = {n: {k: torch.from_numpy(v) for k, v in np.load(p / f"{n}.npz").items()} for n in ("G", "D", "G_ema")}
        tensors["augment_pipe"] = {}
        path = tmp_path_factory.mktemp("sg2ada") / "network-snapshot-000000.pkl"
        build_snapshot_pickle(path, structure, tensors, EasyDict)
    finally:
        mp.undo()
    return path


# ------------------------------------------------------------------------------------ sg2ada
@needs_parity
def test_sg2ada_pickle_is_read_without_running_it_and_matches_official(sg2ada_pickle, tmp_path, monkeypatch):
    marker = tmp_path / "marker"
    monkeypatch.setenv("LG_TEST_MARKER", str(marker))
    data = sg2ada_pickle.read_bytes()
    assert EVIL_SRC.encode() in data  # the source text is really in there
    structure = json.loads((PARITY / "sg2ada" / "structure.json").read_text())
    assert _globals(data) == set(structure["pickle"]["globals_referenced"])  # laid out like the official one
    assert "torch_utils" not in sys.modules and "dnnlib" not in sys.modules
    imp = load_official(sg2ada_pickle, kind="stylegan2", resolution=32)
    assert not marker.exists() and "torch_utils" not in sys.modules
    assert imp.format == "sg2ada-pickle" and "augment_p=0" in imp.notes
    hp = imp.hyper_parameters
    assert (hp["resolution"], hp["channel_base"], hp["channel_max"], hp["conv_clamp"], hp["mapping_layers"],
            hp["mbstd_group_size"]) == (32, 1024, 32, 256, 8, 4)
    ref = np.load(PARITY / "sg2ada" / "ref.npz")
    G, G_ema, D = (imp.networks[n] for n in ("G", "G_ema", "D"))
    z = torch.from_numpy(ref["z"])
    close(G_ema.mapping.w_avg, ref, "w_avg")
    with torch.no_grad():
        for psi, key in [(1, "psi1"), (0.7, "psi07")]:
            ws = G_ema.mapping(z, None, truncation_psi=psi)
            close(ws, ref, f"ws_{key}")
            close(G_ema.synthesis(ws, noise_mode="const"), ref, f"img_{key}")
            close(D(torch.from_numpy(ref[f"img_{key}"])), ref, f"D_{key}")
        close(G_ema(z, None, noise_mode="none"), ref, "img_psi1_noise_none")
        close(G.mapping(z, None), ref, "ws_G_psi1")
        close(G(z, None, noise_mode="const"), ref, "img_G_psi1")
        close(D(torch.from_numpy(ref["img_G_psi1"])), ref, "D_G_psi1")


@pytest.mark.parametrize("evil", [
    (os.system, ("touch {marker}",)),
    (builtins.eval, ("open({marker!r}, 'w').write('x')",)),
    (subprocess.check_call, (["touch", "{marker}"],)),
])
def test_pickle_calling_anything_else_is_refused_and_nothing_runs(evil, tmp_path):
    fn, args = evil
    marker = str(tmp_path / "marker")
    args = tuple([a.format(marker=marker) for a in x] if isinstance(x, list) else x.format(marker=marker) for x in args)

    class Evil:
        def __reduce__(self):
            return (fn, args)

    # Hidden where a loader might look last: inside a network's recorded state.
    payload = pickle.dumps({"training_set_kwargs": {}, "G": OrderedDict(weight=Evil())}, protocol=4)
    with pytest.raises(CheckpointError, match="refusing to load") as e:
        safe_unpickle(payload, "evil.pkl")
    assert f"{fn.__module__}.{fn.__qualname__}" in str(e.value) and "\n" not in str(e.value)
    path = tmp_path / "network-snapshot-evil.pkl"
    path.write_bytes(payload)
    with pytest.raises(CheckpointError, match=fn.__qualname__):
        load_official(path)
    assert not os.path.exists(marker)


def test_tensor_storage_payload_is_loaded_weights_only(tmp_path):
    # torch.storage._load_from_bytes would torch.load(weights_only=False) this inner payload.
    marker = tmp_path / "marker"

    class Evil:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    class Storage:
        def __reduce__(self):
            return (torch.storage._load_from_bytes, (pickle.dumps(Evil(), protocol=2),))

    with pytest.raises(CheckpointError, match="not plain data"):
        safe_unpickle(pickle.dumps({"G": Storage()}, protocol=4), "evil.pkl")
    assert not marker.exists()


@needs_parity
def test_sg2ada_state_dict_folder_and_pt_export_round_trip(tmp_path):
    imp = load_official(PARITY / "sg2ada")  # the G/D/G_ema.npz folder form
    ckpt = to_checkpoint(imp)
    ours = tmp_path / "ours.ckpt"
    torch.save(ckpt, ours)
    assert convert_main([str(ours), str(tmp_path / "official.pt"), "--to", "official-state-dict"]) == 0
    assert convert_main([str(ours), str(tmp_path / "npz"), "--to", "official-state-dict"]) == 0
    back = torch.load(tmp_path / "official.pt", weights_only=True)
    again = to_checkpoint(load_official(tmp_path / "official.pt"))["state_dict"]
    assert again.keys() == ckpt["state_dict"].keys()
    assert all(torch.equal(again[k], v) for k, v in ckpt["state_dict"].items())
    for n in ("G", "G_ema", "D"):
        ref = np.load(PARITY / "sg2ada" / f"{n}.npz")
        npz = np.load(tmp_path / "npz" / f"{n}.npz")
        assert list(back[n]) == list(npz) and sorted(back[n]) == sorted(ref), n
        for k in ref:
            assert np.array_equal(back[n][k].numpy(), ref[k]) and np.array_equal(npz[k], ref[k]), f"{n}.{k}"


# ------------------------------------------------------------------------------------ rosinality
@needs_parity
def test_rosinality_matches_official_and_round_trips(tmp_path):
    p = PARITY / "rosinality"
    ref = np.load(p / "ref.npz")
    imp = load_official(p / "rosinality.pt", mean_latent=torch.from_numpy(ref["mean_latent"]))
    G, G_ema, D = (imp.networks[n] for n in ("G", "G_ema", "D"))
    assert imp.hyper_parameters["conv_clamp"] is None and imp.hyper_parameters["channel_max"] == 32
    with torch.serialization.safe_globals([argparse.Namespace]):
        src = torch.load(p / "rosinality.pt", weights_only=True)
    # its noise buffers became our noise_const (noise_4: the second conv of the 16-px block)
    assert torch.equal(G_ema.synthesis.b16.conv1.noise_const, src["g_ema"]["noises.noise_4"][0, 0])
    z = torch.from_numpy(ref["z"])
    with torch.no_grad():
        for psi, key in [(1, "t1"), (0.7, "t07")]:
            ws = G_ema.mapping(z, None, truncation_psi=psi)
            close(ws, ref, f"latent_{key}")
            close(G_ema.synthesis(ws, noise_mode="const"), ref, f"img_{key}")
            close(D(torch.from_numpy(ref[f"img_{key}"])), ref, f"D_{key}")
        close(G_ema(z, None, noise_mode="none"), ref, "img_t1_zero_noise")
        close(G(z, None, noise_mode="const"), ref, "img_g_t1")

    # ours -> rosinality names (convert_weight form + g, d) -> ours again
    ours = tmp_path / "ours.ckpt"
    torch.save(to_checkpoint(imp), ours)
    out = tmp_path / "rosi.pt"
    assert convert_main([str(ours), str(out), "--to", "official-state-dict", "--flavor", "rosinality"]) == 0
    back = torch.load(out, weights_only=True)
    for a, b in (("g", "g"), ("g_ema", "g_ema"), ("d", "d")):
        assert sorted(back[a]) == sorted(src[b])
        for k, v in src[b].items():
            assert torch.equal(back[a][k], v), f"{a}.{k}"
    assert torch.equal(back["latent_avg"], torch.from_numpy(ref["mean_latent"][0]))
    again = tmp_path / "again.ckpt"
    assert convert_main([str(out), str(again)]) == 0
    ck = safe_load(again)
    assert ck["converted_from"]["format"] == "rosinality"
    for k, v in to_checkpoint(imp)["state_dict"].items():
        assert torch.equal(ck["state_dict"][k], v), k


@needs_parity
def test_converted_checkpoint_builds_the_lightning_module(tmp_path):
    from lightning_gans.modules.stylegan2 import StyleGAN2Module

    ref = np.load(PARITY / "rosinality" / "ref.npz")
    out = tmp_path / "ours.ckpt"
    imp = load_official(PARITY / "rosinality" / "rosinality.pt", mean_latent=torch.from_numpy(ref["mean_latent"]))
    torch.save(to_checkpoint(imp), out)
    ck = safe_load(out)
    module = StyleGAN2Module(**ck["hyper_parameters"])
    assert module.model_config() == ck["model_config"]
    module.load_state_dict(ck["state_dict"], strict=True)
    with torch.no_grad():
        img = module.G_ema(torch.from_numpy(ref["z"]), None, truncation_psi=0.7, noise_mode="const")
    close(img, ref, "img_t07")


# ------------------------------------------------------------------------------------ StarGAN v2
@needs_parity
def test_stargan_v2_files_match_official():
    p = PARITY / "stargan_v2"
    ref = {k: torch.from_numpy(v) for k, v in np.load(p / "ref.npz").items()}
    imp = load_official(p / "000000_nets.ckpt", kind="stargan_v2", resolution=256)  # reads _nets_ema too
    assert imp.hyper_parameters == dict(resolution=256, num_domains=2, latent_dim=16, style_dim=64,
                                        max_conv_dim=16, w_hpf=0.0, name="stargan_v2-import")
    assert imp.notes == []
    n = imp.networks
    assert set(n) == {"G", "F", "E", "D", "G_ema", "F_ema", "E_ema"}
    assert imp.contents == ["generator", "mapping_network", "style_encoder", "discriminator", "generator_ema",
                            "mapping_network_ema", "style_encoder_ema"]
    # Full coverage of the networks is in test_stargan_v2_models; here: each file's nets, by name.
    with torch.no_grad():
        s = n["F_ema"](ref["z"], ref["y_trg"])
        close(s, ref, "ema_s_latent")
        close(n["G_ema"](ref["x_src"], s), ref, "ema_x_fake_latent")
        close(n["E_ema"](ref["x_ref"], ref["y_trg"]), ref, "ema_s_ref")
        close(n["F"](ref["z"], ref["y_trg"]), ref, "nets_s_latent")
        close(n["E"](ref["x_ref"], ref["y_trg"]), ref, "nets_s_ref")
        close(n["D"](ref["x_src"], ref["y_src"]), ref, "nets_D_real")


def test_stargan_v2_old_file_without_hpf_filter_and_with_fan(tmp_path):
    nets = build_networks(64, 16, 8, 3, 1, 32)
    obj = {k: nets[k].state_dict() for k in ("generator", "mapping_network", "style_encoder")}
    del obj["generator"]["hpf.filter"]
    obj["fan"] = {"conv1.weight": torch.zeros(2, 2)}
    torch.save(obj, tmp_path / "100000_nets_ema.ckpt")
    imp = load_official(tmp_path / "100000_nets_ema.ckpt")
    hp = imp.hyper_parameters
    assert (hp["w_hpf"], hp["resolution"], hp["num_domains"], hp["latent_dim"], hp["max_conv_dim"]) == (
        1.0, 64, 3, 8, 32)
    assert any("no discriminator" in note for note in imp.notes)
    G = imp.networks["G_ema"]
    x, s = torch.rand(1, 3, 64, 64) * 2 - 1, torch.randn(1, 16)
    masks = [torch.rand(1, 1, 64, 64)] * 2
    with torch.no_grad():
        torch.testing.assert_close(G(x, s, masks=masks), nets["generator"](x, s, masks=masks), rtol=0, atol=0)
    ck = to_checkpoint(imp)
    assert torch.equal(ck["state_dict"]["G_ema.hpf.filter"], ck["state_dict"]["G.hpf.filter"])
    # builds the training module (strictly) and exports back to the official layout
    from lightning_gans.modules.stargan_v2 import StarGANv2Module

    module = StarGANv2Module(**ck["hyper_parameters"])
    assert module.model_config() == ck["model_config"]
    module.load_state_dict(ck["state_dict"], strict=True)
    torch.save(ck, tmp_path / "ours.ckpt")
    assert convert_main([str(tmp_path / "ours.ckpt"), str(tmp_path / "off"), "--to", "official-state-dict"]) == 0
    back = torch.load(tmp_path / "off" / "000000_nets_ema.ckpt", weights_only=True)
    assert sorted(back) == ["generator", "mapping_network", "style_encoder"]
    for k, v in obj["mapping_network"].items():
        assert torch.equal(back["mapping_network"][k], v), k


# ------------------------------------------------------------------------------------ mismatches
@needs_parity
@pytest.mark.parametrize("src, kw, msg", [
    ("rosinality/rosinality.pt", dict(kind="stargan_v2"),
     "is a stylegan2 checkpoint (rosinality); asked for a stargan_v2"),
    ("stargan_v2/000000_nets_ema.ckpt", dict(kind="stylegan2"),
     "is a stargan_v2 checkpoint (stargan_v2); asked for a stylegan2"),
    ("rosinality/rosinality.pt", dict(resolution=256),
     "rosinality stylegan2 checkpoint (32 px; g, d, g_ema); asked for resolution 256"),
    ("stargan_v2/000000_nets_ema.ckpt", dict(resolution=64), "(256 px; generator"),
])
def test_mismatched_request_is_one_line_error(src, kw, msg):
    with pytest.raises(CheckpointError) as e:
        load_official(PARITY / src, **kw)
    assert msg in str(e.value) and "\n" not in str(e.value)


def test_architectures_we_do_not_have_are_refused_by_name():
    stylegan3 = PersistentRecord("Generator", {"_modules": {"synthesis": PersistentRecord(
        "SynthesisNetwork", {"_modules": {"input": PersistentRecord("SynthesisInput", {})}})}})
    with pytest.raises(CheckpointError, match="StyleGAN3 \\(alias-free\\) generator"):
        convert._sg2ada(Path("x.pkl"), "sg2ada-pickle", {"G_ema": stylegan3})
    G_kwargs = dict(z_dim=8, w_dim=8, c_dim=0, img_resolution=16, img_channels=3, mapping_kwargs={},
                    synthesis_kwargs=dict(architecture="resnet"))
    with pytest.raises(CheckpointError, match="architecture='resnet'; only 'skip'"):
        sg2ada.hparams_from_official(G_kwargs, None)
    G_kwargs["synthesis_kwargs"] = dict(channel_base=512, num_fp16_res=4, conv_clamp=256)
    D_kwargs = dict(c_dim=0, img_resolution=16, img_channels=3, channel_base=512, conv_clamp=256,
                    epilogue_kwargs=dict(mbstd_group_size=8), block_kwargs=dict(freeze_layers=2))
    hp = sg2ada.hparams_from_official(G_kwargs, D_kwargs)  # fp16 and freeze-D do not change the function
    assert (hp["channel_base"], hp["mbstd_group_size"], hp["mapping_layers"]) == (512, 8, 8)
    # stylegan3's networks_stylegan2.Generator takes the synthesis kwargs at the top level
    G3_kwargs = dict(z_dim=8, w_dim=8, c_dim=0, img_resolution=16, img_channels=3, mapping_kwargs={"num_layers": 2},
                     channel_base=512, channel_max=512, num_fp16_res=4, conv_clamp=256,
                     fused_modconv_default="inference_only")
    assert sg2ada.hparams_from_official(G3_kwargs, D_kwargs) == {**hp, "mapping_layers": 2}
    D_kwargs["architecture"] = "skip"
    with pytest.raises(CheckpointError, match="discriminator uses architecture='skip'"):
        sg2ada.hparams_from_official(G_kwargs, D_kwargs)


def test_unknown_file_is_refused(tmp_path):
    torch.save({"weights": torch.zeros(3)}, tmp_path / "x.pt")
    with pytest.raises(CheckpointError, match=r"has no model_config and is no official format .*keys \[.weights.\]"):
        load_official(tmp_path / "x.pt")
