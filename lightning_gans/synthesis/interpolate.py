"""A walk through keyframe seeds (or latents), as PNG frames and a video (`lightning-gans interpolate`).

`--space z` walks great circles between the seeds' z (spherical interpolation keeps |z| near
sqrt(z_dim), where the mapping network was trained) and maps every frame; `--space w` walks
straight lines between the (truncated) ws. `--frames F` is the number of steps per keyframe
pair: K keyframes give (K - 1) * F + 1 frames, the first and last being the endpoints' images.

Given a StarGAN v2 checkpoint, the same command walks the style code s of one --source face
instead (see style_interp.py): between the style-encoder codes of --references A.png,B.png,...
or the mapping-network codes of --seeds, in --domain y.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch

from ..model_file import LoadedGenerator
from ..models.latents import seeds_to_z
from .common import (
    SynthesisError,
    check_seeds,
    class_label,
    load_latent,
    prepare_outdir,
    run_synthesis,
    seeds_to_ws,
)
from .generate import as_generator
from .images import to_uint8
from .paths import lerp_keyframes, path_fractions
from .video import check_format, write_walk


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


def walk(
    gen: LoadedGenerator,
    seeds: list[int],
    outdir: str | os.PathLike,
    *,
    latent: str | os.PathLike | None = None,
    frames: int = 60,
    space: str = "w",
    fps: float = 30.0,
    fmt: str = "auto",
    no_frames: bool = False,
    truncation_psi: float = 1.0,
    truncation_cutoff: int | None = None,
    class_idx: int | None = None,
    noise_mode: str = "const",
    batch: int = 16,
    seed_spec: str | None = None,
) -> tuple[int, Path]:
    """The walk through `seeds` (then the ws of a latent file) written as PNG frames (unless
    no_frames) and a video with provenance; returns (frame count, video path)."""
    if fps <= 0:
        raise SynthesisError(f"--fps {fps}: must be > 0")
    check_format(fmt)
    outdir = prepare_outdir(outdir)
    kw = dict(truncation_psi=truncation_psi, truncation_cutoff=truncation_cutoff, class_idx=class_idx)
    keys: list[int] | torch.Tensor = seeds
    if latent:
        if space != "w":
            raise SynthesisError("--latent needs --space w: a projected latent has no z")
        parts = [seeds_to_ws(gen.G, seeds, **kw)] if seeds else []
        keys = torch.cat(parts + [load_latent(latent, gen.G)])
    imgs, _ = interpolate(gen, keys, frames, space, noise_mode=noise_mode, batch=batch, **kw)
    meta = dict(command="interpolate", **gen.provenance(), seeds=seed_spec,
                latent_file=Path(latent).name if latent else None, space=space, frames_per_pair=frames,
                noise_mode=noise_mode, **kw)
    out = to_uint8(imgs)
    return len(out), write_walk(out, outdir, meta, fps, fmt, no_frames)
