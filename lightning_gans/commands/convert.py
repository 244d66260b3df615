"""`lightning-gans convert SRC OUT`: an official checkpoint to ours, or ours back to an official format.

Official formats, found from the file itself: TF StyleGAN (karras2019stylegan-*.pkl) and
StyleGAN2 (stylegan2-*-config-f.pkl) pickles, StyleGAN2-ADA network-snapshot-*.pkl (read by a
restricted unpickler: nothing in any of them runs), official-named state dicts (.pt, .npz or a
folder of G/D/G_ema.npz), rosinality/stylegan2-pytorch .pt files, and clovaai/stargan-v2
*_nets(_ema).ckpt. --to official-state-dict writes ours as StyleGAN2-ADA (or rosinality) state
dicts, with the networks' settings (num_fp16_res, conv_clamp, ...) in a kwargs JSON beside them.
"""

from __future__ import annotations

from pathlib import Path

from ..checkpoint import atomic_save
from ..errors import refuse_overwrite
from ..interop.convert import KINDS, export_official, load_official, to_checkpoint
from ..model_file import describe
from ..progress import bar
from . import _args


def main(argv: list[str] | None = None) -> int:
    p = _args.parser("convert", __doc__, "stylegan2-ffhq-config-f.pkl ffhq.ckpt --kind stylegan2 --resolution 1024")
    p.add_argument("src", help="official checkpoint (or ours, with --to official-state-dict)")
    p.add_argument("out", help="output: our checkpoint (.ckpt), or the official file/folder")
    p.add_argument("--to", choices=("ours", "official-state-dict"), default="ours", help="the output format")
    p.add_argument("--kind", choices=KINDS, help="refuse unless SRC is this kind of model")
    p.add_argument("--resolution", type=int, help="refuse unless SRC has this resolution")
    p.add_argument("--flavor", choices=("sg2ada", "rosinality"), default="sg2ada",
                   help="naming of the exported StyleGAN2 state dicts")
    a = _args.parse(p, argv)
    refuse_overwrite(a.out, [("SRC", a.src)], "OUT")  # issue 19: never write over the input
    if a.to == "official-state-dict":
        mf = describe(a.src, kind=a.kind, resolution=a.resolution, what="SRC")
        for path in export_official(mf.ckpt, a.out, a.flavor):
            print(f"wrote {path}")
        return 0
    with bar(2, f"convert {Path(a.src).name}", unit="step") as progress:
        progress.set_postfix_str("reading", refresh=True)
        imp = load_official(a.src, kind=a.kind, resolution=a.resolution)
        progress.update(1)
        progress.set_postfix_str("writing", refresh=True)
        path = atomic_save(to_checkpoint(imp), a.out)
        progress.update(1)
    print(f"converted {imp.describe()} -> {path}")
    for note in imp.notes:
        print(f"  note: {note}")
    return 0
