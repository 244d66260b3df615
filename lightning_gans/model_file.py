"""One way in: a path -> a described checkpoint (ModelFile) whose networks it builds, for every
family (StyleGAN, StyleGAN2, StarGAN v2) and every format (ours, or an official one through
interop.convert). Every command and the metrics read checkpoints through describe(), which reads
the file once (checkpoint.safe_load, or the official reader) and remembers the last file it
described, so one command that needs a file twice (finetune: --from, then init_from=) reads it once.

    mf = describe(path, ("stylegan2", "stylegan"), what="--from")
    gen = mf.generator("G_ema")       # a LoadedGenerator; mf.stargan(...) for StarGAN v2
"""

from __future__ import annotations

import argparse
import os
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from .checkpoint import file_sha256, safe_load
from .errors import CheckpointError
from .model_nets import (
    NETWORKS,
    LoadedGenerator,
    LoadedStarGAN,
    build_generator,
    build_stargan,
    network_name,
)

__all__ = ["ModelFile", "describe", "forget", "LoadedGenerator", "LoadedStarGAN", "NETWORKS", "KINDS"]

KINDS = ("stylegan2", "stylegan", "stargan_v2")
OURS = "lightning-gans"
# Model keys that define the architecture (finetune rebuilds it from the checkpoint): StyleGAN2,
# StyleGAN (v1; StyleGANModule's keys) and StarGAN v2 hyper-parameters.
ARCH_KEYS = ("resolution", "z_dim", "w_dim", "c_dim", "mapping_layers", "channel_base", "channel_max",
             "conv_clamp", "mbstd_num_channels")
ARCH_KEYS_V1 = ("resolution", "z_dim", "w_dim", "img_channels", "mapping_layers", "mapping_lr_multiplier",
                "fmap_base", "fmap_decay", "fmap_max", "fused_scale", "use_noise", "mbstd_group_size",
                "mbstd_num_channels")
ARCH_KEYS_STARGAN = ("resolution", "base_dim", "max_conv_dim", "num_domains", "w_hpf", "latent_dim", "style_dim")
_PREFIXES = ("G", "D", "G_ema", "F", "E", "F_ema", "E_ema")  # the networks a state dict can hold


@dataclass
class ModelFile:
    """A checkpoint file, read once: what it holds and the means to build its networks."""

    path: Path
    sha256: str      # of the file on disk (of an official npz folder: of its files)
    fmt: str         # "lightning-gans" for ours, else the official format (interop.convert.read)
    kind: str        # "stylegan2" | "stylegan" | "stargan_v2"
    config: dict     # model_config (official files: the one the conversion builds)
    ckpt: dict       # our checkpoint dict (official files converted: state_dict, hyper_parameters, ...)
    _built: dict[str, nn.Module] = field(default_factory=dict, repr=False)  # official: the conversion's

    def networks(self) -> list[str]:
        """The network prefixes that have weights in the state dict, e.g. ["G", "D", "G_ema"]."""
        seen: dict[str, None] = {}
        for k in self.ckpt.get("state_dict") or {}:
            head = k.split(".", 1)[0]
            if "." in k and head in _PREFIXES:
                seen.setdefault(head)
        return list(seen)

    def state(self, prefix: str) -> dict:
        """The `prefix.*` tensors without the prefix (empty when the file has none)."""
        n = len(prefix) + 1
        return {k[n:]: v for k, v in (self.ckpt.get("state_dict") or {}).items() if k.startswith(prefix + ".")}

    def _require(self, kinds: tuple[str, ...], what: str) -> None:
        if self.kind not in kinds:
            raise CheckpointError(f"checkpoint {self.path} holds a {self.kind!r} model; {what} needs a "
                                  f"{' or '.join(kinds)} checkpoint")

    def generator(self, network: str = "G_ema", device: torch.device | str = "cpu", *,
                  allow_partial: bool = False) -> LoadedGenerator:
        """G_ema (or G) of a StyleGAN2 / StyleGAN checkpoint, in eval mode on `device`. A StyleGAN (v1)
        grown only part of the way is refused unless allow_partial (evaluate renders where it trained)."""
        network = network_name(network)
        self._require(("stylegan2", "stylegan"), "this command")
        grown = (self.ckpt.get("state_dict") or {}).get("resolution") if self.kind == "stylegan" else None
        final = (self.config.get("G_kwargs") or {}).get("img_resolution")
        if grown is not None and int(grown) != final and not allow_partial:
            raise CheckpointError(f"checkpoint {self.path} is a StyleGAN grown to {int(grown)} of {final} px "
                                  "so far; these commands render the final resolution (train it further, or use "
                                  "`evaluate`)")
        G = build_generator(self.kind, self.config, self.ckpt.get("state_dict") or {}, network, self.path,
                            built=self._built.pop(network, None))
        return LoadedGenerator(G=G.eval().requires_grad_(False).to(device), kind=self.kind,
                               name=str(self.config.get("name", "?")), network=network, path=self.path,
                               sha256=self.sha256)

    def stargan(self, network: str = "G_ema", device: torch.device | str = "cpu",
                fan_weights: str | os.PathLike | None = None) -> LoadedStarGAN:
        """G/F/E of a StarGAN v2 checkpoint ("G_ema": the EMA copies, "G": the trained nets); a w_hpf > 0
        model also loads the FAN from fan_weights (None: $LG_FAN_WEIGHTS)."""
        network = network_name(network)
        self._require(("stargan_v2",), "this command")
        built = {n: self._built.pop(n) for n in list(self._built) if n.endswith("_ema") == (network == "G_ema")}
        return build_stargan(self.ckpt, self.config, network, self.path, self.sha256, device, fan_weights, built)

    def architecture(self) -> dict:
        """The model.* overrides that rebuild this checkpoint's architecture (finetune); a StyleGAN
        (v1) one also gets start_resolution = resolution: its network is grown already."""
        hp = self.ckpt.get("hyper_parameters") or {}
        keys = {"stylegan2": ARCH_KEYS, "stylegan": ARCH_KEYS_V1, "stargan_v2": ARCH_KEYS_STARGAN}[self.kind]
        arch = {k: hp[k] for k in keys if k in hp}
        if self.kind == "stylegan" and "resolution" in hp:
            arch["start_resolution"] = hp["resolution"]
        return arch


_last: tuple[tuple, ModelFile] | None = None  # the one-entry cache: (file identity, ModelFile)


def _identity(path: Path) -> tuple:
    """What makes a described file the same file: path, and size + mtime of it (of a folder: of its
    files; of a file: of the NAME.kwargs.json beside it too, which an official state dict's import reads)."""
    from .interop.sg2ada import kwargs_json_path

    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.is_file())
    else:
        files = [path, *(p for p in [kwargs_json_path(path)] if p.is_file())]
    return (str(path),) + tuple((f.name, st.st_mtime_ns, st.st_size) for f in files for st in [f.stat()])


def _label(what: str, path: Path) -> str:
    return f"{what}{path}" if what.endswith("=") else f"{what} {path}"


def _read(path: Path, accepted: tuple[str, ...], resolution: int | None) -> ModelFile:
    """The file read once: ours by safe_load; official files by interop.convert's reader, converted."""
    obj = None
    if not path.is_dir() and path.suffix not in (".pkl", ".npz"):
        # rosinality's train.py stores an argparse.Namespace beside its weights: plain data, allowed
        obj = safe_load(path, allow=(argparse.Namespace,))
        config = obj.get("model_config")
        if "model_config" in obj and "state_dict" in obj:
            if not isinstance(config, dict) or config.get("kind") not in KINDS:
                raise CheckpointError(f"checkpoint {path}: its model_config names no model kind of this project "
                                      f"({', '.join(KINDS)}); the file is damaged or hand-edited")
            return ModelFile(path, file_sha256(path), OURS, str(config["kind"]), config, obj)
    from .interop import convert

    contents = convert.read(path) if obj is None else convert.classify(path, obj)
    if contents[1] not in accepted:  # not converted only to be refused: describe() says why
        return ModelFile(path, "", contents[0], contents[1], {}, {})
    imp = convert.load_official(path, resolution=resolution, contents=contents)
    ckpt = convert.to_checkpoint(imp)
    return ModelFile(path, ckpt["converted_from"]["sha256"], imp.format, imp.kind, ckpt["model_config"], ckpt,
                     _built=dict(imp.networks))


def forget() -> None:
    """Drop the remembered file (its tensors): for the last reader of it in a long process, e.g.
    init_from= at the start of a training run."""
    global _last
    _last = None


def describe(path: str | os.PathLike, kinds: tuple[str, ...] | None = None, *, kind: str | None = None,
             resolution: int | None = None, what: str = "checkpoint") -> ModelFile:
    """The checkpoint at `path` (ours or official), read once. `kinds`: the model kinds the caller
    takes, `kind`: the one it needs, `resolution`: the one it needs; another is one CheckpointError
    line naming `what` (the flag or key: "--from", "ckpt=", "init_from=") and the file. Describing
    the file that was described last (same path, size and mtime) returns that ModelFile unread."""
    global _last
    path = Path(path).expanduser()
    if not path.exists():
        raise CheckpointError(f"{_label(what, path)} does not exist; check the path")
    accepted = tuple(k for k in (kinds or KINDS) if kind is None or k == kind) or (kind,)
    key = _identity(path.resolve())
    if _last is not None and _last[0] == key:
        mf = _last[1]
    else:
        _last = None  # free the previous file's tensors before reading the next
        mf = _read(path, accepted, resolution)
        if mf.ckpt:
            _last = (key, mf)
    if mf.kind not in accepted:
        taker = "this command" if what == "checkpoint" else what.rstrip("=")
        raise CheckpointError(f"{_label(what, path)} holds a {mf.kind!r} model ({mf.fmt}); {taker} takes a "
                              f"{' or '.join(accepted)} model")
    res = (mf.ckpt.get("hyper_parameters") or {}).get("resolution")
    if resolution is not None and res != resolution:
        raise CheckpointError(f"{_label(what, path)} is a {mf.kind} model at {res} px ({mf.fmt}); asked for "
                              f"resolution {resolution}")
    return mf
