"""`lightning-gans interpolate`: a walk through keyframe seeds (or latents), as PNG frames and a video.

`--space z` walks great circles between the seeds' z (spherical interpolation keeps |z| near
sqrt(z_dim), where the mapping network was trained) and maps every frame; `--space w` walks
straight lines between the (truncated) ws. `--frames F` is the number of steps per keyframe
pair: K keyframes give (K - 1) * F + 1 frames, the first and last being the endpoints' images.

Given a StarGAN v2 checkpoint, the same command walks the style code s of one --source face
instead (see style_interp.py): between the style-encoder codes of --references A.png,B.png,...
or the mapping-network codes of --seeds, in --domain y.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import torch

from ..checkpoint import safe_load
from ..errors import CheckpointError
from .common import (
    SynthesisError,
    add_common_args,
    check_seeds,
    class_label,
    load_latent,
    parse_args,
    parse_int_list,
    prepare_outdir,
    run_synthesis,
    seeds_to_ws,
)
from .generate import as_generator
from .images import to_uint8
from .latents import seeds_to_z
from .load import LoadedGenerator, load_generator
from .paths import lerp_keyframes, path_fractions
from .video import FORMATS, check_format, write_walk


def slerp(a: torch.Tensor, b: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """Spherical interpolation of [D] vectors at fractions t [T] -> [T, D] (magnitudes lerped)."""
    na, nb = a.norm(), b.norm()
    ua, ub = a / na, b / nb
    omega = torch.arccos((ua * ub).sum().clamp(-1, 1))
    t = t[:, None]
    if omega.abs() < 1e-6:  # (anti)parallel within float error: fall back to lerp
        return a.lerp(b, t)
    so = torch.sin(omega)
    u = (torch.sin((1 - t) * omega) * ua + torch.sin(t * omega) * ub) / so
    return u * torch.lerp(na, nb, t)


def interpolation_ws(
    G, keys: list[int] | torch.Tensor, frames: int, space: str = "w", truncation_psi: float = 1.0,
    truncation_cutoff: int | None = None, class_idx: int | None = None,
) -> torch.Tensor:
    """ws [(K - 1) * frames + 1, num_ws, w_dim] along the keyframes (seeds, or ws for space w)."""
    if frames < 1:
        raise SynthesisError(f"--frames {frames}: need at least 1 frame per keyframe pair")
    if space not in ("w", "z"):
        raise SynthesisError(f"--space {space!r} is not one of w, z")
    K = keys.shape[0] if isinstance(keys, torch.Tensor) else len(keys)
    if K < 2:
        raise SynthesisError("interpolation needs at least 2 keyframes (e.g. --seeds 1,2)")
    t = path_fractions(frames)
    device = G.mapping.w_avg.device
    if space == "z":
        if isinstance(keys, torch.Tensor):
            raise SynthesisError("--space z needs seeds; a projected latent lives in W (use --space w)")
        z = seeds_to_z(check_seeds(keys), G.z_dim).double()
        # Keyframes are exact (not slerp(., ., 0)), so the endpoints' images match `generate`.
        zs = torch.cat([torch.cat([z[i : i + 1], slerp(z[i], z[i + 1], t)[1:]]) for i in range(K - 1)]
                       + [z[-1:]]).float().to(device)
        with torch.no_grad():
            return G.mapping(zs, class_label(G, class_idx, zs.shape[0], device), truncation_psi,
                             truncation_cutoff, update_w_avg=False)
    ws = keys if isinstance(keys, torch.Tensor) else seeds_to_ws(G, keys, truncation_psi, truncation_cutoff,
                                                                 class_idx)
    return lerp_keyframes(ws.to(device), frames)


def interpolate(
    model: LoadedGenerator | str | os.PathLike,
    keys: list[int] | torch.Tensor,  # seeds, or ws [K, num_ws, w_dim] (space w)
    frames: int = 60,
    space: str = "w",
    *,
    truncation_psi: float = 1.0,
    truncation_cutoff: int | None = None,
    class_idx: int | None = None,
    noise_mode: str = "const",
    batch: int = 16,
    network: str = "G_ema",
    device: torch.device | str = "cpu",
) -> tuple[torch.Tensor, torch.Tensor]:
    """(images [T, C, R, R], ws [T, num_ws, w_dim]) along the keyframes; T = (K - 1) * frames + 1."""
    gen = as_generator(model, network, device)
    ws = interpolation_ws(gen.G, keys, frames, space, truncation_psi, truncation_cutoff, class_idx)
    return run_synthesis(gen.G, ws, noise_mode, batch), ws


# Flags of one model family only: given (not at their default) with the other family's checkpoint,
# they are an error rather than silently ignored.
STYLEGAN_ONLY = {"truncation": "--truncation", "truncation_cutoff": "--truncation-cutoff", "class_idx": "--class",
                 "noise": "--noise", "latent": "--latent", "space": "--space"}
STARGAN_ONLY = {"source": "--source", "references": "--references", "domain": "--domain",
                "fan_weights": "--fan-weights"}


def checkpoint_kind(path: str | os.PathLike) -> str | None:
    """model_config["kind"] of a checkpoint (None without one), read memory-mapped so that the
    loader's full read that follows is the only one; errors are safe_load's clear ones."""
    try:
        ckpt = safe_load(path, mmap=True)
    except CheckpointError:  # not a zip checkpoint, missing, unsafe...: safe_load says which, or loads it
        ckpt = safe_load(path)
    config = ckpt.get("model_config") if isinstance(ckpt, dict) else None
    return str(config["kind"]) if isinstance(config, dict) and "kind" in config else None


def given(a: argparse.Namespace, p: argparse.ArgumentParser, flags: dict[str, str]) -> list[str]:
    """The flags of `flags` whose value differs from the parser's default."""
    return [flag for dest, flag in flags.items() if getattr(a, dest) != p.get_default(dest)]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="lightning-gans interpolate", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    add_common_args(p)
    p.add_argument("--seeds", default=None, help="keyframe seeds, e.g. 1,2,3 (StarGAN v2: latent-guided styles)")
    p.add_argument("--latent", default=None, help=".npz latent file whose ws are appended as keyframes")
    p.add_argument("--frames", type=int, default=60, help="frames per keyframe pair (default 60)")
    p.add_argument("--space", default="w", choices=["w", "z"], help="interpolate in W (lerp) or Z (slerp)")
    p.add_argument("--fps", type=float, default=30.0)
    p.add_argument("--format", default="auto", choices=list(FORMATS),
                   help="video format (auto: mp4 when imageio-ffmpeg is installed, else GIF)")
    p.add_argument("--no-frames", action="store_true", help="write only the video, not the PNG frames")
    g = p.add_argument_group("StarGAN v2 checkpoints (style-code interpolation; --network G_ema = EMA nets)")
    g.add_argument("--source", default=None, help="the one source face every frame translates")
    g.add_argument("--references", default=None, help="keyframe reference faces: A.png,B.png[,...] or a folder")
    g.add_argument("--domain", default=None, help="target domain: index (or a name the checkpoint stores)")
    g.add_argument("--fan-weights", default=None,
                   help="w_hpf > 0 models: the FAN file of the generator's masks (default: $LG_FAN_WEIGHTS)")
    a = parse_args(p, argv)
    if a.fps <= 0:
        raise SynthesisError(f"--fps {a.fps}: must be > 0")
    kind = checkpoint_kind(a.ckpt)
    if kind == "stargan_v2":
        wrong = given(a, p, STYLEGAN_ONLY)
        if wrong:
            raise SynthesisError(f"{', '.join(wrong)}: StyleGAN option(s), but {a.ckpt} is a StarGAN v2 checkpoint; "
                                 "it interpolates style codes: give --source, --references A,B (or --seeds) "
                                 "and --domain")
        from .style_interp import run_cli

        return run_cli(a)
    wrong = given(a, p, STARGAN_ONLY)
    if wrong:
        raise SynthesisError(f"{', '.join(wrong)}: StarGAN v2 option(s), but {a.ckpt} holds a {kind!r} model; "
                             "give --seeds (and/or --latent) to walk its latent space")
    seeds = parse_int_list(a.seeds) if a.seeds else []
    check_format(a.format)
    outdir = prepare_outdir(a.outdir)
    gen = load_generator(a.ckpt, a.network, a.device)
    kw = dict(truncation_psi=a.truncation, truncation_cutoff=a.truncation_cutoff, class_idx=a.class_idx)
    keys: list[int] | torch.Tensor = seeds
    if a.latent:
        if a.space != "w":
            raise SynthesisError("--latent needs --space w: a projected latent has no z")
        parts = [seeds_to_ws(gen.G, seeds, **kw)] if seeds else []
        keys = torch.cat(parts + [load_latent(a.latent, gen.G)])
    imgs, _ = interpolate(gen, keys, a.frames, a.space, noise_mode=a.noise, batch=a.batch, **kw)
    meta = dict(command="interpolate", **gen.provenance(), seeds=a.seeds,
                latent_file=Path(a.latent).name if a.latent else None, space=a.space, frames_per_pair=a.frames,
                truncation_psi=a.truncation, truncation_cutoff=a.truncation_cutoff, noise_mode=a.noise,
                class_idx=a.class_idx)
    frames = to_uint8(imgs)
    video = write_walk(frames, outdir, meta, a.fps, a.format, a.no_frames)
    print(f"wrote {len(frames)} frames" + ("" if a.no_frames else f" to {outdir / 'frames'}") + f" and {video}")
    return 0
