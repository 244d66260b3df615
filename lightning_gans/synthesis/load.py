"""A StyleGAN2 generator (G_ema by default) rebuilt from one of our checkpoints, with its identity.

Only the checkpoint's self-describing `model_config` and its state dict are read (weights-only
load), so no Lightning module is built and no pickled code runs.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import torch

from ..checkpoint import check_architecture, file_sha256, nonfinite_tensors, safe_load
from ..errors import CheckpointError
from ..models.stylegan2 import Generator

NETWORKS = ("G_ema", "G")
@dataclass
class LoadedGenerator:
    """A generator in eval mode plus what provenance metadata needs to say about it."""

    G: Generator
    kind: str       # model_config["kind"], e.g. "stylegan2"
    name: str       # the model config's name, e.g. "tiny"
    network: str    # "G_ema" or "G"
    path: Path
    sha256: str

    def provenance(self) -> dict[str, str]:
        """The generator-identifying provenance fields."""
        return {"model_kind": self.kind, "model_name": self.name, "network": self.network,
                "checkpoint": self.path.name, "checkpoint_sha256": self.sha256}


def prefixed(ckpt: dict, prefix: str) -> dict:
    """The checkpoint's `prefix.*` tensors, without the prefix."""
    state = ckpt.get("state_dict") or {}
    return {k[len(prefix) + 1:]: v for k, v in state.items() if k.startswith(f"{prefix}.")}


def load_prefixed(net: torch.nn.Module, ckpt: dict, prefix: str, path: Path, other: str) -> torch.nn.Module:
    """Load the checkpoint's `prefix.*` weights (one network of a GAN module) into net, with
    clear errors; `other` names the --network to suggest when there are none."""
    state = ckpt.get("state_dict") or {}
    weights = {k[len(prefix) + 1:]: v for k, v in state.items() if k.startswith(f"{prefix}.")}
    if not weights:
        raise CheckpointError(f"checkpoint {path} has no {prefix} weights; try --network {other}")
    try:
        net.load_state_dict(weights)
    except RuntimeError as e:
        first = str(e).strip().splitlines()[0]
        raise CheckpointError(f"checkpoint {path}: {prefix} weights do not match its model_config "
                              f"({first}); the file is damaged or hand-edited") from None
    return net


def generator_weights(G: torch.nn.Module, ckpt: dict, network: str, path: Path) -> torch.nn.Module:
    """Load `network`'s weights (G_ema or G) of a checkpoint dict into G, with clear errors."""
    return load_prefixed(G, ckpt, network, path, other="G" if network == "G_ema" else "G_ema")


def load_generator(
    path: str | os.PathLike,
    network: str = "G_ema",
    device: torch.device | str = "cpu",
) -> LoadedGenerator:
    """Rebuild G (or G_ema) of a StyleGAN2 checkpoint written by `lightning-gans train`."""
    if network not in NETWORKS:
        raise CheckpointError(f"--network {network!r} is not one of {', '.join(NETWORKS)}")
    path = Path(path)
    ckpt = safe_load(path)
    config = ckpt.get("model_config")
    if not isinstance(config, dict) or "kind" not in config:
        raise CheckpointError(
            f"checkpoint {path} has no model_config; it was not written by `lightning-gans train` "
            "(convert official files with `lightning-gans convert`)")
    if config["kind"] not in ("stylegan2", "stylegan"):
        raise CheckpointError(
            f"checkpoint {path} holds a {config['kind']!r} model; this command needs a StyleGAN2 or "
            "StyleGAN checkpoint (kind 'stylegan2' or 'stylegan')")
    kwargs = config.get("G_kwargs")
    if not isinstance(kwargs, dict):
        raise CheckpointError(f"checkpoint {path}: model_config has no G_kwargs dict; the file is "
                              "damaged or hand-edited")
    Net = Generator
    if config["kind"] == "stylegan":  # v1 (e.g. a converted karras2019stylegan-*.pkl): the same G interface
        from ..models.stylegan import Generator as Net

        grown = (ckpt.get("state_dict") or {}).get("resolution")
        if grown is not None and int(grown) != kwargs.get("img_resolution"):
            raise CheckpointError(f"checkpoint {path} is a StyleGAN grown to {int(grown)} of "
                                  f"{kwargs.get('img_resolution')} px so far; these commands render the final "
                                  "resolution (train it further, or use `evaluate`)")
    check_architecture(lambda: Net(**kwargs), prefixed(ckpt, network), path, "model_config G_kwargs")
    bad = nonfinite_tensors(prefixed(ckpt, network).items())  # issue 19: no black images as output
    if bad:
        raise CheckpointError(f"checkpoint {path}: {len(bad)} {network} tensors hold NaN/inf (e.g. {bad[0]}); "
                              "the run diverged or the file is damaged: use an earlier checkpoint")
    G = generator_weights(Net(**kwargs), ckpt, network, path)
    if config["kind"] == "stylegan":  # `--truncation psi` alone truncates ws 0..7, as the official G_style
        from ..models.stylegan import TRUNCATION_CUTOFF

        G.mapping.default_truncation_cutoff = (config.get("truncation") or {}).get("cutoff", TRUNCATION_CUTOFF)
    G.eval().requires_grad_(False).to(device)
    return LoadedGenerator(G=G, kind=config["kind"], name=str(config.get("name", "?")), network=network,
                           path=path, sha256=file_sha256(path))
