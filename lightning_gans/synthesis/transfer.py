"""StarGAN v2 reference- and latent-guided image translation (`lightning-gans transfer`).

Reference-guided: the style of each reference (style encoder of the target domain) is applied
to each source. Latent-guided: styles from the mapping network of the target domain for seeds.
Every PNG carries provenance (checkpoint sha256, domain, source/reference file or seed).
Models with high-pass skips (w_hpf > 0) also need the face-landmark network's weights
(--fan-weights PATH or $LG_FAN_WEIGHTS), whose sha256 the PNGs then carry too.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from ..data.images import center_square, to_rgb
from ..errors import DataError, refuse_overwrite
from ..model_file import LoadedStarGAN, ModelFile, describe
from ..models.latents import seeds_to_z
from .common import SynthesisError, check_seeds, prepare_outdir
from .images import make_grid, provenance, save_png, to_uint8

IMAGE_EXTS = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff")


def as_stargan(model: LoadedStarGAN | ModelFile | str | os.PathLike, network: str = "G_ema",
               device: torch.device | str = "cpu", fan_weights: str | os.PathLike | None = None) -> LoadedStarGAN:
    """A LoadedStarGAN as is, or the one a (described) checkpoint holds ("G_ema": the EMA nets)."""
    if isinstance(model, LoadedStarGAN):
        return model
    mf = model if isinstance(model, ModelFile) else describe(model, ("stargan_v2",))
    return mf.stargan(network, device, fan_weights=fan_weights)


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
    network: str = "G_ema",
    batch: int = 16,
    device: torch.device | str = "cpu",
) -> dict[str, torch.Tensor]:
    """{"source": [S,3,R,R], "reference"?: [R,3,R,R], "reference_guided"?: [R,S,3,R,R],
    "latent_guided"?: [K,S,3,R,R]} float32 CPU tensors (outputs unclamped)."""
    net = as_stargan(model, network, device)
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


def write_transfer(
    net: LoadedStarGAN,
    source: str | os.PathLike,
    domain: int | str,
    outdir: str | os.PathLike,
    *,
    reference: str | os.PathLike | None = None,
    seeds: list[int] | None = None,
    grid: bool = False,
    batch: int = 16,
) -> list[Path]:
    """Translate every source face (a file or a folder) to `domain`: in the style of every
    reference and/or of the mapping network's codes for `seeds`; writes one PNG per pair (and
    the sources x references grid) with provenance, never over an input. Returns the paths."""
    y = net.domain_index(domain)
    src_files = list_images(source, "--source")
    ref_files = list_images(reference, "--reference") if reference is not None else []
    x_src = load_images(src_files, net.img_size, "--source")
    x_ref = load_images(ref_files, net.img_size, "--reference") if ref_files else None
    outdir = prepare_outdir(outdir)
    inputs = [("checkpoint", net.path), *(("--source", f) for f in src_files),
              *(("--reference", f) for f in ref_files)]
    src_names, ref_names = unique_names(src_files), unique_names(ref_files)
    res = transfer(net, x_src, x_ref, y, seeds, batch=batch)
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
        if grid:
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
    return written
