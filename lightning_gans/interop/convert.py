"""Official StyleGAN / StyleGAN2 (TF and PyTorch) / rosinality / StarGAN v2 checkpoints to ours and back
(what `lightning-gans convert` runs; model_file.describe reads official files through here).

Formats, found from the file itself:
  tf-stylegan        official TF StyleGAN (v1) pickles, e.g. karras2019stylegan-ffhq-1024x1024.pkl (interop.tf_pickle)
  tf-stylegan2       official TF StyleGAN2 pickles, e.g. stylegan2-ffhq-config-f.pkl (nothing in either runs)
  sg2ada-pickle      network-snapshot-*.pkl (read by interop.safe_pickle; nothing in it runs)
  sg2ada-state-dict  official-named state dicts: {'G','D','G_ema'} .pt, a flat .npz, or a folder of G/D/G_ema.npz
  rosinality         rosinality/stylegan2-pytorch .pt ({'g','d','g_ema','args'} or {'g_ema','latent_avg'})
  stargan_v2         clovaai/stargan-v2 {step}_nets.ckpt / {step}_nets_ema.ckpt (the sibling file is read too)
"""

from __future__ import annotations

import argparse
import hashlib
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ..checkpoint import atomic_save, file_sha256, load_weights
from ..errors import CheckpointError
from ..models.stylegan2_discriminator import Discriminator
from . import rosinality as rosi
from . import sg2ada, tf_stylegan, tf_stylegan2
from . import stargan_v2 as sgv2
from .safe_pickle import PersistentRecord, load_network_pickle
from .tf_pickle import is_tf_pickle, load_tf_pickle

KINDS = ("stylegan", "stylegan2", "stargan_v2")


@dataclass
class Imported:
    """Networks read from an official checkpoint, with the hyper-parameters of the matching module."""

    format: str
    kind: str
    source: str
    networks: dict[str, nn.Module]
    hyper_parameters: dict
    notes: list[str] = field(default_factory=list)
    contents: list[str] = field(default_factory=list)  # the networks in the file, by its own names
    truncation: dict | None = None  # the file's own sampling default {psi, cutoff} (TF pickles)

    def describe(self) -> str:
        res = self.hyper_parameters["resolution"]
        return f"a {self.format} {self.kind} checkpoint ({res} px; {', '.join(self.contents or self.networks)})"


def _sha256(path: Path) -> str:
    """sha256 of a file; of a folder of npz files (the official state-dict form), a hash of theirs."""
    if not path.is_dir():
        return file_sha256(path)
    return hashlib.sha256("".join(file_sha256(p) for p in sorted(path.glob("*.npz"))).encode()).hexdigest()


def _torch_load(path: Path) -> Any:
    # rosinality's train.py stores its args (an argparse.Namespace) beside the weights
    return load_weights(path, "", "network-snapshot pickles must end in .pkl", allow=(argparse.Namespace,))


def _npz(path: Path) -> dict[str, torch.Tensor]:
    return {k: torch.from_numpy(v) for k, v in np.load(path, allow_pickle=False).items()}


def _is_sg2ada_g(sd: Any) -> bool:
    return isinstance(sd, dict) and "synthesis.b4.const" in sd


def _is_sg2ada_d(sd: Any) -> bool:
    return isinstance(sd, dict) and "b4.conv.weight" in sd and "final_conv.0.weight" not in sd


def read(path: str | os.PathLike) -> tuple[str, str, Any]:
    """(format, kind, payload) of a checkpoint, without building networks."""
    path = Path(path)
    if path.is_dir():
        sds = {n: _npz(path / f"{n}.npz") for n in ("G", "G_ema", "D") if (path / f"{n}.npz").is_file()}
        if not sds:
            raise CheckpointError(f"{path} is a folder without G.npz / G_ema.npz / D.npz")
        return "sg2ada-state-dict", "stylegan2", sds
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist; check the path")
    if path.suffix == ".pkl":
        with open(path, "rb") as f:
            head = f.read(4096)
        if is_tf_pickle(head):  # a TensorFlow (G, D, Gs) tuple of dnnlib.tflib Networks
            nets = load_tf_pickle(path)
            g = nets.get("Gs") or nets.get("G")
            if g is not None and g.build_func_name == "G_style":
                return "tf-stylegan", "stylegan", nets
            return "tf-stylegan2", "stylegan2", nets
        return "sg2ada-pickle", "stylegan2", load_network_pickle(path)
    if path.suffix == ".npz":
        sd = _npz(path)
        if _is_sg2ada_g(sd):
            return "sg2ada-state-dict", "stylegan2", {"G_ema": sd}
        if _is_sg2ada_d(sd):
            return "sg2ada-state-dict", "stylegan2", {"D": sd}
        raise CheckpointError(f"{path} holds no StyleGAN2-ADA state dict (no synthesis.b4.const / b4.conv.weight)")
    return classify(path, _torch_load(path))


def classify(path: str | os.PathLike, obj: Any) -> tuple[str, str, Any]:
    """(format, kind, payload) of a torch file's loaded contents: ours or an official format.
    Anything else is the one "no model_config, no official format" line."""
    path = Path(path)
    if not isinstance(obj, dict):
        raise CheckpointError(f"checkpoint {path} holds a {type(obj).__name__}, not a checkpoint dict")
    if "state_dict" in obj and "model_config" in obj:
        return "lightning_gans", obj["model_config"].get("kind", "?"), obj
    if rosi.is_generator(obj.get("g_ema")) or rosi.is_generator(obj.get("g")):
        return "rosinality", "stylegan2", obj
    if sgv2.is_stargan_v2(obj):
        return "stargan_v2", "stargan_v2", obj
    if _is_sg2ada_g(obj):
        return "sg2ada-state-dict", "stylegan2", {"G_ema": obj}
    if any(_is_sg2ada_g(obj.get(n)) for n in ("G", "G_ema")):
        sds = {n: obj[n] for n in ("G", "G_ema", "D") if isinstance(obj.get(n), dict)}
        return "sg2ada-state-dict", "stylegan2", sds
    raise CheckpointError(f"checkpoint {path} has no model_config and is no official format this project "
                          f"reads (keys {sorted(map(str, obj))[:6]}): expected one written by `lightning-gans "
                          "train`, a StyleGAN2-ADA pickle/state dict, a rosinality .pt, a StarGAN v2 .ckpt or a TF "
                          "StyleGAN pickle")


def _check_request(path: Path, fmt: str, kind: str, what: str, kind_wanted: str | None) -> None:
    if kind_wanted is not None and kind_wanted != kind:
        raise CheckpointError(f"{path} is {what} ({fmt}); asked for a {kind_wanted} model")


def _sg2ada(path: Path, fmt: str, payload: dict, conv_clamp: float | None = 256,
            mbstd_group_size: int = 4) -> tuple[Imported, dict, dict | None]:
    notes = []
    if fmt == "sg2ada-pickle":
        recs = {n: payload.get(n) for n in ("G", "G_ema", "D")}
        for n, rec in recs.items():
            want = "Discriminator" if n == "D" else "Generator"
            if rec is not None and (not isinstance(rec, PersistentRecord) or rec.class_name != want):
                raise CheckpointError(f"{path}: entry {n} is {rec!r}, expected a recorded {want}")
        g_rec = recs["G_ema"] or recs["G"]
        if g_rec is None:
            raise CheckpointError(f"{path}: the pickle has no G or G_ema, so it is not a network snapshot "
                                  "(network-snapshot-*.pkl holds G, D and G_ema); give one of those")
        if "input" in g_rec.children().get("synthesis", PersistentRecord("?", {})).children():
            raise CheckpointError(f"{path} is a StyleGAN3 (alias-free) generator; "
                                  "only StyleGAN2 networks are implemented")
        hp = sg2ada.hparams_from_official(sg2ada.recorded_kwargs(g_rec, sg2ada.G_POSITIONAL),
                                          sg2ada.recorded_kwargs(recs["D"], sg2ada.D_POSITIONAL) if recs["D"] else None)
        g_sds = {n: recs[n].state_dict() for n in ("G", "G_ema") if recs[n] is not None}
        d_sd = recs["D"].state_dict() if recs["D"] else None
        pipe = payload.get("augment_pipe")
        if isinstance(pipe, PersistentRecord) and "p" in (pipe.state.get("_buffers") or {}):
            notes.append(f"augment_p={float(pipe.state['_buffers']['p']):.6g}")
    else:
        g_sds = {n: payload[n] for n in ("G", "G_ema") if n in payload}
        d_sd = payload.get("D")
        if not g_sds:
            raise CheckpointError(f"{path} holds only a discriminator; a generator (G or G_ema) is needed")
        hp, note = sg2ada.hparams_of_state_dicts(path, next(iter(g_sds.values())), d_sd, conv_clamp, mbstd_group_size)
        notes.append(note)
    hp["name"] = "sg2ada-import"
    contents = [n for n in ("G", "D", "G_ema") if n in g_sds or (n == "D" and d_sd is not None)]
    return Imported(fmt, "stylegan2", str(path), {}, hp, notes, contents), g_sds, d_sd


def load_official(path: str | os.PathLike, kind: str | None = None, resolution: int | None = None,
                  mean_latent: torch.Tensor | None = None, conv_clamp: float | None = 256,
                  mbstd_group_size: int = 4, contents: tuple[str, str, Any] | None = None) -> Imported:
    """Read an official checkpoint into our networks, checking it is the `kind`/`resolution` asked for.

    Networks are named as the training modules name them: StyleGAN2 G, G_ema, D (a missing D is
    freshly initialized, a missing G copies G_ema); StarGAN v2 G, F, E, D, G_ema, F_ema, E_ema.
    mean_latent (rosinality only) becomes w_avg; otherwise latent_avg or a seeded 4096-z mean.
    conv_clamp and mbstd_group_size apply to bare sg2ada state dicts without export_official's kwargs JSON.
    contents: what read(path) returned, when the caller has read the file already.
    """
    path = Path(path)
    fmt, kind_found, payload = read(path) if contents is None else contents
    _check_request(path, fmt, kind_found, f"a {kind_found} checkpoint", kind)
    if fmt == "lightning_gans":
        raise CheckpointError(f"{path} is already a lightning_gans checkpoint; nothing to convert")
    if fmt == "stargan_v2":
        return _stargan(path, payload, resolution)
    if fmt in ("tf-stylegan", "tf-stylegan2"):
        return _tf(path, fmt, payload, resolution)
    if fmt == "rosinality":
        imp, g_sds, d_sd = _rosinality(path, payload)
    else:
        imp, g_sds, d_sd = _sg2ada(path, fmt, payload, conv_clamp, mbstd_group_size)
    if resolution is not None and imp.hyper_parameters["resolution"] != resolution:
        raise CheckpointError(f"{path} is {imp.describe()}; asked for resolution {resolution}")
    hp = imp.hyper_parameters
    if fmt == "rosinality":
        G_kwargs, D_kwargs = sg2ada.module_kwargs(hp)
        own_g = sg2ada.Generator(**G_kwargs).state_dict()
        g_sds = {n: rosi.g_to_ours(sd, own_g, f"{path} {r}") for n, (r, sd) in g_sds.items()}
        if d_sd is not None:
            d_sd = rosi.d_to_ours(d_sd, Discriminator(**D_kwargs).state_dict(), hp["resolution"], f"{path} d")
    imp.networks = sg2ada.build_networks(hp, g_sds, d_sd)
    if d_sd is None:
        imp.notes.append("no discriminator in the file: D is freshly initialized (seed 0)")
    if fmt == "rosinality":
        latent = mean_latent if mean_latent is not None else payload.get("latent_avg")
        for n in ("G", "G_ema"):
            mapping = imp.networks[n].mapping
            w = latent if latent is not None else rosi.mean_latent(mapping)
            mapping.w_avg.copy_(torch.as_tensor(w).reshape(-1))
        if latent is None:
            imp.notes.append("w_avg = mean of 4096 seeded mapped z (the file stores no latent average)")
    return imp


def _tf(path: Path, fmt: str, nets: dict, resolution: int | None) -> Imported:
    """Official TF StyleGAN / StyleGAN2 (G, D, Gs): G_ema = Gs; a missing G copies Gs, a missing D is fresh."""
    if not ("Gs" in nets or "G" in nets):
        raise CheckpointError(f"{path}: the pickle has no generator (G or Gs)")
    v1 = fmt == "tf-stylegan"
    hp, trunc, g_sds, d_sd = (tf_stylegan if v1 else tf_stylegan2).convert(nets, str(path))
    contents = [n for n in ("G", "D", "Gs") if n in nets]
    cutoff = "all ws" if trunc["cutoff"] is None else f"ws 0..{int(trunc['cutoff']) - 1}"
    notes = [f"the official default truncation is psi {trunc['psi']} on {cutoff}; `--truncation {trunc['psi']}` "
             "applies it (the cutoff is the checkpoint's default)"]
    if v1:
        notes.append(f"fused_scale={hp['fused_scale']!r}; fine-tuning starts at {hp['resolution']} px "
                     "(model.start_resolution; no progressive phase below it)")
    imp = Imported(fmt, "stylegan" if v1 else "stylegan2", str(path), {}, hp, notes, contents)
    imp.truncation = trunc
    if resolution is not None and hp["resolution"] != resolution:
        raise CheckpointError(f"{path} is {imp.describe()}; asked for resolution {resolution}")
    imp.networks = (tf_stylegan if v1 else sg2ada).build_networks(hp, g_sds, d_sd)
    if d_sd is None:
        imp.notes.append("no discriminator in the file: D is freshly initialized (seed 0)")
    return imp


def _rosinality(path: Path, obj: dict) -> tuple[Imported, dict, dict | None]:
    g_sds = {n: (r, obj[r]) for n, r in (("G", "g"), ("G_ema", "g_ema")) if isinstance(obj.get(r), dict)}
    hp = rosi.hparams(next(iter(g_sds.values()))[1], obj.get("d"), name="rosinality-import")
    notes = [f"ada_aug_p={float(obj['ada_aug_p']):.6g}"] if "ada_aug_p" in obj else []
    contents = [k for k in obj if k in ("g", "d", "g_ema")]
    return Imported("rosinality", "stylegan2", str(path), {}, hp, notes, contents), g_sds, obj.get("d")


def _stargan(path: Path, obj: dict, resolution: int | None) -> Imported:
    files = {"nets": path}
    m = re.fullmatch(r"(.*)_nets(_ema)?\.ckpt", path.name)
    if m:  # CheckpointIO writes the two files side by side; read both
        files = {tag: path.with_name(f"{m.group(1)}_{tag}.ckpt") for tag in ("nets", "nets_ema")}
    loaded: dict[str, dict[str, nn.Module]] = {"nets": {}, "nets_ema": {}}
    kw = None
    for tag, p in files.items():
        if p.is_file():
            loaded[tag], kw = sgv2.load_nets(obj if p == path else _torch_load(p), str(p), kw)
    hp = sgv2.module_hparams(kw)
    contents = [f"{n}_ema" if tag == "nets_ema" else n for tag, nets in loaded.items() for n in nets]
    imp = Imported("stargan_v2", "stargan_v2", str(path), {}, hp, [], contents)
    if resolution is not None and hp["resolution"] != resolution:
        raise CheckpointError(f"{path} is {imp.describe()}; asked for resolution {resolution}")
    imp.networks, imp.notes = sgv2.module_networks(loaded["nets"], loaded["nets_ema"], kw)
    return imp


def to_checkpoint(imp: Imported) -> dict:
    """Our checkpoint dict (safe_load-able): state_dict, hyper_parameters, model_config, converted_from."""
    hp = imp.hyper_parameters
    sd: dict[str, torch.Tensor] = {}
    if imp.kind == "stylegan2":
        for n in ("G", "D", "G_ema"):
            sd.update({f"{n}.{k}": v.detach().clone() for k, v in imp.networks[n].state_dict().items()})
        sd["pl_mean"] = torch.zeros([])
        sd["nimg"] = torch.zeros([], dtype=torch.int64)
        G_kwargs, D_kwargs = sg2ada.module_kwargs(hp)
        config = {"kind": "stylegan2", "name": hp["name"], "G_kwargs": G_kwargs, "D_kwargs": D_kwargs}
    elif imp.kind == "stylegan":
        for n in ("G", "D", "G_ema"):
            sd.update({f"{n}.{k}": v.detach().clone() for k, v in imp.networks[n].state_dict().items()})
        # StyleGANModule's progress buffers: grown to the full resolution, no fade-in.
        sd["nimg"] = torch.zeros([], dtype=torch.int64)
        sd["phase"] = torch.zeros([], dtype=torch.int64)
        sd["resolution"] = torch.tensor(hp["resolution"], dtype=torch.int64)
        sd["alpha"] = torch.ones([], dtype=torch.float64)
        G_kwargs, D_kwargs = tf_stylegan.module_kwargs(hp)
        config = {"kind": "stylegan", "name": hp["name"], "G_kwargs": G_kwargs, "D_kwargs": D_kwargs}
    else:
        for n, net in imp.networks.items():
            sd.update({f"{n}.{k}": v.detach().clone() for k, v in net.state_dict().items()})
        config = {"kind": "stargan_v2", "name": hp["name"], "net_kwargs": sgv2.net_kwargs(hp)}
    if imp.truncation is not None:
        config["truncation"] = dict(imp.truncation)  # the file's sampling default {psi, cutoff}
    src = Path(imp.source)
    return {"state_dict": sd, "hyper_parameters": dict(hp), "model_config": config,
            "converted_from": {"format": imp.format, "path": str(src), "sha256": _sha256(src),
                               "notes": list(imp.notes)}}


def _sub(sd: dict, prefix: str) -> dict:
    return {k[len(prefix):]: v for k, v in sd.items() if k.startswith(prefix)}


def export_official(ckpt: dict, out: str | os.PathLike, flavor: str = "sg2ada") -> list[Path]:
    """Write our checkpoint's networks under official names; returns the files written.

    stylegan2 + sg2ada: OUT.pt = {'G','D','G_ema'} state dicts, or a folder of G/D/G_ema.npz; the init
    kwargs an official pickle holds (num_fp16_res, conv_clamp, ...) go to OUT.kwargs.json / OUT/kwargs.json.
    stylegan2 + rosinality: OUT.pt = {'g','d','g_ema','latent_avg'}. stargan_v2: a folder with
    000000_nets.ckpt / 000000_nets_ema.ckpt as CheckpointIO writes them.
    """
    out = Path(out)
    kind = ckpt["model_config"]["kind"]
    sd = ckpt["state_dict"]
    if kind == "stargan_v2":
        files = sgv2.official_from_module(sd)
        return [atomic_save(nets, out / f"000000_{tag}.ckpt") for tag, nets in files.items() if nets]
    if kind != "stylegan2":
        raise CheckpointError(f"cannot export a {kind} checkpoint to an official format")
    nets = {n: _sub(sd, f"{n}.") for n in ("G", "D", "G_ema")}
    hp = ckpt["hyper_parameters"]
    if flavor == "rosinality":
        if hp.get("c_dim", 0):
            raise CheckpointError("rosinality's StyleGAN2 has no class conditioning; this model has c_dim > 0")
        R, n_mlp = hp["resolution"], hp["mapping_layers"]
        obj = {"g": rosi.g_from_ours(nets["G"], n_mlp, R), "d": rosi.d_from_ours(nets["D"], R),
               "g_ema": rosi.g_from_ours(nets["G_ema"], n_mlp, R), "latent_avg": nets["G_ema"]["mapping.w_avg"].clone()}
        return [atomic_save(obj, out)]
    if flavor != "sg2ada":
        raise CheckpointError(f"unknown official flavor {flavor!r}; use sg2ada or rosinality")
    mods = {n: _Holder(v) for n, v in nets.items()}
    sds = sg2ada.export_state_dicts(mods)
    if out.suffix in (".pt", ".pth"):
        written = [atomic_save(sds, out)]
    else:
        out.mkdir(parents=True, exist_ok=True)
        for n, s in sds.items():
            np.savez_compressed(out / f"{n}.npz", **{k: v.numpy() for k, v in s.items()})
        written = [out / f"{n}.npz" for n in sds]
    return [*written, sg2ada.write_kwargs_json(hp, sg2ada.kwargs_json_path(out))]


class _Holder:
    """A state dict that answers state_dict() (what export_state_dicts reads)."""

    def __init__(self, sd: dict):
        self._sd = sd

    def state_dict(self) -> dict:
        return self._sd
