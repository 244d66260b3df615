"""Metrics of a StyleGAN-family generator against real data: names, samples, DDP gathering.

Shared by `lightning-gans evaluate` and the in-training metrics callback, so both give the same
number for the same G_ema, seed and batch size.

Names follow StyleGAN2-ADA (Karras et al., NeurIPS 2020): fid50k_full, fid50k, fid10k,
kid50k_full, kid50k, pr50k3_full, pr50k3, ppl_zfull, ppl_wfull, ppl_zend, ppl_wend, ppl2_wend
(no face crop). Any count may be written (fid2k, kid500, pr2k3); `num` overrides the generated
count (and the real cap of the non-"_full" metrics) of every metric, and result keys are named
after the generated count actually used (fid50k_full with num=2000 reports fid2k_full);
`num_real` caps the real images of every metric without renaming it.

Sample i (0 <= i < N) is G(z_i, c_i), truncation psi 1: z_i = RandomState(seed + i).randn(z_dim)
(the latent of `lightning-gans generate --seeds {seed + i}`), c_i = one-hot(i mod c_dim) for a
conditional G. Samples are rendered in batches of `batch_size`; batch b draws its noise inputs
from torch generators seeded with (seed, b), inside a forked RNG, so training streams are not
disturbed. Rank r of W renders batches b = r, r + W, ...; the features are all-gathered and put
back in sample order, so the feature set, and every metric, is the same for any process count.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist

from ..errors import ConfigError
from ..models.latents import seeds_to_z
from ..progress import bar
from .dataset_stats import compute_feature_stats, list_source
from .fid import fid_from_stats
from .inception import quantize_images
from .kid import kernel_inception_distance
from .ppl import perceptual_path_length
from .precision_recall import precision_recall
from .stats import FeatureStats

FeatureNet = Callable[[torch.Tensor], torch.Tensor]   # [N, 3, H, W] in [0, 255] -> [N, D]
Distance = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]  # LPIPS-like, [N]

_COUNT = r"(\d+)(k?)"
_FID_KID = re.compile(rf"^(fid|kid){_COUNT}(_full)?$")
_PR = re.compile(r"^pr(\d+)k(\d+)?(_full)?$")
_PPL = re.compile(r"^(ppl2?)_(z|w)(end|full)$")
# Real-image caps of the "_full" metrics (StyleGAN2-ADA: all for FID, 1M for KID, 200k for PR).
_FULL_REAL = {"fid": None, "kid": 1_000_000, "pr": 200_000}
KNOWN = ("fid50k_full", "fid50k", "fid10k", "kid50k_full", "kid50k", "pr50k3_full", "pr50k3",
         "ppl_zfull", "ppl_wfull", "ppl_zend", "ppl_wend", "ppl2_wend")


def _count(n: int) -> str:
    return f"{n // 1000}k" if n % 1000 == 0 and n >= 1000 else str(n)


@dataclass(frozen=True)
class MetricSpec:
    """One metric: family ("fid" | "kid" | "pr" | "ppl") and its sample counts."""

    family: str
    num_gen: int
    num_real: int | None = None   # cap on real images (None: all)
    full: bool = False
    k: int = 3                    # pr: k of the k-NN radii
    space: str = "w"              # ppl: "z" or "w"
    sampling: str = "end"         # ppl: "end" or "full"
    crop: bool = True             # ppl: face crop (ppl2_* has none)

    @property
    def name(self) -> str:
        """Result key, after the counts actually used (StyleGAN2-ADA's names at their counts)."""
        full = "_full" if self.full else ""
        if self.family == "ppl":
            return f"ppl{'' if self.crop else '2'}_{self.space}{self.sampling}"
        if self.family == "pr":
            c = _count(self.num_gen)
            return f"pr{c}{self.k if c.endswith('k') else f'_k{self.k}'}{full}"
        return f"{self.family}{_count(self.num_gen)}{full}"

    @property
    def needs_all_features(self) -> bool:
        return self.family in ("kid", "pr")

    @property
    def needs_real(self) -> bool:
        return self.family != "ppl"


def parse_metric(name: str, num: int | None = None, num_real: int | None = None) -> MetricSpec:
    """A StyleGAN2-ADA metric name -> MetricSpec; `num` / `num_real` override the counts."""
    key = str(name).strip().lower()
    if m := _FID_KID.match(key):
        family, n, full = m[1], int(m[2]) * (1000 if m[3] else 1), bool(m[4])
        spec = MetricSpec(family, n, _FULL_REAL[family] if full else n, full)
    elif m := _PR.match(key):
        n, full = int(m[1]) * 1000, bool(m[3])
        spec = MetricSpec("pr", n, _FULL_REAL["pr"] if full else n, full, k=int(m[2] or 3))
    elif m := _PPL.match(key):
        spec = MetricSpec("ppl", 50_000, None, space=m[2], sampling=m[3], crop=m[1] == "ppl")
    else:
        raise ConfigError(
            f"unknown metric {name!r}: use StyleGAN2-ADA names such as {', '.join(KNOWN)}, with "
            "any count (fid2k, kid500, pr2k3), or num=N to change the counts")
    if num is not None:
        if int(num) < 2:
            raise ConfigError(f"num={num}: metrics need at least 2 samples")
        spec = replace(spec, num_gen=int(num), num_real=spec.num_real if spec.full else int(num))
    if num_real is not None:
        spec = replace(spec, num_real=int(num_real))
    if spec.num_gen < 2 or (spec.family == "pr" and spec.num_gen <= spec.k):
        raise ConfigError(f"metric {name!r}: {spec.num_gen} samples are too few")
    return spec


def parse_metrics(names: Sequence[str] | str, num: int | None = None,
                  num_real: int | None = None) -> list[MetricSpec]:
    """Several names (a list, or "a,b" / "[a,b]"); duplicates after renaming are dropped."""
    if isinstance(names, str):
        names = [n for n in names.strip().strip("[]").split(",") if n.strip()]
    specs: list[MetricSpec] = []
    for n in names:
        spec = parse_metric(n, num, num_real)
        if spec.name not in [s.name for s in specs]:
            specs.append(spec)
    if not specs:
        raise ConfigError("no metrics given: e.g. metrics=[fid50k_full]")
    return specs


# ---------------------------------------------------------------------------- the generator
@dataclass
class GeneratorFns:
    """The calls the metrics make on a StyleGAN (v1, progressive) or StyleGAN2 generator."""

    G: torch.nn.Module
    synthesis_kwargs: dict  # v1: render at the trained resolution / fade-in alpha ({} for v2)

    @property
    def z_dim(self) -> int:
        return int(self.G.z_dim)

    @property
    def c_dim(self) -> int:
        return int(getattr(self.G, "c_dim", 0))

    @property
    def device(self) -> torch.device:
        return self.G.mapping.w_avg.device

    def labels(self, idx: torch.Tensor) -> torch.Tensor | None:
        """One-hot c of sample indices (classes in turn), None for an unconditional G."""
        if self.c_dim == 0:
            return None
        return torch.nn.functional.one_hot(idx % self.c_dim, self.c_dim).float().to(self.device)

    def render(self, z: torch.Tensor, c: torch.Tensor | None, noise_mode: str = "random"):
        return self.G(z, c, truncation_psi=1, noise_mode=noise_mode, update_w_avg=False,
                      **self.synthesis_kwargs)

    def mapping(self, z: torch.Tensor, c: torch.Tensor | None) -> torch.Tensor:
        return self.G.mapping(z, c, update_w_avg=False)

    def synthesis(self, ws: torch.Tensor, noise_mode: str = "const") -> torch.Tensor:
        return self.G.synthesis(ws, noise_mode=noise_mode, **self.synthesis_kwargs)


def _noise_seed(seed: int, batch: int) -> int:
    return int(np.random.SeedSequence([int(seed), int(batch)]).generate_state(1)[0])


@contextlib.contextmanager
def seeded_rng(device: torch.device, seed: int) -> Iterator[None]:
    """Torch's CPU (and `device`'s CUDA) generator seeded inside, restored after."""
    cuda = [device.index if device.index is not None else torch.cuda.current_device()] \
        if device.type == "cuda" else []
    with torch.random.fork_rng(devices=cuda):
        torch.random.default_generator.manual_seed(seed)
        if cuda:
            torch.cuda.default_generators[cuda[0]].manual_seed(seed)
        yield


@torch.no_grad()
def render_samples(fns: GeneratorFns, start: int, stop: int, batch_index: int, seed: int = 0,
                   noise_mode: str = "random") -> torch.Tensor:
    """Samples [start, stop) of the module docstring's definition, images in [-1, 1]."""
    z = seeds_to_z(list(range(seed + start, seed + stop)), fns.z_dim).to(fns.device)
    c = fns.labels(torch.arange(start, stop))
    with seeded_rng(fns.device, _noise_seed(seed, batch_index)):
        return fns.render(z, c, noise_mode)


def _rank_world() -> tuple[int, int]:
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def _comm_device() -> torch.device:
    if dist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def gather_in_order(index: torch.Tensor, feats: torch.Tensor, num: int) -> torch.Tensor:
    """All ranks' (sample index [n_r], features [n_r, D]) -> features [num, D] in index order,
    on every rank (torch.distributed all_gather when initialized; a no-op reorder otherwise)."""
    rank, world = _rank_world()
    if world > 1:
        dev = _comm_device()
        n = torch.tensor([index.numel()], device=dev)
        sizes = [torch.zeros_like(n) for _ in range(world)]
        dist.all_gather(sizes, n)
        most = int(max(s.item() for s in sizes))
        dim = torch.tensor([feats.shape[1] if feats.numel() else -1], device=dev)
        dims = [torch.zeros_like(dim) for _ in range(world)]
        dist.all_gather(dims, dim)
        d = max(int(x.item()) for x in dims)
        pad_i = torch.full([most], -1, dtype=torch.int64, device=dev)
        pad_f = torch.zeros([most, d], dtype=torch.float32, device=dev)
        pad_i[: index.numel()] = index.to(dev)
        if index.numel():
            pad_f[: index.numel()] = feats.to(dev, torch.float32)
        all_i = [torch.empty_like(pad_i) for _ in range(world)]
        all_f = [torch.empty_like(pad_f) for _ in range(world)]
        dist.all_gather(all_i, pad_i)
        dist.all_gather(all_f, pad_f)
        index = torch.cat([i[: int(s.item())] for i, s in zip(all_i, sizes)]).cpu()
        feats = torch.cat([f[: int(s.item())] for f, s in zip(all_f, sizes)]).cpu()
    order = torch.argsort(index)
    if not torch.equal(index[order], torch.arange(num)):
        raise RuntimeError(f"gathered sample indices do not cover 0..{num - 1} exactly once")
    return feats[order]


@torch.no_grad()
def generated_features(
    fns: GeneratorFns,
    feature_net: FeatureNet,          # images in [0, 255] -> [N, D]
    num: int,
    batch_size: int = 32,
    seed: int = 0,
    noise_mode: str = "random",
) -> np.ndarray:
    """Features [num, D] of samples 0..num-1, this rank rendering its share of the batches."""
    rank, world = _rank_world()
    idx, out = [], []
    mine = range(rank, math.ceil(num / batch_size), world)
    with bar(len(mine), "generated features" + (f" (rank 0 of {world})" if world > 1 else ""), unit="batch",
             disable=True if rank else None) as progress:
        for b in mine:
            start, stop = b * batch_size, min((b + 1) * batch_size, num)
            img = render_samples(fns, start, stop, b, seed, noise_mode)
            out.append(feature_net(quantize_images(img)).float().cpu())
            idx.append(torch.arange(start, stop))
            progress.update(1)
    index = torch.cat(idx) if idx else torch.zeros([0], dtype=torch.int64)
    feats = torch.cat(out) if out else torch.zeros([0, 0])
    return gather_in_order(index, feats, num).numpy()


# ---------------------------------------------------------------------------- real data
def source_count(source: str | os.PathLike) -> int | None:
    """Images in a folder, or the manifest count of a shard set (None when unknown)."""
    kind, files = list_source(source)
    if kind == "folder":
        return len(files)
    manifest = Path(source) / "manifest.json"
    if manifest.is_file():
        count = json.loads(manifest.read_text()).get("count")
        return int(count) if count is not None else None
    return None


def real_stats(
    specs: Sequence[MetricSpec], source: str | os.PathLike, feature_net: FeatureNet,
    resolution: int | None, batch_size: int = 32, cache_dir: str | os.PathLike | None = None,
) -> dict[int | None, FeatureStats]:
    """Real-image FeatureStats per real cap, computed once per cap (cached on disk when the
    feature net has an `identity` and cache_dir is given). Caps above the source size = all."""
    total = source_count(source)
    caps: dict[int | None, bool] = {}
    for s in specs:
        if s.needs_real:
            cap = None if s.num_real is None or (total is not None and s.num_real >= total) \
                else s.num_real
            caps[cap] = caps.get(cap, False) or s.needs_all_features
    if cache_dir is not None and getattr(feature_net, "identity", None) is None:
        cache_dir = None
    return {cap: compute_feature_stats(source, feature_net, cap, batch_size, cache_dir,
                                       resolution=resolution, capture_all=keep)
            for cap, keep in caps.items()}


def real_for(spec: MetricSpec, reals: dict[int | None, FeatureStats]) -> FeatureStats:
    """The real stats a spec uses (the cap it asked for, or all when that was larger)."""
    if spec.num_real in reals:
        return reals[spec.num_real]
    return reals[None]


# ---------------------------------------------------------------------------- computing
def feature_metrics(
    specs: Sequence[MetricSpec], gen: np.ndarray, reals: dict[int | None, FeatureStats],
    device: torch.device | str = "cpu",
) -> dict[str, float]:
    """FID / KID / precision-recall of generated features `gen` [N, D] (first num_gen rows)."""
    out: dict[str, float] = {}
    for s in specs:
        if s.family == "ppl":
            continue
        if gen.shape[0] < s.num_gen:
            raise ValueError(f"{s.name} needs {s.num_gen} generated features, have {gen.shape[0]}")
        fake, real = gen[: s.num_gen], real_for(s, reals)
        if s.family == "fid":
            stats = FeatureStats()
            stats.append(fake)
            out[s.name] = fid_from_stats(stats, real, device=device)
        elif s.family == "kid":
            out[s.name], out[f"{s.name}_std"] = kernel_inception_distance(real, fake)
        else:
            p, r = precision_recall(real.features(), fake, k=s.k, device=device)
            out[f"{s.name}_precision"], out[f"{s.name}_recall"] = p, r
    return out


def ppl_metric(spec: MetricSpec, fns: GeneratorFns, distance: Distance | None,
               vgg16_weights: str | os.PathLike | None = None, batch_size: int = 32,
               seed: int = 0) -> float:
    """Perceptual path length (constant noise, as StyleGAN2-ADA) of a GeneratorFns."""
    def pair_labels(n2: int) -> torch.Tensor | None:  # both ends of a path share their label
        return fns.labels(torch.arange(n2) % (n2 // 2))

    if spec.space == "w":
        G = lambda w: fns.synthesis(w, "const")  # noqa: E731
        mapping = lambda z: fns.mapping(z, pair_labels(z.shape[0]))  # noqa: E731
    else:
        G = lambda z: fns.render(z, pair_labels(z.shape[0]), "const")  # noqa: E731
        mapping = None
    return perceptual_path_length(
        G, fns.z_dim, spec.num_gen, space=spec.space, mapping=mapping, distance=distance,
        vgg16_weights=vgg16_weights, batch_size=batch_size, sampling=spec.sampling,
        crop=spec.crop, seed=seed, device=fns.device)
