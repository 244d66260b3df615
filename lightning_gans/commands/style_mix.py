"""`lightning-gans style-mix CKPT --rows 85,100 --cols 55,821`: the style-mixing grid of the
StyleGAN paper (Karras et al., 2019, Fig. 3).

Cell (row r, column c) starts from the row's ws and takes the ws at the layer indices in
--styles from the column (the official style_mixing.py convention): --styles 0-3 hands over the
coarse styles (pose, face shape), the official default 0-6 coarse and middle ones. The grid's
top row shows the column images, its left column the row images.
"""

from __future__ import annotations

from pathlib import Path

from ..synthesis.common import parse_int_list, prepare_outdir
from ..synthesis.generate import as_generator
from ..synthesis.stylemix import sources, style_mix, write_style_mix
from . import _args


def main(argv: list[str] | None = None) -> int:
    p = _args.parser("style-mix", __doc__, "ffhq.ckpt --rows 85,100,75 --cols 55,821,1789 --styles 0-6")
    _args.add_synthesis(p)
    p.add_argument("--rows", default=None, help="row seeds, e.g. 85,100,75")
    p.add_argument("--cols", default=None, help="column seeds, e.g. 55,821,1789")
    p.add_argument("--row-latent", default=None, help=".npz latent file whose ws become extra rows")
    p.add_argument("--col-latent", default=None, help=".npz latent file whose ws become extra columns")
    p.add_argument("--styles", default="0-6", help="layer indices the columns give")
    a = _args.parse(p, argv)
    styles = parse_int_list(a.styles, "--styles")
    row_seeds = parse_int_list(a.rows, "--rows") if a.rows else []
    col_seeds = parse_int_list(a.cols, "--cols") if a.cols else []
    prepare_outdir(a.outdir)  # a bad folder fails before the checkpoint is read
    gen = as_generator(a.ckpt, a.network, a.device)
    kw = dict(truncation_psi=a.truncation, truncation_cutoff=a.truncation_cutoff, class_idx=a.class_idx)
    mix = style_mix(gen, sources(gen, row_seeds, a.row_latent, "row", **kw),
                    sources(gen, col_seeds, a.col_latent, "col", **kw), styles, noise_mode=a.noise, batch=a.batch)
    path = write_style_mix(mix, a.outdir, dict(
        **gen.provenance(), rows=a.rows, cols=a.cols, styles=a.styles,
        row_latent=Path(a.row_latent).name if a.row_latent else None,
        col_latent=Path(a.col_latent).name if a.col_latent else None, noise_mode=a.noise, **kw))
    R, C = mix.mixed.shape[:2]
    print(f"wrote {path} ({R} rows x {C} columns, styles {a.styles} from the columns)")
    return 0
