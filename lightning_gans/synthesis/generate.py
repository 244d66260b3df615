"""Images of seeds (or of a projected latent file), per seed and as a grid: `lightning-gans generate`."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch

from ..errors import refuse_overwrite
from ..model_file import LoadedGenerator, ModelFile, describe
from .common import (
    SynthesisError,
    load_latent,
    prepare_outdir,
    run_synthesis,
    seeds_to_ws,
)
from .images import make_grid, provenance, save_png, to_uint8
from .video import write_sidecar

GENERATOR_KINDS = ("stylegan2", "stylegan")


def as_generator(model: LoadedGenerator | ModelFile | str | os.PathLike, network: str = "G_ema",
                 device: torch.device | str = "cpu") -> LoadedGenerator:
    """A LoadedGenerator as is, or the one a (described) checkpoint holds (StyleGAN2 or StyleGAN)."""
    if isinstance(model, LoadedGenerator):
        return model
    mf = model if isinstance(model, ModelFile) else describe(model, GENERATOR_KINDS)
    return mf.generator(network, device)


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


def write_generated(
    gen: LoadedGenerator,
    imgs: torch.Tensor,
    outdir: str | os.PathLike,
    seeds: list[int] | None = None,
    *,
    latent: str | os.PathLike | None = None,
    singles: bool = True,
    grid: bool = False,
    grid_cols: int | None = None,
    raw: str | os.PathLike | None = None,
    seed_spec: str | None = None,
    **settings,
) -> list[Path]:
    """Write generate's outputs with provenance: a PNG per seed (or latent row), grid.png, and the
    float32 NCHW output as RAW.npy with a sidecar. `settings`: how imgs were made (truncation_psi,
    truncation_cutoff, noise_mode, class_idx), recorded in every file; seed_spec: the seeds as the
    user wrote them ("0-63")."""
    outdir = prepare_outdir(outdir)
    common = dict(command="generate", **gen.provenance(), noise_mode=settings.get("noise_mode"),
                  class_idx=settings.get("class_idx"))
    if latent is None:
        common.update(truncation_psi=settings.get("truncation_psi"),
                      truncation_cutoff=settings.get("truncation_cutoff"))
    else:
        common.update(latent_file=Path(latent).name, truncation_psi="n/a (latent given as w)")
    seed_text = seed_spec or (",".join(map(str, seeds)) if seeds is not None else None)
    names = ([f"seed{s:04d}" for s in seeds] if seeds is not None
             else [f"latent{i:04d}" for i in range(imgs.shape[0])])
    written = []
    if singles:
        for name, arr, i in zip(names, to_uint8(imgs), range(len(names))):
            src = {"seed": seeds[i]} if seeds is not None else {"latent_index": i}
            written.append(save_png(arr, outdir / f"{name}.png", provenance(**common, **src)))
    if grid:
        src = {"seeds": seed_text} if seeds is not None else {}
        written.append(save_png(make_grid(imgs, grid_cols), outdir / "grid.png", provenance(**common, **src)))
    if raw:
        raw = Path(raw) if str(raw).endswith(".npy") else Path(f"{raw}.npy")  # np.save would add it
        refuse_overwrite(raw, [("checkpoint", gen.path), ("--latent", latent)], "--raw")
        raw.parent.mkdir(parents=True, exist_ok=True)
        np.save(raw, imgs.numpy().astype(np.float32))
        write_sidecar(raw, provenance(**common, seeds=seed_text))
        written.append(raw)
    return written
