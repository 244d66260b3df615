"""`lightning-gans transfer CKPT --source faces/ --reference refs/ --domain 1`: StarGAN v2
reference- and latent-guided image translation.

Reference-guided: the style of each reference (style encoder of the target domain) is applied
to each source. Latent-guided: styles from the mapping network of the target domain for seeds.
Every PNG carries provenance (checkpoint sha256, domain, source/reference file or seed).
Models with high-pass skips (w_hpf > 0) also need the face-landmark network's weights
(--fan-weights PATH or $LG_FAN_WEIGHTS), whose sha256 the PNGs then carry too.
"""

from __future__ import annotations

from ..errors import ConfigError
from ..synthesis.common import parse_int_list, prepare_outdir
from ..synthesis.transfer import as_stargan, write_transfer
from . import _args


def main(argv: list[str] | None = None) -> int:
    p = _args.parser("transfer", __doc__, "celeba_hq.ckpt --source faces/ --reference refs/ --domain female --grid")
    _args.add_checkpoint(p, "StarGAN v2 checkpoint: ours (`lightning-gans train`) or the official *_nets_ema.ckpt")
    p.add_argument("--source", required=True, help="source face image, or a folder of them")
    p.add_argument("--reference", default=None, help="reference face image, or a folder of them")
    p.add_argument("--domain", required=True, help="target domain: index (or a name the checkpoint stores)")
    p.add_argument("--latent-seeds", default=None, help="also latent-guided outputs for seeds, e.g. 0-3")
    p.add_argument("--grid", action="store_true", help="also write sources x references grid.png")
    _args.add_network(p)
    _args.add_outdir(p)
    _args.add_device(p)
    _args.add_batch(p)
    p.add_argument("--fan-weights", default=None, help="w_hpf > 0 models: face-landmark (FAN) weights, the "
                   "official StarGAN v2 wing.ckpt (default: $LG_FAN_WEIGHTS)")
    _args.add_output(p)
    a = _args.parse(p, argv)
    seeds = parse_int_list(a.latent_seeds, "--latent-seeds") if a.latent_seeds is not None else None
    if a.reference is None and not seeds:
        raise ConfigError("nothing to do: give --reference and/or --latent-seeds")
    if a.grid and a.reference is None:
        raise ConfigError("--grid needs --reference (the grid is sources x references)")
    prepare_outdir(a.outdir)  # a bad folder fails before the checkpoint is read
    net = as_stargan(a.ckpt, a.network, a.device, fan_weights=a.fan_weights)
    written = write_transfer(net, a.source, a.domain, a.outdir, reference=a.reference, seeds=seeds, grid=a.grid,
                             batch=a.batch)
    print(f"wrote {len(written)} files to {a.outdir}")
    return 0
