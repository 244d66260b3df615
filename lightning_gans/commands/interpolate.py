"""`lightning-gans interpolate CKPT --seeds 1,2,3`: a walk through keyframes as PNG frames and a video.

--space z walks great circles between the seeds' z (spherical interpolation keeps |z| near
sqrt(z_dim), where the mapping network was trained) and maps every frame; --space w walks
straight lines between the (truncated) ws. --frames F is the number of steps per keyframe pair:
K keyframes give (K - 1) * F + 1 frames, the first and last being the endpoints' images.

Given a StarGAN v2 checkpoint, it walks the style code of one --source face instead: between
the style-encoder codes of --references A.png,B.png,... or the mapping-network codes of
--seeds, in --domain y.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from ..errors import ConfigError
from ..model_file import describe
from ..synthesis.common import parse_int_list, prepare_outdir
from ..synthesis.generate import as_generator
from ..synthesis.interpolate import walk
from ..synthesis.style_interp import walk_styles
from ..synthesis.video import FORMATS, check_format
from . import _args

# Flags of one model family only: given (not at their default) with the other family's checkpoint,
# they are an error rather than silently ignored.
STYLEGAN_ONLY = {"truncation": "--truncation", "truncation_cutoff": "--truncation-cutoff", "class_idx": "--class",
                 "noise": "--noise", "latent": "--latent", "space": "--space"}
STARGAN_ONLY = {"source": "--source", "references": "--references", "domain": "--domain",
                "fan_weights": "--fan-weights"}


def given(a: argparse.Namespace, p: argparse.ArgumentParser, flags: dict[str, str]) -> list[str]:
    """The flags of `flags` whose value differs from the parser's default."""
    return [flag for dest, flag in flags.items() if getattr(a, dest) != p.get_default(dest)]


def main(argv: list[str] | None = None) -> int:
    p = _args.parser("interpolate", __doc__, "ffhq.ckpt --seeds 1,2,3 --frames 60 --space z --outdir walk/")
    _args.add_synthesis(p)
    p.add_argument("--seeds", default=None, help="keyframe seeds, e.g. 1,2,3 (StarGAN v2: latent-guided styles)")
    p.add_argument("--latent", default=None, help=".npz latent file whose ws are appended as keyframes")
    p.add_argument("--frames", type=int, default=60, help="frames per keyframe pair")
    p.add_argument("--space", default="w", choices=["w", "z"], help="interpolate in W (lerp) or Z (slerp)")
    p.add_argument("--fps", type=float, default=30.0, help="frames per second of the video")
    p.add_argument("--format", default="auto", choices=list(FORMATS),
                   help="video format (auto: mp4 when imageio-ffmpeg is installed, else GIF)")
    p.add_argument("--no-frames", action="store_true", help="write only the video, not the PNG frames")
    g = p.add_argument_group("StarGAN v2 checkpoints (style-code interpolation; --network G_ema = EMA nets)")
    g.add_argument("--source", default=None, help="the one source face every frame translates")
    g.add_argument("--references", default=None, help="keyframe reference faces: A.png,B.png[,...] or a folder")
    g.add_argument("--domain", default=None, help="target domain: index (or a name the checkpoint stores)")
    g.add_argument("--fan-weights", default=None,
                   help="w_hpf > 0 models: the FAN file of the generator's masks (default: $LG_FAN_WEIGHTS)")
    a = _args.parse(p, argv)
    if a.fps <= 0:
        raise ConfigError(f"--fps {a.fps}: must be > 0")
    seeds = parse_int_list(a.seeds) if a.seeds is not None else None
    check_format(a.format)  # before any folder is made or checkpoint read
    mf = describe(a.ckpt)  # read once; the branch below builds its networks from it
    if mf.kind == "stargan_v2":
        wrong = given(a, p, STYLEGAN_ONLY)
        if wrong:
            raise ConfigError(f"{', '.join(wrong)}: StyleGAN option(s), but {a.ckpt} is a StarGAN v2 checkpoint; "
                              "it interpolates style codes: give --source, --references A,B (or --seeds) and --domain")
        if a.source is None:
            raise ConfigError("a StarGAN v2 checkpoint needs --source FACE (the face every frame translates)")
        if a.domain is None:
            raise ConfigError("a StarGAN v2 checkpoint needs --domain (the target domain's index or name)")
        n, video = walk_styles(mf, a.source, a.domain, a.outdir, references=a.references, seeds=seeds,
                               frames=a.frames, fps=a.fps, fmt=a.format, no_frames=a.no_frames, batch=a.batch,
                               network=a.network, device=a.device, fan_weights=a.fan_weights, seed_spec=a.seeds)
    else:
        wrong = given(a, p, STARGAN_ONLY)
        if wrong:
            raise ConfigError(f"{', '.join(wrong)}: StarGAN v2 option(s), but {a.ckpt} holds a {mf.kind!r} model; "
                              "give --seeds (and/or --latent) to walk its latent space")
        prepare_outdir(a.outdir)
        n, video = walk(as_generator(mf, a.network, a.device), seeds or [], a.outdir, latent=a.latent,
                        frames=a.frames, space=a.space, fps=a.fps, fmt=a.format, no_frames=a.no_frames,
                        truncation_psi=a.truncation, truncation_cutoff=a.truncation_cutoff, class_idx=a.class_idx,
                        noise_mode=a.noise, batch=a.batch, seed_spec=a.seeds)
    print(f"wrote {n} frames" + ("" if a.no_frames else f" to {Path(a.outdir) / 'frames'}") + f" and {video}")
    return 0
