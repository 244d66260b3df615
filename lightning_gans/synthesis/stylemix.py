"""`lightning-gans style-mix`: the style-mixing grid of the StyleGAN paper (Karras et al., 2019, Fig. 3).

Convention of the official StyleGAN2-ADA `style_mixing.py`: cell (row r, column c) starts from
the row's ws and takes the ws at the layer indices in `styles` from the column. With
`--styles 0-3` the columns give the coarse styles (pose, face shape) and the rows the rest; the
official default `0-6` hands over coarse and middle styles. The grid's top row shows the
column images, its left column the row images, the corner is blank.
"""

from __future__ import annotations

import argparse
import os
from dataclasses import dataclass
from pathlib import Path

import torch

from .common import (
    SynthesisError,
    add_common_args,
    load_latent,
    parse_args,
    parse_int_list,
    prepare_outdir,
    run_synthesis,
)
from .common import seeds_to_ws as _seeds_to_ws
from .generate import as_generator
from .images import make_grid, provenance, save_png
from .load import LoadedGenerator, load_generator


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


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="lightning-gans style-mix", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    add_common_args(p)
    p.add_argument("--rows", default=None, help="row seeds, e.g. 85,100,75")
    p.add_argument("--cols", default=None, help="column seeds, e.g. 55,821,1789")
    p.add_argument("--row-latent", default=None, help=".npz latent file whose ws become extra rows")
    p.add_argument("--col-latent", default=None, help=".npz latent file whose ws become extra columns")
    p.add_argument("--styles", default="0-6", help="layer indices the columns give (default 0-6)")
    a = parse_args(p, argv)
    styles = parse_int_list(a.styles, "--styles")
    row_seeds = parse_int_list(a.rows, "--rows") if a.rows else []
    col_seeds = parse_int_list(a.cols, "--cols") if a.cols else []
    outdir = prepare_outdir(a.outdir)
    gen = load_generator(a.ckpt, a.network, a.device)
    kw = dict(truncation_psi=a.truncation, truncation_cutoff=a.truncation_cutoff, class_idx=a.class_idx)

    def sources(seeds, latent_file, flag):
        parts = [_seeds_to_ws(gen.G, seeds, **kw)] if seeds else []
        if latent_file:
            parts.append(load_latent(latent_file, gen.G))
        if not parts:
            raise SynthesisError(f"give --{flag}s seeds or --{flag}-latent FILE")
        return torch.cat(parts)

    mix = style_mix(gen, sources(row_seeds, a.row_latent, "row"), sources(col_seeds, a.col_latent, "col"),
                    styles, noise_mode=a.noise, batch=a.batch)
    meta = dict(command="style-mix", **gen.provenance(), rows=a.rows, cols=a.cols, styles=a.styles,
                row_latent=Path(a.row_latent).name if a.row_latent else None,
                col_latent=Path(a.col_latent).name if a.col_latent else None,
                truncation_psi=a.truncation, truncation_cutoff=a.truncation_cutoff, noise_mode=a.noise,
                class_idx=a.class_idx)
    R, C = mix.mixed.shape[:2]
    path = save_png(make_grid(mix.grid(), C + 1), outdir / "stylemix-grid.png", provenance(**meta))
    print(f"wrote {path} ({R} rows x {C} columns, styles {a.styles} from the columns)")
    return 0
