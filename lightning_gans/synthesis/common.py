"""Shared pieces of the synthesis commands: seed ranges, latent files, labels, output folders."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch

from ..errors import DataError, LGError
from ..models.latents import seeds_to_z
from ..models.stylegan2 import Generator

NOISE_MODES = ("const", "random", "none")


class SynthesisError(LGError):
    """A synthesis argument is malformed (seed range, style indices, label, output folder)."""


def parse_int_list(text: str, what: str = "--seeds") -> list[int]:
    """'0-3,7,10-11' -> [0, 1, 2, 3, 7, 10, 11]; ranges are inclusive and must not run backwards."""
    out: list[int] = []
    for part in str(text).split(","):
        part = part.strip()
        if not part:
            continue
        try:
            if "-" in part[1:]:  # a leading '-' is never a range (seeds are >= 0 anyway)
                a, b = (int(s) for s in part.split("-", 1))
                if b < a:
                    raise SynthesisError(f"{what}: range {part!r} runs backwards; write it as '{b}-{a}'")
                out.extend(range(a, b + 1))
            else:
                out.append(int(part))
        except ValueError:
            raise SynthesisError(f"{what}: {part!r} is not an integer or a range like '0-63'") from None
    if not out:
        raise SynthesisError(f"{what}: no values in {text!r}; give e.g. '0-63' or '1,5,9'")
    return out


def check_seeds(seeds: list[int], what: str = "--seeds") -> list[int]:
    """Seeds must fit numpy's RandomState (0 <= s < 2**32)."""
    for s in seeds:
        if not 0 <= s < 2**32:
            raise SynthesisError(f"{what}: seed {s} is outside 0..{2**32 - 1}")
    return seeds


def prepare_outdir(path: str | os.PathLike) -> Path:
    """Create the output folder; a path that exists and is not a folder is a user error."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise SynthesisError(f"--outdir {path} exists and is a file; give a folder path")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        raise SynthesisError(f"--outdir {path}: a parent of it is a file; give a folder path") from None
    return path


def class_label(G: Generator, class_idx: int | None, n: int, device: torch.device) -> torch.Tensor | None:
    """One-hot labels [n, c_dim] for a conditional G (None for an unconditional one)."""
    if G.c_dim == 0:
        if class_idx is not None:
            raise SynthesisError("--class given, but this generator is unconditional; drop --class")
        return None
    if class_idx is None or not 0 <= class_idx < G.c_dim:
        raise SynthesisError(f"this generator is conditional: give --class 0..{G.c_dim - 1}")
    c = torch.zeros([n, G.c_dim], device=device)
    c[:, class_idx] = 1
    return c


@torch.no_grad()
def seeds_to_ws(
    G: Generator, seeds: list[int], truncation_psi: float = 1.0, truncation_cutoff: int | None = None,
    class_idx: int | None = None,
) -> torch.Tensor:
    """ws [len(seeds), num_ws, w_dim] of seeds (z as in the official scripts), truncated toward w_avg."""
    device = G.mapping.w_avg.device
    z = seeds_to_z(check_seeds(seeds), G.z_dim).to(device)
    return G.mapping(z, class_label(G, class_idx, len(seeds), device), truncation_psi, truncation_cutoff,
                     update_w_avg=False)


def save_latent(path: str | os.PathLike, ws: torch.Tensor, **meta: str) -> Path:
    """ws [N, num_ws, w_dim] -> .npz with key 'w' (as the official projector) plus string metadata."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    arrays = {"w": ws.detach().float().cpu().numpy()}
    arrays.update({k: np.array(str(v)) for k, v in meta.items() if v is not None})
    tmp = path.with_name(f".{path.stem}.tmp{os.getpid()}.npz")
    np.savez(tmp, **arrays)
    os.replace(tmp, path)
    return path


def load_latent(path: str | os.PathLike, G: Generator | None = None) -> torch.Tensor:
    """ws [N, num_ws, w_dim] from a .npz latent file (ours or the official projector's 'w')."""
    path = Path(path)
    try:
        with np.load(path, allow_pickle=False) as data:
            if "w" not in data:
                raise DataError(f"--latent {path} has no 'w' array; use a file written by `project`")
            w = torch.from_numpy(np.asarray(data["w"], dtype=np.float32))
    except (OSError, ValueError) as e:
        raise DataError(f"--latent {path} is not a readable .npz file ({e})") from None
    if w.ndim == 2:
        w = w.unsqueeze(0)
    if G is not None:
        if w.ndim != 3 or w.shape[2] != G.w_dim or w.shape[1] not in (1, G.num_ws):
            raise DataError(f"--latent {path} holds w of shape {tuple(w.shape)}; this generator needs "
                            f"[N, {G.num_ws}, {G.w_dim}] (project with the same checkpoint)")
        w = w.expand(-1, G.num_ws, -1).to(G.mapping.w_avg.device)
    return w


def run_synthesis(G: Generator, ws: torch.Tensor, noise_mode: str = "const", batch: int = 16) -> torch.Tensor:
    """Images [N, C, R, R] (float32, unclamped) of ws [N, num_ws, w_dim], `batch` at a time."""
    if noise_mode not in NOISE_MODES:
        raise SynthesisError(f"--noise {noise_mode!r} is not one of {', '.join(NOISE_MODES)}")
    device = G.mapping.w_avg.device
    with torch.no_grad():
        return torch.cat([G.synthesis(ws[i : i + batch].to(device), noise_mode=noise_mode).float().cpu()
                          for i in range(0, ws.shape[0], max(1, batch))])
