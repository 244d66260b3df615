"""`lightning-gans generate`: images of seeds (or of a projected latent file), per seed and as a grid."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import numpy as np
import torch

from ..errors import refuse_overwrite
from .common import (
    SynthesisError,
    add_common_args,
    load_latent,
    parse_args,
    parse_int_list,
    prepare_outdir,
    run_synthesis,
    seeds_to_ws,
)
from .images import make_grid, provenance, save_png, to_uint8
from .load import LoadedGenerator, load_generator
from .video import write_sidecar


def as_generator(model: LoadedGenerator | str | os.PathLike, network: str = "G_ema",
                 device: torch.device | str = "cpu") -> LoadedGenerator:
    """A LoadedGenerator as is, or the one a checkpoint path holds."""
    return model if isinstance(model, LoadedGenerator) else load_generator(model, network, device)


def generate(
    model: LoadedGenerator | str | os.PathLike,
    seeds: list[int] | None = None,
    *,
    latent: str | os.PathLike | torch.Tensor | None = None,  # ws [N, num_ws, w_dim] or a .npz file
    truncation_psi: float = 1.0,
    truncation_cutoff: int | None = None,
    class_idx: int | None = None,
    noise_mode: str = "const",
    batch: int = 16,
    network: str = "G_ema",
    device: torch.device | str = "cpu",
) -> torch.Tensor:
    """Images [N, C, R, R] float32 (unclamped, nominally [-1, 1]) of seeds or of given ws."""
    gen = as_generator(model, network, device)
    if (seeds is None) == (latent is None):
        raise SynthesisError("give exactly one of --seeds and --latent")
    if latent is not None:
        ws = latent if isinstance(latent, torch.Tensor) else load_latent(latent, gen.G)
        if not torch.isfinite(ws).all():
            where = "--latent" if isinstance(latent, torch.Tensor) else f"--latent {latent}"
            raise SynthesisError(f"{where} holds NaN/inf values: re-project the image, or give another file")
    else:
        ws = seeds_to_ws(gen.G, seeds, truncation_psi, truncation_cutoff, class_idx)
    imgs = run_synthesis(gen.G, ws, noise_mode, batch)
    if not torch.isfinite(imgs).all():  # would be saved as black images that look like output
        raise SynthesisError(f"the generator of {gen.path} produced NaN/inf pixels (truncation "
                             f"{truncation_psi}); the checkpoint is damaged or diverged: use an earlier one")
    return imgs


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="lightning-gans generate", description=__doc__)
    add_common_args(p)
    p.add_argument("--seeds", default=None, help="seeds, e.g. 0-63 or 1,5,9 (z as the official scripts)")
    p.add_argument("--latent", default=None, help=".npz latent file from `project` (instead of --seeds)")
    p.add_argument("--grid", action="store_true", help="also write all images as one grid.png")
    p.add_argument("--grid-cols", type=int, default=None, help="grid columns (default ~sqrt(N))")
    p.add_argument("--no-singles", action="store_true", help="skip the per-seed PNGs (with --grid)")
    p.add_argument("--raw", default=None, help="also save the float32 NCHW output, unclamped, to FILE.npy")
    a = parse_args(p, argv)
    seeds = parse_int_list(a.seeds) if a.seeds is not None else None
    if a.no_singles and not a.grid:
        raise SynthesisError("--no-singles without --grid would write no images; add --grid")
    outdir = prepare_outdir(a.outdir)
    gen = load_generator(a.ckpt, a.network, a.device)
    imgs = generate(gen, seeds, latent=a.latent, truncation_psi=a.truncation,
                    truncation_cutoff=a.truncation_cutoff, class_idx=a.class_idx, noise_mode=a.noise,
                    batch=a.batch)
    common = dict(command="generate", **gen.provenance(), noise_mode=a.noise, class_idx=a.class_idx)
    if a.latent is None:
        common.update(truncation_psi=a.truncation, truncation_cutoff=a.truncation_cutoff)
    else:
        common.update(latent_file=Path(a.latent).name, truncation_psi="n/a (latent given as w)")
    names = ([f"seed{s:04d}" for s in seeds] if seeds is not None
             else [f"latent{i:04d}" for i in range(imgs.shape[0])])
    written = []
    if not a.no_singles:
        for name, arr, i in zip(names, to_uint8(imgs), range(len(names))):
            src = {"seed": seeds[i]} if seeds is not None else {"latent_index": i}
            written.append(save_png(arr, outdir / f"{name}.png", provenance(**common, **src)))
    if a.grid:
        src = {"seeds": a.seeds} if seeds is not None else {}
        written.append(save_png(make_grid(imgs, a.grid_cols), outdir / "grid.png", provenance(**common, **src)))
    if a.raw:
        raw = Path(a.raw) if a.raw.endswith(".npy") else Path(a.raw + ".npy")  # np.save would add it
        refuse_overwrite(raw, [("checkpoint", a.ckpt), ("--latent", a.latent)], "--raw")
        raw.parent.mkdir(parents=True, exist_ok=True)
        np.save(raw, imgs.numpy().astype(np.float32))
        write_sidecar(raw, provenance(**common, seeds=a.seeds))
        written.append(raw)
    print(f"wrote {len(written)} files to {outdir}" + (f" and {raw}" if a.raw else ""))
    return 0
