"""The style-mixing grid (`lightning-gans style-mix`) of the StyleGAN paper (Karras et al., 2019, Fig. 3).

Convention of the official StyleGAN2-ADA `style_mixing.py`: cell (row r, column c) starts from
the row's ws and takes the ws at the layer indices in `styles` from the column. With
`--styles 0-3` the columns give the coarse styles (pose, face shape) and the rows the rest; the
official default `0-6` hands over coarse and middle styles. The grid's top row shows the
column images, its left column the row images, the corner is blank.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import torch

from ..model_file import LoadedGenerator
from .common import (
    SynthesisError,
    load_latent,
    prepare_outdir,
    run_synthesis,
)
from .common import seeds_to_ws as _seeds_to_ws
from .generate import as_generator
from .images import make_grid, provenance, save_png


@dataclass
class StyleMix:
    """Row/column source images and the mixed images, with the ws that made each."""

    row_ws: torch.Tensor     # [R, num_ws, w_dim]
    col_ws: torch.Tensor     # [C, num_ws, w_dim]
    mixed_ws: torch.Tensor   # [R, C, num_ws, w_dim]
    row_images: torch.Tensor  # [R, ch, H, W]
    col_images: torch.Tensor  # [C, ch, H, W]
    mixed: torch.Tensor      # [R, C, ch, H, W]

    def grid(self) -> torch.Tensor:
        """[(R + 1) * (C + 1), ch, H, W] row-major: blank corner, column images, then each row."""
        R, C = self.mixed.shape[:2]
        blank = torch.ones_like(self.col_images[:1])  # white in [-1, 1]
        rows = [torch.cat([blank, self.col_images])]
        rows += [torch.cat([self.row_images[r : r + 1], self.mixed[r]]) for r in range(R)]
        return torch.cat(rows)


def mix_ws(row_ws: torch.Tensor, col_ws: torch.Tensor, styles: list[int]) -> torch.Tensor:
    """[R, C, num_ws, w_dim]: row r's ws with the layers in `styles` from column c."""
    num_ws = row_ws.shape[1]
    bad = [s for s in styles if not 0 <= s < num_ws]
    if bad:
        raise SynthesisError(f"--styles {bad} out of range: this generator has ws 0..{num_ws - 1}")
    out = row_ws[:, None].repeat(1, col_ws.shape[0], 1, 1)
    idx = torch.tensor(sorted(set(styles)), dtype=torch.long)
    out[:, :, idx] = col_ws[None, :, idx].expand(row_ws.shape[0], -1, -1, -1)
    return out


def style_mix(
    model: LoadedGenerator | str | os.PathLike,
    rows: list[int] | torch.Tensor,  # seeds, or ws [R, num_ws, w_dim] (e.g. a projected latent)
    cols: list[int] | torch.Tensor,
    styles: list[int],
    *,
    truncation_psi: float = 1.0,
    truncation_cutoff: int | None = None,
    class_idx: int | None = None,
    noise_mode: str = "const",
    batch: int = 16,
    network: str = "G_ema",
    device: torch.device | str = "cpu",
) -> StyleMix:
    """The style-mixing grid of row and column seeds (or ws)."""
    gen = as_generator(model, network, device)

    def ws_of(src):
        if isinstance(src, torch.Tensor):
            return src.to(gen.G.mapping.w_avg.device)
        return _seeds_to_ws(gen.G, src, truncation_psi, truncation_cutoff, class_idx)

    row_ws, col_ws = ws_of(rows), ws_of(cols)
    mixed_ws = mix_ws(row_ws, col_ws, styles)
    R, C = mixed_ws.shape[:2]
    imgs = run_synthesis(gen.G, torch.cat([row_ws, col_ws, mixed_ws.flatten(0, 1)]), noise_mode, batch)
    return StyleMix(row_ws, col_ws, mixed_ws, imgs[:R], imgs[R : R + C], imgs[R + C :].unflatten(0, (R, C)))


def sources(gen: LoadedGenerator, seeds: list[int], latent_file: str | os.PathLike | None, flag: str,
            truncation_psi: float = 1.0, truncation_cutoff: int | None = None,
            class_idx: int | None = None) -> torch.Tensor:
    """ws [N, num_ws, w_dim] of one side of the grid: its seeds, then the rows of a latent file."""
    parts = [_seeds_to_ws(gen.G, seeds, truncation_psi, truncation_cutoff, class_idx)] if seeds else []
    if latent_file:
        parts.append(load_latent(latent_file, gen.G))
    if not parts:
        raise SynthesisError(f"give --{flag}s seeds or --{flag}-latent FILE")
    return torch.cat(parts)


def write_style_mix(mix: StyleMix, outdir: str | os.PathLike, meta: dict) -> Path:
    """stylemix-grid.png in outdir, with `meta` (how it was made) as its provenance."""
    return save_png(make_grid(mix.grid(), mix.mixed.shape[1] + 1), prepare_outdir(outdir) / "stylemix-grid.png",
                    provenance(command="style-mix", **meta))
