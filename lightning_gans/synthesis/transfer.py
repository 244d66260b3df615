"""`lightning-gans transfer`: StarGAN v2 reference- and latent-guided image translation.

Reference-guided: the style of each reference (style encoder of the target domain) is applied
to each source. Latent-guided: styles from the mapping network of the target domain for seeds.
Every PNG carries provenance (checkpoint sha256, domain, source/reference file or seed).
Models with high-pass skips (w_hpf > 0) also need the face-landmark network's weights
(--fan-weights PATH or $LG_FAN_WEIGHTS), whose sha256 the PNGs then carry too.
"""

from __future__ import annotations

import argparse
import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from ..checkpoint import check_architecture, file_sha256, safe_load
from ..data.images import center_square, to_rgb
from ..errors import CheckpointError, DataError, refuse_overwrite
from ..interop.stargan_v2 import load_fan
from ..models.fan import FAN
from ..models.stargan_v2 import build_networks
from ..pretrained.weights import resolve_fan_weights
from .common import SynthesisError, add_output_args, check_seeds, parse_args, parse_int_list, prepare_outdir
from .images import make_grid, provenance, save_png, to_uint8
from .latents import seeds_to_z
from .load import load_prefixed, prefixed

NETWORKS = ("ema", "trained")
IMAGE_EXTS = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff")


@dataclass
class LoadedStarGAN:
    """G, F (mapping), E (style encoder) in eval mode plus what provenance needs."""

    G: torch.nn.Module
    F: torch.nn.Module
    E: torch.nn.Module
    img_size: int
    num_domains: int
    latent_dim: int
    name: str
    network: str   # "ema" or "trained"
    path: Path
    sha256: str
    domain_names: list[str] = field(default_factory=list)
    fan: FAN | None = None  # w_hpf > 0: the face-landmark network of the generator's masks
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
            raise SynthesisError(f"--domain {domain!r} is not a domain of this model ({known}); "
                                 f"give an index 0..{self.num_domains - 1}")
        if not 0 <= int(domain) < self.num_domains:
            raise SynthesisError(f"--domain {domain} is out of range: this model has "
                                 f"{self.num_domains} domains (0..{self.num_domains - 1})")
        return int(domain)


def load_stargan(path: str | os.PathLike, network: str = "ema",
                 device: torch.device | str = "cpu", fan_weights: str | os.PathLike | None = None,
                 ckpt: dict | None = None) -> LoadedStarGAN:
    """Rebuild G/F/E (EMA copies by default) of a StarGAN v2 checkpoint (weights-only load);
    a w_hpf > 0 model also loads the FAN from fan_weights (None: $LG_FAN_WEIGHTS). `ckpt`: the
    file's contents when the caller has already read them."""
    if network not in NETWORKS:
        raise CheckpointError(f"--network {network!r} is not one of {', '.join(NETWORKS)}")
    path = Path(path)
    ckpt = safe_load(path) if ckpt is None else ckpt
    config = ckpt.get("model_config") if isinstance(ckpt, dict) else None
    if not isinstance(config, dict) or "kind" not in config:
        raise CheckpointError(f"checkpoint {path} has no model_config; it was not written by "
                              "`lightning-gans train`")
    if config["kind"] != "stargan_v2":
        raise CheckpointError(f"checkpoint {path} holds a {config['kind']!r} model; `transfer` needs a "
                              "StarGAN v2 checkpoint (kind 'stargan_v2')")
    kwargs = dict(config.get("net_kwargs") or {})
    hparams = ckpt.get("hyper_parameters") or {}
    fan = fan_sha = None
    if float(kwargs.get("w_hpf", 1)) > 0:
        fan_path = resolve_fan_weights(fan_weights, "--fan-weights", user=f"checkpoint {path} (w_hpf="
                                       f"{kwargs.get('w_hpf', 1)})")
        fan, fan_sha = load_fan(fan_path).to(device), file_sha256(fan_path)
        trained = hparams.get("fan_sha256")
        if trained and trained != fan_sha:
            warnings.warn(f"FAN weights {fan_path} (sha256 {fan_sha[:12]}...) are not those checkpoint {path} "
                          f"was trained with (sha256 {trained[:12]}..., {hparams.get('fan_weights')})", stacklevel=2)
    suffix = "_ema" if network == "ema" else ""
    for attr, key in (("G", "generator"), ("F", "mapping_network"), ("E", "style_encoder")):
        weights = prefixed(ckpt, attr + suffix)
        if weights:  # none: load_prefixed says which --network to try
            check_architecture(lambda key=key: build_networks(**kwargs, he_init=False)[key], weights,
                               path, "model_config net_kwargs")
    nets = build_networks(**kwargs, he_init=False)
    other = "trained" if network == "ema" else "ema"
    loaded = {attr: load_prefixed(nets[key], ckpt, attr + suffix, path, other).eval().requires_grad_(False).to(device)
              for attr, key in (("G", "generator"), ("F", "mapping_network"), ("E", "style_encoder"))}
    names = ckpt.get("domain_names") or hparams.get("domain_names") or []
    G = loaded["G"]
    return LoadedStarGAN(G=G, F=loaded["F"], E=loaded["E"], img_size=G.img_size,
                         num_domains=loaded["F"].num_domains, latent_dim=loaded["F"].latent_dim,
                         name=str(config.get("name", "?")), network=network, path=path,
                         sha256=file_sha256(path), domain_names=[str(n) for n in names], fan=fan,
                         fan_sha256=fan_sha)


def list_images(path: str | os.PathLike, what: str) -> list[Path]:
    """One image file, or the image files of a folder (sorted, non-recursive)."""
    path = Path(path)
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_EXTS)
        if not files:
            raise DataError(f"{what} {path}: folder holds no images ({', '.join(IMAGE_EXTS)})")
        return files
    if not path.is_file():
        raise DataError(f"{what} {path}: no such file or folder")
    return [path]


def load_images(files: list[Path], img_size: int, what: str) -> torch.Tensor:
    """Image files -> [N, 3, R, R] float32 in [-1, 1] (RGB, centre square, Lanczos)."""
    out = []
    for f in files:
        try:
            with Image.open(f) as im:
                im.load()
                img = center_square(to_rgb(im), img_size)
        except (UnidentifiedImageError, OSError, ValueError) as e:
            raise DataError(f"{what} {f}: not a readable image ({type(e).__name__}: {e}); give a PNG/JPEG "
                            "photo") from None
        arr = np.asarray(img, dtype=np.float32)
        out.append(torch.from_numpy(arr).permute(2, 0, 1) / 127.5 - 1.0)
    return torch.stack(out)


def _as_tensor(x, img_size: int, what: str) -> tuple[torch.Tensor, list[Path]]:
    if isinstance(x, torch.Tensor):
        if x.ndim == 3:
            x = x.unsqueeze(0)
        if x.ndim != 4 or tuple(x.shape[1:]) != (3, img_size, img_size):
            raise DataError(f"{what}: tensor of shape {tuple(x.shape)}; expected [N, 3, {img_size}, {img_size}]")
        return x.float(), []
    files = list_images(x, what)
    return load_images(files, img_size, what), files


@torch.no_grad()
def transfer(
    model: LoadedStarGAN | str | os.PathLike,
    source,                                   # image file, folder, or [N,3,R,R] tensor in [-1,1]
    reference=None,                           # same kinds, or None for latent-guided only
    domain: int | str = 0,
    latent_seeds: list[int] | None = None,
    *,
    network: str = "ema",
    batch: int = 16,
    device: torch.device | str = "cpu",
) -> dict[str, torch.Tensor]:
    """{"source": [S,3,R,R], "reference"?: [R,3,R,R], "reference_guided"?: [R,S,3,R,R],
    "latent_guided"?: [K,S,3,R,R]} float32 CPU tensors (outputs unclamped)."""
    net = model if isinstance(model, LoadedStarGAN) else load_stargan(model, network, device)
    dev = next(net.G.parameters()).device
    y = net.domain_index(domain)
    x_src, _ = _as_tensor(source, net.img_size, "--source")
    if reference is None and not latent_seeds:
        raise SynthesisError("nothing to do: give --reference and/or --latent-seeds")
    batch = max(1, batch)
    S = x_src.shape[0]
    out = {"source": x_src}
    src_masks = net.masks(x_src, batch)  # once per source (w_hpf > 0), shared by every style

    def translate(styles: torch.Tensor) -> torch.Tensor:
        """styles [K, style_dim] -> [K, S, 3, R, R]: every style applied to every source."""
        def per_style(t: torch.Tensor) -> torch.Tensor:
            return t.unsqueeze(0).expand(styles.shape[0], *t.shape).reshape(-1, *t.shape[1:])

        xs = per_style(x_src)
        ms = [per_style(m) for m in src_masks] if src_masks is not None else None
        ss = styles.unsqueeze(1).expand(-1, S, -1).reshape(-1, styles.shape[1])
        res = [net.G(xs[i:i + batch].to(dev), ss[i:i + batch].to(dev),
                     masks=None if ms is None else [m[i:i + batch] for m in ms]).float().cpu()
               for i in range(0, xs.shape[0], batch)]
        return torch.cat(res).reshape(styles.shape[0], S, *x_src.shape[1:])

    def ys(n: int) -> torch.Tensor:
        return torch.full((n,), y, dtype=torch.int64, device=dev)

    if reference is not None:
        x_ref, _ = _as_tensor(reference, net.img_size, "--reference")
        s_ref = torch.cat([net.E(x_ref[i:i + batch].to(dev), ys(len(x_ref[i:i + batch])))
                           for i in range(0, x_ref.shape[0], batch)])
        out["reference"] = x_ref
        out["reference_guided"] = translate(s_ref)
    if latent_seeds:
        z = seeds_to_z(check_seeds(list(latent_seeds), "--latent-seeds"), net.latent_dim).to(dev)
        s_lat = net.F(z, ys(z.shape[0]))
        out["latent_guided"] = translate(s_lat)
    return out


def unique_names(files: list[Path]) -> list[str]:
    """A name per file for output names: its stem, or stem_ext where stems repeat (face.png and
    face.jpg -> face_png, face_jpg), then a number where even that repeats."""
    stems = [f.stem for f in files]
    names = [f"{f.stem}_{f.suffix.lstrip('.').lower()}" if stems.count(f.stem) > 1 else f.stem for f in files]
    seen: dict[str, int] = {}
    out = []
    for n in names:
        k = seen.get(n, 0)
        seen[n] = k + 1
        out.append(n if k == 0 else f"{n}_{k}")
    return out


def reference_grid(src: torch.Tensor, ref: torch.Tensor, outs: torch.Tensor) -> np.ndarray:
    """(1+R) x (1+S) tiles: blank corner, sources on the top row, each reference then its outputs."""
    S, R = src.shape[0], ref.shape[0]
    blank = torch.ones_like(src[:1])  # white
    rows = [torch.cat([blank, src])] + [torch.cat([ref[r:r + 1], outs[r]]) for r in range(R)]
    return make_grid(torch.cat(rows), cols=1 + S)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="lightning-gans transfer", description=__doc__)
    p.add_argument("ckpt", help="StarGAN v2 checkpoint written by `lightning-gans train`")
    p.add_argument("--source", required=True, help="source face image, or a folder of them")
    p.add_argument("--reference", default=None, help="reference face image, or a folder of them")
    p.add_argument("--domain", required=True, help="target domain: index (or a name the checkpoint stores)")
    p.add_argument("--latent-seeds", default=None, help="also latent-guided outputs for seeds, e.g. 0-3")
    p.add_argument("--outdir", default="out", help="output folder (created)")
    p.add_argument("--grid", action="store_true", help="also write sources x references grid.png")
    p.add_argument("--network", default="ema", choices=NETWORKS, help="EMA nets (default) or trained ones")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--batch", type=int, default=16, help="images per forward pass")
    p.add_argument("--fan-weights", default=None, help="w_hpf > 0 models: face-landmark (FAN) weights, the "
                   "official StarGAN v2 wing.ckpt (default: $LG_FAN_WEIGHTS)")
    add_output_args(p)
    a = parse_args(p, argv)
    seeds = parse_int_list(a.latent_seeds, "--latent-seeds") if a.latent_seeds is not None else None
    if a.reference is None and not seeds:
        raise SynthesisError("nothing to do: give --reference and/or --latent-seeds")
    if a.grid and a.reference is None:
        raise SynthesisError("--grid needs --reference (the grid is sources x references)")
    net = load_stargan(a.ckpt, a.network, a.device, fan_weights=a.fan_weights)
    y = net.domain_index(a.domain)
    src_files = list_images(a.source, "--source")
    ref_files = list_images(a.reference, "--reference") if a.reference is not None else []
    x_src = load_images(src_files, net.img_size, "--source")
    x_ref = load_images(ref_files, net.img_size, "--reference") if ref_files else None
    outdir = prepare_outdir(a.outdir)
    inputs = [("checkpoint", a.ckpt), *(("--source", f) for f in src_files),
              *(("--reference", f) for f in ref_files)]
    src_names, ref_names = unique_names(src_files), unique_names(ref_files)
    res = transfer(net, x_src, x_ref, y, seeds, batch=a.batch)
    dname = net.domain_names[y] if y < len(net.domain_names) else None
    common = dict(command="transfer", **net.provenance(), domain=y, domain_name=dname)
    written = []
    if x_ref is not None:
        for r, rf in enumerate(ref_files):
            for s, sf in enumerate(src_files):
                arr = to_uint8(res["reference_guided"][r, s:s + 1])[0]
                path = refuse_overwrite(outdir / f"ref_{src_names[s]}__{ref_names[r]}.png", inputs)
                written.append(save_png(arr, path, provenance(**common, mode="reference-guided",
                                                              source_file=sf.name, reference_file=rf.name)))
        if a.grid:
            grid = reference_grid(res["source"], res["reference"], res["reference_guided"])
            written.append(save_png(grid, refuse_overwrite(outdir / "grid.png", inputs), provenance(
                **common, mode="reference-guided grid", layout="rows: blank+sources, then reference+outputs",
                source_files=",".join(f.name for f in src_files),
                reference_files=",".join(f.name for f in ref_files))))
    if seeds:
        for k, seed in enumerate(seeds):
            for s, sf in enumerate(src_files):
                arr = to_uint8(res["latent_guided"][k, s:s + 1])[0]
                path = refuse_overwrite(outdir / f"latent_{src_names[s]}__seed{seed:04d}.png", inputs)
                written.append(save_png(arr, path, provenance(**common, mode="latent-guided",
                                                              source_file=sf.name, seed=seed)))
    assert len(set(map(str, written))) == len(written), "transfer output names collide"
    print(f"wrote {len(written)} files to {outdir}")
    return 0
