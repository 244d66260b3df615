"""The networks of a described checkpoint (model_file.ModelFile), built once and checked.

Each network is built for real under an allocation guard: a model_config hand-edited to a huge
width fails in one line after a few bytes of bookkeeping instead of exhausting memory, and
without the meta-tensor detour (whose first arithmetic imports torch._dynamo: seconds per
command). Random initializers are skipped there (the weights are loaded over them anyway). The
built module's state-dict shapes are then compared with the file's, and its weights loaded.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from .checkpoint import file_sha256, nonfinite_tensors, shape_differences, tensor_bytes, tensor_shapes
from .errors import CheckpointError, ConfigError

NETWORKS = ("G_ema", "G")
_ALIASES = {"ema": "G_ema", "trained": "G"}  # transfer's former --network values (library callers)
_GUARD_SLACK = 64 * 2**20


def network_name(network: str) -> str:
    """"G_ema" or "G" ("ema" / "trained" are accepted as their old spelling)."""
    name = _ALIASES.get(network, network)
    if name not in NETWORKS:
        raise CheckpointError(f"--network {network!r} is not one of {', '.join(NETWORKS)}")
    return name


class _TooLarge(Exception):
    pass


def _size_numel(args: tuple, kwargs: dict) -> int:
    size = kwargs.get("size", args[0] if len(args) == 1 and not isinstance(args[0], int) else args)
    if isinstance(size, torch.Size | list | tuple):
        return math.prod(int(s) for s in size)
    return int(size)


class _AllocationGuard(torch.overrides.TorchFunctionMode):
    """Counts the bytes the tensor factories are asked for and stops past `limit`, before the
    factory allocates. randn/rand become empty and in-place random inits do nothing: every
    parameter and buffer they would fill is loaded from the file next (strictly)."""

    SIZED = {torch.empty, torch.zeros, torch.ones, torch.randn, torch.rand}
    RANDOM = {torch.randn, torch.rand}
    LIKE = {torch.empty_like, torch.zeros_like, torch.ones_like, torch.randn_like, torch.rand_like,
            torch.full_like}
    SKIP = {torch.Tensor.normal_, torch.Tensor.uniform_, nn.init.normal_, nn.init.uniform_,
            nn.init.kaiming_normal_, nn.init.kaiming_uniform_, nn.init.xavier_normal_, nn.init.xavier_uniform_,
            nn.init.trunc_normal_, nn.init.orthogonal_}

    def __init__(self, limit: int):
        super().__init__()
        self.limit, self.used = limit, 0

    def _count(self, numel: int, dtype: torch.dtype | None) -> None:
        self.used += numel * (dtype or torch.get_default_dtype()).itemsize
        if self.used > self.limit:
            raise _TooLarge

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func in self.SKIP:
            return args[0] if args else kwargs.get("tensor")
        if func in self.SIZED:
            self._count(_size_numel(args, kwargs), kwargs.get("dtype"))
            if func in self.RANDOM:
                kwargs = {k: v for k, v in kwargs.items() if k != "generator"}
                return torch.empty(*args, **kwargs)
        elif func is torch.full:
            self._count(_size_numel(args[:1], {k: v for k, v in kwargs.items() if k == "size"}),
                        kwargs.get("dtype"))
        elif func is torch.eye:
            n = int(args[0] if args else kwargs["n"])
            self._count(n * int(args[1] if len(args) > 1 else kwargs.get("m", n)), kwargs.get("dtype"))
        elif func in self.LIKE and args and torch.is_tensor(args[0]):
            self._count(args[0].numel(), kwargs.get("dtype") or args[0].dtype)
        return func(*args, **kwargs)


def build_checked(build: Callable[[], nn.Module], state: dict, path: Path, what: str) -> nn.Module:
    """build() under the allocation guard, its shapes checked against `state` (the tensors it must
    load), then the weights loaded strictly; in eval mode without grads, on the CPU. `what`
    names the config part, e.g. "model_config G_kwargs"."""
    have_bytes = tensor_bytes(state)
    guard = _AllocationGuard(4 * have_bytes + _GUARD_SLACK)
    try:
        with guard:
            module = build()
    except _TooLarge:
        raise CheckpointError(
            f"checkpoint {path}: its {what} asks for more than {guard.used / 2**20:.0f} MiB of tensors but the "
            f"file holds {have_bytes / 2**20:.1f} MiB; damaged or hand-edited") from None
    except Exception as e:  # noqa: BLE001 - a config no network can be built from
        first = (str(e).strip().splitlines() or [type(e).__name__])[0][:200]
        raise CheckpointError(f"checkpoint {path}: its {what} does not build a network ({first}); "
                              "the file is damaged or hand-edited") from None
    want, have = tensor_shapes(module.state_dict()), tensor_shapes(state)
    differ, missing, unexpected = shape_differences(want, have)
    if missing or unexpected or differ:
        if differ:
            k = differ[0]
            eg = f"{k}: {have[k]} in the file, {want[k]} from the config"
        else:
            eg = f"{'missing ' + missing[0] if missing else 'unexpected ' + unexpected[0]}"
        raise CheckpointError(
            f"checkpoint {path}: its {what} does not match its weights ({len(differ)} tensors of "
            f"another shape, {len(missing)} missing, {len(unexpected)} unexpected; e.g. {eg}); "
            "the file is damaged or hand-edited")
    module.load_state_dict(state)
    return module.eval().requires_grad_(False)


@dataclass
class LoadedGenerator:
    """A generator in eval mode plus what provenance metadata needs to say about it."""

    G: nn.Module
    kind: str       # model_config["kind"], e.g. "stylegan2"
    name: str       # the model config's name, e.g. "tiny"
    network: str    # "G_ema" or "G"
    path: Path
    sha256: str

    def provenance(self) -> dict[str, str]:
        """The generator-identifying provenance fields."""
        return {"model_kind": self.kind, "model_name": self.name, "network": self.network,
                "checkpoint": self.path.name, "checkpoint_sha256": self.sha256}


def weights_of(state: dict, prefix: str, path: Path, other: str) -> dict:
    """The `prefix.*` tensors of a state dict, without the prefix; none is one line naming the
    --network to try instead, NaN/inf is one line too (issue 19: no black images as output)."""
    weights = {k[len(prefix) + 1:]: v for k, v in state.items() if k.startswith(f"{prefix}.")}
    if not weights:
        raise CheckpointError(f"checkpoint {path} has no {prefix} weights; try --network {other}")
    bad = nonfinite_tensors(weights.items())
    if bad:
        raise CheckpointError(f"checkpoint {path}: {len(bad)} {prefix} tensors hold NaN/inf (e.g. {bad[0]}); "
                              "the run diverged or the file is damaged: use an earlier checkpoint")
    return weights


def build_generator(kind: str, config: dict, state: dict, network: str, path: Path,
                    built: nn.Module | None = None) -> nn.Module:
    """G_ema or G of a StyleGAN (v1) / StyleGAN2 checkpoint; `built`: the module a conversion
    already built from these weights (official files), handed on instead of built again."""
    kwargs = config.get("G_kwargs")
    if not isinstance(kwargs, dict):
        raise CheckpointError(f"checkpoint {path}: model_config has no G_kwargs dict; the file is "
                              "damaged or hand-edited")
    weights = weights_of(state, network, path, "G" if network == "G_ema" else "G_ema")
    if kind == "stylegan":  # v1 (e.g. a converted karras2019stylegan-*.pkl): the same G interface
        from .models.stylegan import TRUNCATION_CUTOFF
        from .models.stylegan import Generator as Net
    else:
        from .models.stylegan2 import Generator as Net
    G = built if built is not None else build_checked(lambda: Net(**kwargs), weights, path, "model_config G_kwargs")
    if kind == "stylegan":  # `--truncation psi` alone truncates ws 0..7, as the official G_style
        G.mapping.default_truncation_cutoff = (config.get("truncation") or {}).get("cutoff", TRUNCATION_CUTOFF)
    return G


@dataclass
class LoadedStarGAN:
    """G, F (mapping), E (style encoder) in eval mode plus what provenance needs."""

    G: nn.Module
    F: nn.Module
    E: nn.Module
    img_size: int
    num_domains: int
    latent_dim: int
    name: str
    network: str   # "G_ema" (the EMA nets) or "G" (the trained ones)
    path: Path
    sha256: str
    domain_names: list[str] = field(default_factory=list)
    fan: nn.Module | None = None  # w_hpf > 0: the face-landmark network of the generator's masks
    fan_sha256: str | None = None

    def provenance(self) -> dict[str, str]:
        out = {"model_kind": "stargan_v2", "model_name": self.name, "network": self.network,
               "checkpoint": self.path.name, "checkpoint_sha256": self.sha256}
        if self.fan_sha256:
            out["fan_sha256"] = self.fan_sha256
        return out

    @torch.no_grad()
    def masks(self, x: torch.Tensor, batch: int = 16) -> tuple[torch.Tensor, torch.Tensor] | None:
        """The generator's masks of images x [N,3,R,R] (on G's device), or None without skips."""
        if self.fan is None:
            return None
        dev = next(self.G.parameters()).device
        parts = [self.fan.masks(x[i:i + batch].to(dev)) for i in range(0, x.shape[0], max(1, batch))]
        return torch.cat([p[0] for p in parts]), torch.cat([p[1] for p in parts])

    def domain_index(self, domain: int | str) -> int:
        """A domain index from an int, a digit string, or a name the checkpoint stores."""
        if isinstance(domain, str) and domain.strip().lstrip("-").isdigit():
            domain = int(domain)
        if isinstance(domain, str):
            if domain in self.domain_names:
                return self.domain_names.index(domain)
            known = (f"known names: {', '.join(self.domain_names)}" if self.domain_names
                     else "this checkpoint stores no domain names")
            raise ConfigError(f"--domain {domain!r} is not a domain of this model ({known}); "
                              f"give an index 0..{self.num_domains - 1}")
        if not 0 <= int(domain) < self.num_domains:
            raise ConfigError(f"--domain {domain} is out of range: this model has "
                              f"{self.num_domains} domains (0..{self.num_domains - 1})")
        return int(domain)


STARGAN_NETS = (("G", "generator"), ("F", "mapping_network"), ("E", "style_encoder"))


def build_stargan(ckpt: dict, config: dict, network: str, path: Path, sha256: str,
                  device: torch.device | str = "cpu", fan_weights=None,
                  built: dict[str, nn.Module] | None = None) -> LoadedStarGAN:
    """G/F/E (network "G_ema": the EMA copies) of a StarGAN v2 checkpoint; a w_hpf > 0 model also
    loads the FAN from fan_weights (None: $LG_FAN_WEIGHTS). `built`: modules a conversion made."""
    from .models.stargan_v2 import build_network

    kwargs = dict(config.get("net_kwargs") or {})
    hparams = ckpt.get("hyper_parameters") or {}
    state = ckpt.get("state_dict") or {}
    suffix = "_ema" if network == "G_ema" else ""
    other = "G" if network == "G_ema" else "G_ema"
    fan = fan_sha = None
    if float(kwargs.get("w_hpf", 1)) > 0:
        from .interop.stargan_v2 import load_fan
        from .pretrained.weights import resolve_fan_weights

        fan_path = resolve_fan_weights(fan_weights, "--fan-weights", user=f"checkpoint {path} (w_hpf="
                                       f"{kwargs.get('w_hpf', 1)})")
        fan, fan_sha = load_fan(fan_path).to(device), file_sha256(fan_path)
        trained = hparams.get("fan_sha256")
        if trained and trained != fan_sha:
            warnings.warn(f"FAN weights {fan_path} (sha256 {fan_sha[:12]}...) are not those checkpoint {path} "
                          f"was trained with (sha256 {trained[:12]}..., {hparams.get('fan_weights')})", stacklevel=3)
    nets = {}
    for attr, key in STARGAN_NETS:
        weights = weights_of(state, attr + suffix, path, other)
        pre = (built or {}).get(attr + suffix)
        nets[attr] = (pre.eval().requires_grad_(False) if pre is not None else
                      build_checked(lambda key=key: build_network(key, **kwargs), weights, path,
                                    "model_config net_kwargs"))
    G, F, E = (nets[a].to(device) for a, _ in STARGAN_NETS)
    names = ckpt.get("domain_names") or hparams.get("domain_names") or []
    return LoadedStarGAN(G=G, F=F, E=E, img_size=G.img_size, num_domains=F.num_domains, latent_dim=F.latent_dim,
                         name=str(config.get("name", "?")), network=network, path=path, sha256=sha256,
                         domain_names=[str(n) for n in names], fan=fan, fan_sha256=fan_sha)
