"""`lightning-gans generate CKPT --seeds 0-63`: images of seeds (or of a projected latent file),
per seed and as a grid, each PNG with provenance, C2PA manifest and watermark."""

from __future__ import annotations

from ..errors import ConfigError
from ..synthesis.common import parse_int_list, prepare_outdir
from ..synthesis.generate import as_generator, generate, write_generated
from . import _args


def main(argv: list[str] | None = None) -> int:
    p = _args.parser("generate", __doc__, "ffhq.ckpt --seeds 0-63 --truncation 0.7 --grid --outdir out/")
    _args.add_synthesis(p)
    p.add_argument("--seeds", default=None, help="seeds, e.g. 0-63 or 1,5,9 (z as the official scripts)")
    p.add_argument("--latent", default=None, help=".npz latent file from `project` (instead of --seeds)")
    p.add_argument("--grid", action="store_true", help="also write all images as one grid.png")
    p.add_argument("--grid-cols", type=int, default=None, help="grid columns (default ~sqrt(N))")
    p.add_argument("--no-singles", action="store_true", help="skip the per-seed PNGs (with --grid)")
    p.add_argument("--raw", default=None, help="also save the float32 NCHW output, unclamped, to FILE.npy")
    a = _args.parse(p, argv)
    seeds = parse_int_list(a.seeds) if a.seeds is not None else None
    settings = dict(truncation_psi=a.truncation, truncation_cutoff=a.truncation_cutoff, class_idx=a.class_idx,
                    noise_mode=a.noise)
    if a.no_singles and not a.grid:
        raise ConfigError("--no-singles without --grid would write no images; add --grid")
    prepare_outdir(a.outdir)  # a bad folder fails before the checkpoint is read
    gen = as_generator(a.ckpt, a.network, a.device)
    imgs = generate(gen, seeds, latent=a.latent, batch=a.batch, **settings)
    written = write_generated(gen, imgs, a.outdir, seeds, latent=a.latent, singles=not a.no_singles, grid=a.grid,
                              grid_cols=a.grid_cols, raw=a.raw, seed_spec=a.seeds, **settings)
    raw = [p for p in written if p.suffix == ".npy"]
    print(f"wrote {len(written)} files to {a.outdir}" + (f" and {raw[0]}" if raw else ""))
    return 0
