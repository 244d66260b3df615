"""clovaai/stargan-v2 `{step}_nets.ckpt` / `{step}_nets_ema.ckpt` files into our StarGAN v2 networks.

Our models/stargan_v2.py uses the official key names, so the state dicts load by name; what this
adds is reading the constructor arguments off the tensor shapes (img_size, style_dim,
latent_dim, num_domains, max_conv_dim, w_hpf), tolerating the `hpf.filter` buffer that older
files lack, and skipping a `fan` entry (the face-landmark network is not a trained network here).

The face-landmark network (models/fan.py) that w_hpf > 0 models need for their masks is read
from its own weights file by `load_fan` (the official `wing.ckpt`, or an official nets file's
`fan` entry); `pretrained.weights.resolve_fan_weights` finds that file from an argument or $LG_FAN_WEIGHTS.
"""

from __future__ import annotations

import copy
import os
import re
from pathlib import Path

import torch

from ..checkpoint import atomic_save, load_weights
from ..errors import CheckpointError
from ..models.fan import FAN
from ..models.stargan_v2 import NETWORK_NAMES, Discriminator, Generator, MappingNetwork, StyleEncoder, he_init_
from ..pretrained.weights import FAN_SOURCE, MissingFANWeightsError

SKIPPED_ENTRIES = ("fan",)
# Official network names -> StarGANv2Module attributes (EMA copies add `_ema`; D has none).
SHORT = {"generator": "G", "mapping_network": "F", "style_encoder": "E", "discriminator": "D"}
EMA_NAMES = ("generator", "mapping_network", "style_encoder")


def is_stargan_v2(obj: object) -> bool:
    return isinstance(obj, dict) and {"generator", "mapping_network", "style_encoder"} <= set(obj)


def _indices(sd: dict, pattern: str) -> list[int]:
    return sorted({int(m.group(1)) for k in sd if (m := re.fullmatch(pattern, k))})


def infer_kwargs(nets: dict[str, dict]) -> dict:
    """Constructor arguments shared by the four networks, read from the tensor shapes."""
    G, F = nets["generator"], nets["mapping_network"]
    dim_in = G["from_rgb.weight"].shape[0]
    img_size = 2**14 // dim_in  # official: dim_in = 2**14 // img_size
    enc = _indices(G, r"encode\.(\d+)\.conv1\.weight")
    widths = [G[f"encode.{i}.conv2.weight"].shape[0] for i in enc]
    levels = img_size.bit_length() - 1 - 4  # down-blocks without the high-pass skips
    # Any max_conv_dim >= the widest block rebuilds the same widths: min(2 * dim, max_conv_dim).
    bottleneck = 2
    if len(enc) == levels + bottleneck:
        w_hpf = 0.0
    elif len(enc) == levels + 1 + bottleneck:
        # The filter is Laplacian / w_hpf; files without the buffer come from the published w_hpf = 1 models.
        w_hpf = float(8.0 / G["hpf.filter"][1, 1]) if "hpf.filter" in G else 1.0
    else:
        raise CheckpointError(f"StarGAN v2 generator has {len(enc)} encoder blocks; a {img_size}-px generator "
                              f"has {levels + bottleneck} (or {levels + 1 + bottleneck} with high-pass skips)")
    heads = _indices(F, r"unshared\.(\d+)\.0\.weight")
    last = max(_indices(F, r"unshared\.0\.(\d+)\.weight"))
    return dict(img_size=img_size, style_dim=F[f"unshared.0.{last}.weight"].shape[0],
                latent_dim=F["shared.0.weight"].shape[1], num_domains=len(heads),
                max_conv_dim=max(widths), w_hpf=w_hpf)


def build(kw: dict) -> dict[str, torch.nn.Module]:
    """The four networks for `infer_kwargs` output (weights to be loaded)."""
    return {
        "generator": Generator(kw["img_size"], kw["style_dim"], kw["max_conv_dim"], kw["w_hpf"]),
        "mapping_network": MappingNetwork(kw["latent_dim"], kw["style_dim"], kw["num_domains"]),
        "style_encoder": StyleEncoder(kw["img_size"], kw["style_dim"], kw["num_domains"], kw["max_conv_dim"]),
        "discriminator": Discriminator(kw["img_size"], kw["num_domains"], kw["max_conv_dim"]),
    }


def load_nets(obj: dict, source: str, kw: dict | None = None) -> tuple[dict[str, torch.nn.Module], dict]:
    """Our networks (those present in the file) loaded strictly, and the constructor kwargs."""
    if not is_stargan_v2(obj):
        raise CheckpointError(f"{source} is not a StarGAN v2 CheckpointIO file "
                              "(no generator/mapping_network/style_encoder)")
    if any(isinstance(v, dict) and "param_groups" in v for v in obj.values()):
        raise CheckpointError(f"{source} is a StarGAN v2 optimizer file (_optims.ckpt); "
                              "pass the {step}_nets.ckpt or {step}_nets_ema.ckpt next to it")
    unknown = [k for k in obj if k not in NETWORK_NAMES and k not in SKIPPED_ENTRIES]
    if unknown:
        raise CheckpointError(f"{source}: unexpected entries {unknown}; expected {list(NETWORK_NAMES)}")
    sds = {k: {n.removeprefix("module."): t for n, t in obj[k].items()} for k in NETWORK_NAMES if k in obj}
    kw = kw or infer_kwargs(sds)
    nets = build(kw)
    for name, sd in sds.items():
        try:
            nets[name].load_state_dict(sd, strict=True)
        except RuntimeError as e:
            first = " ".join(str(e).splitlines()[0:2])
            raise CheckpointError(f"{source}: {name} does not fit a StarGAN v2 network with {kw} ({first})") from None
        nets[name].eval()
    return {k: nets[k] for k in sds}, kw


def module_hparams(kw: dict, name: str = "stargan_v2-import") -> dict:
    """StarGANv2Module hyper-parameters for `infer_kwargs` output."""
    return dict(resolution=kw["img_size"], num_domains=kw["num_domains"], latent_dim=kw["latent_dim"],
                style_dim=kw["style_dim"], max_conv_dim=kw["max_conv_dim"], w_hpf=kw["w_hpf"], name=name)


def net_kwargs(hp: dict) -> dict:
    """build_networks kwargs exactly as StarGANv2Module stores them in model_config."""
    return dict(img_size=hp["resolution"], style_dim=hp["style_dim"], latent_dim=hp["latent_dim"],
                num_domains=hp["num_domains"], w_hpf=hp["w_hpf"], max_conv_dim=hp["max_conv_dim"],
                dim_in=hp.get("base_dim"))


def module_networks(nets: dict, ema: dict, kw: dict, seed: int = 0) -> tuple[dict[str, torch.nn.Module], list[str]]:
    """G, F, E, D, G_ema, F_ema, E_ema from the networks of a _nets and/or _nets_ema file.

    A network missing from one file is copied from the other; a missing D is freshly initialized
    with the official He init (seeded), and a note says so.
    """
    out: dict[str, torch.nn.Module] = {}
    notes = []
    for name in NETWORK_NAMES:
        src = nets.get(name) or (ema.get(name) if name in EMA_NAMES else None)
        if src is None:
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(seed)
                src = he_init_(build(kw)[name])
            notes.append(f"no {name} in the file(s): freshly initialized (He init, seed {seed})")
        elif name not in nets:
            notes.append(f"{name} copied from its EMA copy (the _nets file was not found)")
            src = copy.deepcopy(src)
        out[SHORT[name]] = src
        if name in EMA_NAMES:
            out[SHORT[name] + "_ema"] = ema.get(name) or copy.deepcopy(src)
    return out, notes


def official_from_module(sd: dict) -> dict[str, dict[str, dict]]:
    """{'nets': {official name: state dict}, 'nets_ema': {...}} from a StarGANv2Module state dict."""
    out: dict[str, dict[str, dict]] = {"nets": {}, "nets_ema": {}}
    for name, short in SHORT.items():
        for tag, prefix in (("nets", f"{short}."), ("nets_ema", f"{short}_ema.")):
            sub = {k[len(prefix):]: v for k, v in sd.items() if k.startswith(prefix)}
            if sub:
                out[tag][name] = sub
    return out


# ---- the face-landmark network (FAN) of the w_hpf > 0 masks ------------------------------------

FAN_FORMAT = "lightning-gans-fan"  # our own file: {"format", "fan_config", "state_dict"}


def _fan_state_dict(obj: object, source: str) -> dict:
    if isinstance(obj, dict):
        if isinstance(obj.get("state_dict"), dict):  # wing.ckpt and our own format
            return obj["state_dict"]
        if isinstance(obj.get("fan"), dict):  # official {step}_nets(_ema).ckpt of a w_hpf > 0 model
            return obj["fan"]
        if obj and all(isinstance(v, torch.Tensor) for v in obj.values()):  # a bare state dict
            return obj
        if is_stargan_v2(obj):
            raise CheckpointError(f"{source} is an official StarGAN v2 checkpoint without a 'fan' entry "
                                  f"(a w_hpf=0 model's); give {FAN_SOURCE}")
    raise CheckpointError(f"{source} holds no FAN weights (expected a dict with 'state_dict' or 'fan'); "
                          f"give {FAN_SOURCE}")


def load_fan(path: str | os.PathLike) -> FAN:
    """The FAN of a weights file (the official `wing.ckpt`, an official StarGAN v2
    {step}_nets(_ema).ckpt with a 'fan' entry, our own `save_fan` format, or a bare state dict),
    loaded weights-only (checkpoint.load_weights): nothing in the file is run. Frozen, eval mode, on the CPU."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise MissingFANWeightsError(f"FAN weights file {path} does not exist; give {FAN_SOURCE}")
    obj = load_weights(path, "FAN weights file", "re-save its state dict with torch.save")
    fan = FAN.from_state_dict(_fan_state_dict(obj, str(path)), source=f"FAN weights file {path}")
    if isinstance(obj, dict) and obj.get("format") == FAN_FORMAT and obj.get("fan_config") not in (None, fan.config()):
        raise CheckpointError(f"FAN weights file {path}: fan_config {obj['fan_config']} does not match its "
                              f"weights ({fan.config()}); the file is damaged or hand-edited")
    return fan


def save_fan(fan: FAN, path: str | os.PathLike, official: bool = False) -> Path:
    """Write `fan` in our format, or with official=True exactly as the official `wing.ckpt`
    ({'state_dict': ...}, same key names). Atomic."""
    sd = {k: v.detach().cpu().clone() for k, v in fan.state_dict().items()}
    obj = {"state_dict": sd} if official else {"format": FAN_FORMAT, "fan_config": fan.config(), "state_dict": sd}
    return atomic_save(obj, path)
