"""StyleGAN2-ADA networks (NVlabs stylegan2-ada-pytorch, and stylegan3's networks_stylegan2) to ours and back.

Our models/stylegan2.py uses the official module names, so weights move by name; what needs
work is the architecture: from the recorded init kwargs of a network pickle, or read off the
tensor shapes of a bare state dict. Everything is expressed as StyleGAN2Module hyper-parameters
so the result can be trained further (`init_from=`).
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import torch

from .. import __version__
from ..errors import CheckpointError
from ..models.stylegan2 import Generator
from ..models.stylegan2_discriminator import D_ARCHITECTURES, Discriminator
from .safe_pickle import PersistentRecord

G_POSITIONAL = ("z_dim", "c_dim", "w_dim", "img_resolution", "img_channels", "mapping_kwargs", "synthesis_kwargs")
D_POSITIONAL = (
    "c_dim", "img_resolution", "img_channels", "architecture", "channel_base", "channel_max", "num_fp16_res",
    "conv_clamp", "cmap_dim", "block_kwargs", "mapping_kwargs", "epilogue_kwargs",
)
# Memory-format / training-only switches: they change speed, not the function. (num_fp16_res,
# the mixed precision, changes the compute dtype only too, but it is kept: hp['num_fp16_res'].)
SPEED_ONLY = {"fp16_channels_last", "channels_last", "fused_modconv_default", "freeze_layers"}
DEFAULT_FILTER = [1, 3, 3, 1]


def _plain(x: Any) -> Any:
    """EasyDict placeholders and tuples to plain dicts/lists (JSON-like kwargs)."""
    if isinstance(x, dict):
        return {k: _plain(v) for k, v in x.items()}
    if isinstance(x, list | tuple):
        return [_plain(v) for v in x]
    return x


def recorded_kwargs(rec: PersistentRecord, positional: tuple[str, ...]) -> dict:
    """Constructor arguments of a recorded network, positional ones named."""
    args = rec.init_args
    if len(args) > len(positional):
        raise CheckpointError(f"{rec.class_name} was built with {len(args)} positional arguments; "
                              f"expected at most {len(positional)}")
    return _plain({**dict(zip(positional, args)), **rec.init_kwargs})


def _take(d: dict, what: str, allowed: dict[str, Any]) -> dict:
    """Pop the allowed keys of `d` (with defaults); anything left is an architecture we do not have."""
    out = {k: d.pop(k, default) for k, default in allowed.items()}
    for k in SPEED_ONLY:
        d.pop(k, None)
    if d:
        raise CheckpointError(f"{what} has settings this project's StyleGAN2 does not implement: {sorted(d)}")
    return out


def hparams_from_official(G_kwargs: dict, D_kwargs: dict | None, name: str = "sg2ada-import") -> dict:
    """StyleGAN2Module hyper-parameters equivalent to official Generator/Discriminator kwargs."""
    g = dict(G_kwargs)
    mk = _take(dict(g.pop("mapping_kwargs", None) or {}), "G mapping_kwargs", {
        "num_layers": 8, "lr_multiplier": 0.01, "w_avg_beta": 0.995, "activation": "lrelu",
        "embed_features": None, "layer_features": None})
    top = {k: g.pop(k, default) for k, default in
           {"z_dim": None, "c_dim": 0, "w_dim": None, "img_resolution": None, "img_channels": 3}.items()}
    # stylegan2-ada passes synthesis_kwargs={...}; stylegan3's networks_stylegan2 takes them as **kwargs.
    sk = _take({**dict(g.pop("synthesis_kwargs", None) or {}), **g}, "G synthesis kwargs", {
        "channel_base": 32768, "channel_max": 512, "conv_clamp": None, "architecture": "skip",
        "resample_filter": DEFAULT_FILTER, "use_noise": True, "num_fp16_res": 0})
    w_dim = top["w_dim"]
    checks = {"architecture": (sk["architecture"], "skip"), "mapping activation": (mk["activation"], "lrelu"),
              "resample_filter": (list(sk["resample_filter"]), DEFAULT_FILTER), "use_noise": (sk["use_noise"], True),
              "embed_features": (mk["embed_features"] or w_dim, w_dim),
              "layer_features": (mk["layer_features"] or w_dim, w_dim)}
    for what, (got, want) in checks.items():
        if got != want:
            raise CheckpointError(f"the generator uses {what}={got!r}; only {want!r} is implemented here")
    hp = dict(
        resolution=top["img_resolution"], z_dim=top["z_dim"], w_dim=w_dim, c_dim=top["c_dim"],
        img_channels=top["img_channels"], mapping_layers=mk["num_layers"], mapping_lr_multiplier=mk["lr_multiplier"],
        w_avg_beta=mk["w_avg_beta"], channel_base=sk["channel_base"], channel_max=sk["channel_max"],
        conv_clamp=sk["conv_clamp"], num_fp16_res=int(sk["num_fp16_res"]), mbstd_group_size=4,
        mbstd_num_channels=1, name=name,
    )
    if D_kwargs is not None:
        d = dict(D_kwargs)
        bk = _take(dict(d.pop("block_kwargs", None) or {}), "D block_kwargs",
                   {"activation": "lrelu", "resample_filter": DEFAULT_FILTER})
        ek = _take(dict(d.pop("epilogue_kwargs", None) or {}), "D epilogue_kwargs",
                   {"mbstd_group_size": 4, "mbstd_num_channels": 1, "activation": "lrelu"})
        dm = _take(dict(d.pop("mapping_kwargs", None) or {}), "D mapping_kwargs", {})
        dt = _take(d, "D kwargs", {"c_dim": 0, "img_resolution": None, "img_channels": 3, "architecture": "resnet",
                                   "channel_base": 32768, "channel_max": 512, "conv_clamp": None, "cmap_dim": None,
                                   "num_fp16_res": 0})
        # One num_fp16_res drives G and D here (the official train.py sets both alike); the
        # generator's wins where a pickle differs: only the compute dtype of D's blocks changes.
        del dm
        if dt["architecture"] not in D_ARCHITECTURES:
            raise CheckpointError(f"the discriminator uses architecture={dt['architecture']!r}; here it must be "
                                  f"one of {list(D_ARCHITECTURES)} (the official 'skip' D is not implemented)")
        checks = {"activation": (bk["activation"], "lrelu"),
                  "resample_filter": (list(bk["resample_filter"]), DEFAULT_FILTER),
                  "epilogue activation": (ek["activation"], "lrelu"),
                  "img_resolution": (dt["img_resolution"], hp["resolution"]), "c_dim": (dt["c_dim"], hp["c_dim"]),
                  "img_channels": (dt["img_channels"], hp["img_channels"]),
                  "channel_base": (dt["channel_base"], hp["channel_base"]),
                  "channel_max": (dt["channel_max"], hp["channel_max"]),
                  "conv_clamp": (dt["conv_clamp"], hp["conv_clamp"])}
        if dt["cmap_dim"] is not None:
            checks["cmap_dim"] = (dt["cmap_dim"], min(hp["channel_base"] // 4, hp["channel_max"]))
        for what, (got, want) in checks.items():
            if got != want:
                raise CheckpointError(f"the discriminator uses {what}={got!r}; here it must be {want!r} "
                                      "(same as the generator / the implemented architecture)")
        hp.update(mbstd_group_size=ek["mbstd_group_size"], mbstd_num_channels=ek["mbstd_num_channels"])
        if dt["architecture"] != "resnet":  # StyleGAN2Module's d_architecture (the cifar preset's 'orig')
            hp["d_architecture"] = dt["architecture"]
    return hp


def module_kwargs(hp: dict) -> tuple[dict, dict]:
    """(G_kwargs, D_kwargs) exactly as StyleGAN2Module builds them from its hyper-parameters."""
    precision = dict(num_fp16_res=hp.get("num_fp16_res", 0), fp16_on_cpu=hp.get("fp16_on_cpu", False))
    G_kwargs = dict(
        z_dim=hp["z_dim"], c_dim=hp["c_dim"], w_dim=hp["w_dim"], img_resolution=hp["resolution"],
        img_channels=hp["img_channels"],
        mapping_kwargs=dict(num_layers=hp["mapping_layers"], lr_multiplier=hp["mapping_lr_multiplier"],
                            w_avg_beta=hp["w_avg_beta"]),
        channel_base=hp["channel_base"], channel_max=hp["channel_max"], conv_clamp=hp["conv_clamp"],
        **precision,
    )
    D_kwargs = dict(
        c_dim=hp["c_dim"], img_resolution=hp["resolution"], img_channels=hp["img_channels"],
        channel_base=hp["channel_base"], channel_max=hp["channel_max"], conv_clamp=hp["conv_clamp"],
        mbstd_group_size=hp["mbstd_group_size"], mbstd_num_channels=hp["mbstd_num_channels"],
        **precision,
    )
    if hp.get("d_architecture", "resnet") != "resnet":  # as StyleGAN2Module adds it
        D_kwargs["architecture"] = hp["d_architecture"]
    return G_kwargs, D_kwargs


def official_kwargs(hp: dict) -> dict[str, dict]:
    """The official Generator / Discriminator init kwargs of our hyper-parameters, precision
    included (num_fp16_res, conv_clamp): what an export records beside the state dicts so that
    hparams_from_official(...) of it gives hp back."""
    common = dict(channel_base=hp["channel_base"], channel_max=hp["channel_max"],
                  num_fp16_res=hp.get("num_fp16_res", 0), conv_clamp=hp["conv_clamp"])
    G = dict(z_dim=hp["z_dim"], c_dim=hp["c_dim"], w_dim=hp["w_dim"], img_resolution=hp["resolution"],
             img_channels=hp["img_channels"],
             mapping_kwargs=dict(num_layers=hp["mapping_layers"], lr_multiplier=hp["mapping_lr_multiplier"],
                                 w_avg_beta=hp["w_avg_beta"]),
             synthesis_kwargs=dict(common))
    D = dict(c_dim=hp["c_dim"], img_resolution=hp["resolution"], img_channels=hp["img_channels"],
             architecture=hp.get("d_architecture", "resnet"), **common, block_kwargs={}, mapping_kwargs={},
             epilogue_kwargs=dict(mbstd_group_size=hp["mbstd_group_size"],
                                  mbstd_num_channels=hp["mbstd_num_channels"]))
    return {"G": G, "D": D}


def infer_channel_base_max(channels: dict[int, int], what: str) -> tuple[int, int]:
    """(channel_base, channel_max) with min(base // res, max) == channels[res] for every res."""
    cmax = max(channels.values())
    candidates = sorted({c * r for r, c in channels.items()} | {cmax * max(channels)})
    for base in candidates:
        if all(min(base // r, cmax) == c for r, c in channels.items()):
            return base, cmax
    raise CheckpointError(f"{what}: channels per resolution {dict(sorted(channels.items()))} do not follow "
                          "min(channel_base // res, channel_max); this architecture is not implemented here")


def hparams_from_state_dicts(G_sd: dict, D_sd: dict | None, conv_clamp: float | None = 256,
                             mbstd_group_size: int = 4, name: str = "sg2ada-import",
                             num_fp16_res: int | None = None) -> dict:
    """Hyper-parameters read off official-named tensors; conv_clamp, num_fp16_res and the mbstd
    group size are not stored in tensors, so they take the official training defaults unless
    given (num_fp16_res: 4 with a conv_clamp, 0 without, as train.py pairs them)."""
    if num_fp16_res is None:
        num_fp16_res = 4 if conv_clamp is not None else 0
    fcs = sorted(int(m.group(1)) for k in G_sd if (m := re.fullmatch(r"mapping\.fc(\d+)\.weight", k)))
    blocks = sorted(int(m.group(1)) for k in G_sd if (m := re.fullmatch(r"synthesis\.b(\d+)\.torgb\.weight", k)))
    if not fcs or not blocks:
        raise CheckpointError("not a StyleGAN2-ADA generator state dict (no mapping.fc*/synthesis.b*.torgb keys)")
    c_dim = G_sd["mapping.embed.weight"].shape[1] if "mapping.embed.weight" in G_sd else 0
    embed = G_sd["mapping.embed.weight"].shape[0] if c_dim else 0
    channels = {r: G_sd[f"synthesis.b{r}.torgb.weight"].shape[1] for r in blocks}
    base, cmax = infer_channel_base_max(channels, "generator")
    hp = dict(
        resolution=max(blocks), z_dim=G_sd["mapping.fc0.weight"].shape[1] - embed,
        w_dim=G_sd[f"mapping.fc{fcs[-1]}.weight"].shape[0], c_dim=c_dim,
        img_channels=G_sd[f"synthesis.b{max(blocks)}.torgb.weight"].shape[0], mapping_layers=len(fcs),
        mapping_lr_multiplier=0.01, w_avg_beta=0.995, channel_base=base, channel_max=cmax, conv_clamp=conv_clamp,
        num_fp16_res=num_fp16_res, mbstd_group_size=mbstd_group_size, mbstd_num_channels=1, name=name,
    )
    if D_sd is not None:
        if "b4.conv.weight" not in D_sd:
            raise CheckpointError("not a StyleGAN2-ADA discriminator state dict (no b4.conv.weight)")
        hp["mbstd_num_channels"] = D_sd["b4.conv.weight"].shape[1] - D_sd["b4.conv.weight"].shape[0]
        # 'resnet' blocks hold a 1x1 skip conv, 'orig' (the cifar config's) none; 'skip' has a
        # fromrgb in every block, which is not implemented here.
        if any(re.fullmatch(r"b\d+\.fromrgb\.weight", k) for k in D_sd if k != f"b{hp['resolution']}.fromrgb.weight"):
            raise CheckpointError("the discriminator has a fromrgb in more than its first block (the official "
                                  "'skip' D); only 'resnet' and 'orig' are implemented")
        if hp["resolution"] > 4 and not any(re.fullmatch(r"b\d+\.skip\.weight", k) for k in D_sd):
            hp["d_architecture"] = "orig"
    return hp


def is_official_block_filter(key: str) -> bool:
    # The official DiscriminatorBlock keeps its own copy of the resample filter (b32.resample_filter)
    # that its layers never read; our blocks do not have it.
    return re.fullmatch(r"b\d+\.resample_filter", key) is not None


def build_networks(hp: dict, G_sds: dict[str, dict], D_sd: dict | None, seed: int = 0) -> dict[str, torch.nn.Module]:
    """Our G/G_ema/D from hyper-parameters, loaded strictly from official-named state dicts.

    G_sds maps 'G' and/or 'G_ema' to a state dict; a missing one is a copy of the other. A missing
    D is freshly initialized from `seed` (fine-tuning then starts with an untrained D).
    """
    G_kwargs, D_kwargs = module_kwargs(hp)
    if D_sd is not None:
        D_sd = {k: v for k, v in D_sd.items() if not is_official_block_filter(k)}
    return load_networks(lambda: Generator(**G_kwargs), lambda: Discriminator(**D_kwargs), G_sds, D_sd, seed)


def load_networks(make_G, make_D, G_sds: dict[str, dict], D_sd: dict | None,
                  seed: int = 0) -> dict[str, torch.nn.Module]:
    """G / G_ema / D built by make_G / make_D and loaded strictly, in eval mode without grads: a
    missing G or G_ema is a copy of the other, a missing D is freshly initialized from `seed`."""
    nets: dict[str, torch.nn.Module] = {}
    for name in ("G", "G_ema"):
        sd = G_sds.get(name, G_sds.get("G_ema" if name == "G" else "G"))
        net = make_G()
        load_strict(net, sd, f"generator {name}")
        nets[name] = net.eval().requires_grad_(False)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        D = make_D()
    if D_sd is not None:
        load_strict(D, D_sd, "discriminator")
    nets["D"] = D.eval().requires_grad_(False)
    return nets


def load_strict(net: torch.nn.Module, sd: dict[str, torch.Tensor], what: str) -> None:
    """load_state_dict(strict) with a one-line error naming what does not fit."""
    own = net.state_dict()
    missing = [k for k in own if k not in sd]
    unexpected = [k for k in sd if k not in own]
    shapes = [f"{k} {tuple(sd[k].shape)} vs {tuple(v.shape)}"
              for k, v in own.items() if k in sd and sd[k].shape != v.shape]
    if missing or unexpected or shapes:
        raise CheckpointError(f"{what}: the checkpoint does not fit the architecture it describes (missing "
                              f"{missing[:4]}, unexpected {unexpected[:4]}, shape mismatches {shapes[:3]})")
    net.load_state_dict({k: v.detach().clone().to(own[k].dtype) for k, v in sd.items()}, strict=True)


def export_state_dicts(nets: dict[str, torch.nn.Module]) -> dict[str, dict[str, torch.Tensor]]:
    """Official-named state dicts {'G', 'D', 'G_ema'} (D gains the block-level filter copies back)."""
    out = {name: {k: v.detach().cpu().clone() for k, v in nets[name].state_dict().items()} for name in ("G", "G_ema")}
    d_sd: dict[str, torch.Tensor] = {}
    seen: set[str] = set()
    for k, v in nets["D"].state_dict().items():
        block = k.split(".")[0]
        if block not in seen and block != "b4" and f"{block}.conv1.resample_filter" in nets["D"].state_dict():
            d_sd[f"{block}.resample_filter"] = nets["D"].state_dict()[f"{block}.conv1.resample_filter"].clone()
        seen.add(block)
        d_sd[k] = v.detach().cpu().clone()
    out["D"] = d_sd
    return out


# An exported state dict keeps what the official pickle holds in its classes' init kwargs
# (num_fp16_res, conv_clamp, mbstd, mapping settings) in a JSON beside it, in the pickle's own
# record form: {"G"|"D"|"G_ema": {"class_name", "init_args", "init_kwargs"}}.
_CLASSES = {"G": "training.networks.Generator", "G_ema": "training.networks.Generator",
            "D": "training.networks.Discriminator"}


def kwargs_json_path(path: Path) -> Path:
    """Where the init kwargs of an official state dict live: DIR/kwargs.json for a folder of
    G/D/G_ema.npz (as the parity fixtures), NAME.kwargs.json beside a NAME.pt / NAME.npz file."""
    return path / "kwargs.json" if path.is_dir() else path.with_suffix(".kwargs.json")


def write_kwargs_json(hp: dict, path: Path) -> Path:
    """Record official_kwargs(hp) for G, D and G_ema at `path`."""
    kw = official_kwargs(hp)
    rec = {n: {"class_name": c, "init_args": [], "init_kwargs": kw[n[0]]} for n, c in _CLASSES.items()}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"written_by": f"lightning_gans {__version__}", **rec}, indent=1) + "\n")
    return path


def read_kwargs_json(path: Path) -> tuple[dict, dict | None]:
    """(G init kwargs (G_ema's, else G's), D init kwargs or None) of a kwargs JSON."""
    try:
        obj = json.loads(path.read_text())
        recs = {n: obj[n]["init_kwargs"] for n in _CLASSES if isinstance(obj.get(n), dict)}
    except (OSError, ValueError, TypeError, KeyError) as e:
        raise CheckpointError(f"{path}: not a readable init-kwargs record ({type(e).__name__}: {e})") from None
    g = recs.get("G_ema", recs.get("G"))
    if not isinstance(g, dict) or not isinstance(recs.get("D", {}), dict):
        raise CheckpointError(f"{path}: no G / G_ema init_kwargs object; delete the file to use the defaults")
    return g, recs.get("D")


def hparams_of_state_dicts(path: Path, G_sd: dict, D_sd: dict | None, conv_clamp: float | None = 256,
                           mbstd_group_size: int = 4) -> tuple[dict, str]:
    """(hyper-parameters, a note saying where they came from) of a bare state dict at `path`: its
    kwargs JSON when there is one (the record export_official writes), else hparams_from_state_dicts
    with the official training defaults for what tensors do not store."""
    kw_json = kwargs_json_path(path)
    if kw_json.is_file():
        hp = hparams_from_official(*read_kwargs_json(kw_json))
        return hp, (f"num_fp16_res={hp['num_fp16_res']}, conv_clamp={hp['conv_clamp']} and "
                    f"mbstd_group_size={hp['mbstd_group_size']} read from {kw_json.name}")
    hp = hparams_from_state_dicts(G_sd, D_sd, conv_clamp, mbstd_group_size)
    return hp, (f"conv_clamp={hp['conv_clamp']} and mbstd_group_size={hp['mbstd_group_size']} are not "
                "stored in state dicts; official defaults used")
