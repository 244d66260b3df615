"""Official-format exports keep the precision settings: `convert --to official-state-dict` writes the
init kwargs an official pickle would hold (num_fp16_res, conv_clamp, mbstd, mapping settings) in a
JSON beside the state dicts, and importing the export reads it back; without the JSON the import
takes the official training defaults, as before."""

from __future__ import annotations

import json

import pytest
import torch

from lightning_gans.checkpoint import safe_load
from lightning_gans.commands.convert import main as convert_main
from lightning_gans.errors import CheckpointError
from lightning_gans.interop import load_official, sg2ada
from lightning_gans.interop.convert import to_checkpoint

TINY = dict(resolution=16, z_dim=32, w_dim=32, mapping_layers=2, channel_base=256, channel_max=32,
            mapping_lr_multiplier=0.02, w_avg_beta=0.99)


def _ours(tmp_path, **hp):
    """A tiny StyleGAN2 checkpoint as training writes one (module hparams and model_config)."""
    from lightning_gans.modules.stylegan2 import StyleGAN2Module

    torch.manual_seed(0)
    module = StyleGAN2Module(**TINY, **hp)
    ckpt = {"state_dict": module.state_dict(), "hyper_parameters": dict(module.hparams),
            "model_config": module.model_config()}
    path = tmp_path / "ours.ckpt"
    torch.save(ckpt, path)
    return path, ckpt


PRECISION = [dict(num_fp16_res=2, conv_clamp=256, mbstd_group_size=2),
             dict(num_fp16_res=0, conv_clamp=None, mbstd_group_size=4)]


@pytest.mark.parametrize("precision", PRECISION, ids=lambda p: f"fp16res{p['num_fp16_res']}")
@pytest.mark.parametrize("out_name,json_name", [("official.pt", "official.kwargs.json"), ("npz", "npz/kwargs.json")])
def test_export_import_round_trips_precision(tmp_path, precision, out_name, json_name):
    src, ckpt = _ours(tmp_path, **precision)
    out = tmp_path / out_name
    assert convert_main([str(src), str(out), "--to", "official-state-dict"]) == 0
    rec = json.loads((tmp_path / json_name).read_text())
    assert rec["G"]["class_name"] == "training.networks.Generator" and rec["G_ema"] == rec["G"]
    g, d = rec["G"]["init_kwargs"], rec["D"]["init_kwargs"]
    for kw in (g["synthesis_kwargs"], d):
        assert (kw["num_fp16_res"], kw["conv_clamp"]) == (precision["num_fp16_res"], precision["conv_clamp"])
    assert d["epilogue_kwargs"]["mbstd_group_size"] == precision["mbstd_group_size"]
    assert g["mapping_kwargs"] == dict(num_layers=2, lr_multiplier=0.02, w_avg_beta=0.99)

    again = tmp_path / "again.ckpt"
    assert convert_main([str(out), str(again)]) == 0
    back = safe_load(again)
    hp, cfg = back["hyper_parameters"], back["model_config"]
    for key in ("num_fp16_res", "conv_clamp", "mbstd_group_size"):
        assert hp[key] == precision[key], key
    for key in (*TINY, "img_channels", "c_dim", "mbstd_num_channels"):
        assert hp[key] == ckpt["hyper_parameters"][key], key
    for nets in ("G_kwargs", "D_kwargs"):
        assert cfg[nets]["num_fp16_res"] == precision["num_fp16_res"], nets
        assert cfg[nets]["conv_clamp"] == precision["conv_clamp"], nets
    assert cfg["D_kwargs"]["mbstd_group_size"] == precision["mbstd_group_size"]
    assert any(json_name.split("/")[-1] in note for note in back["converted_from"]["notes"])
    for k, v in ckpt["state_dict"].items():
        if k.split(".")[0] in ("G", "D", "G_ema"):
            assert torch.equal(back["state_dict"][k], v), k


def test_import_without_the_json_takes_the_official_defaults(tmp_path):
    src, _ = _ours(tmp_path, num_fp16_res=2, conv_clamp=None, mbstd_group_size=2)
    out = tmp_path / "official.pt"
    assert convert_main([str(src), str(out), "--to", "official-state-dict"]) == 0
    (tmp_path / "official.kwargs.json").unlink()
    hp = load_official(out).hyper_parameters
    assert (hp["num_fp16_res"], hp["conv_clamp"], hp["mbstd_group_size"]) == (4, 256, 4)
    hp = load_official(out, conv_clamp=None).hyper_parameters  # as train.py pairs them
    assert (hp["num_fp16_res"], hp["conv_clamp"]) == (0, None)


def test_unreadable_json_is_one_line_error(tmp_path):
    src, _ = _ours(tmp_path)
    out = tmp_path / "official.pt"
    assert convert_main([str(src), str(out), "--to", "official-state-dict"]) == 0
    for text, match in (("{not json", "not a readable init-kwargs record"), ('{"D": {"init_kwargs": {}}}', "no G")):
        (tmp_path / "official.kwargs.json").write_text(text)
        with pytest.raises(CheckpointError, match=match) as e:
            load_official(out)
        assert "\n" not in str(e.value)


def test_kwargs_json_path_beside_files_and_inside_folders(tmp_path):
    (tmp_path / "folder").mkdir()
    assert sg2ada.kwargs_json_path(tmp_path / "folder") == tmp_path / "folder" / "kwargs.json"
    assert sg2ada.kwargs_json_path(tmp_path / "G_ema.npz") == tmp_path / "G_ema.kwargs.json"
    assert sg2ada.kwargs_json_path(tmp_path / "net.pt") == tmp_path / "net.kwargs.json"


@pytest.mark.parametrize("keep_json", [True, False], ids=["json", "no-json"])
def test_orig_discriminator_round_trips(tmp_path, keep_json):
    """The cifar preset's 'orig' D (no skip convs) comes back as 'orig' from an export, from the
    kwargs JSON or, without it, from the missing skip tensors, and computes what it did."""
    src, ckpt = _ours(tmp_path, d_architecture="orig", conv_clamp=None, num_fp16_res=0)
    out = tmp_path / "official.pt"
    assert convert_main([str(src), str(out), "--to", "official-state-dict"]) == 0
    assert json.loads((tmp_path / "official.kwargs.json").read_text())["D"]["init_kwargs"]["architecture"] == "orig"
    if not keep_json:
        (tmp_path / "official.kwargs.json").unlink()
    imp = load_official(out, conv_clamp=None)  # without the JSON: the conv_clamp the run had
    back = to_checkpoint(imp)
    assert back["hyper_parameters"]["d_architecture"] == "orig"
    assert back["model_config"]["D_kwargs"]["architecture"] == "orig"
    from lightning_gans.models.stylegan2_discriminator import Discriminator

    D0, D1 = Discriminator(**ckpt["model_config"]["D_kwargs"]), imp.networks["D"]
    D0.load_state_dict({k[2:]: v for k, v in ckpt["state_dict"].items() if k.startswith("D.")})
    assert not any(".skip." in k for k in D1.state_dict())
    x = torch.randn(4, 3, TINY["resolution"], TINY["resolution"], generator=torch.Generator().manual_seed(1))
    assert torch.equal(D0(x, None), D1(x, None))


def test_official_d_architectures():
    """An official pickle's D kwargs: 'resnet' and 'orig' import, 'skip' is refused in one line."""
    G = dict(z_dim=32, w_dim=32, img_resolution=16, mapping_kwargs=dict(num_layers=2),
             synthesis_kwargs=dict(channel_base=256, channel_max=32))
    D = dict(img_resolution=16, channel_base=256, channel_max=32)
    assert "d_architecture" not in sg2ada.hparams_from_official(G, {**D, "architecture": "resnet"})
    hp = sg2ada.hparams_from_official(G, {**D, "architecture": "orig"})
    assert hp["d_architecture"] == "orig" and sg2ada.module_kwargs(hp)[1]["architecture"] == "orig"
    assert sg2ada.hparams_from_official(*(lambda k: (k["G"], k["D"]))(sg2ada.official_kwargs(hp))) == hp
    with pytest.raises(CheckpointError, match="architecture='skip'"):
        sg2ada.hparams_from_official(G, {**D, "architecture": "skip"})
