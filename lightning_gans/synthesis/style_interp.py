"""StarGAN v2 style interpolation: one source face, its style code walked between keyframes.

A StarGAN v2 generator renders a source image x in the style s of a target domain y (Choi et
al., CVPR 2020); s comes from the style encoder E(reference, y) or the mapping network F(z, y).
Walking s on straight lines between the keyframes' codes, with x and y fixed, shows how one
face changes from one reference's look to the next (as in the paper's video). The walk is
linear because s is what the generator's AdaIN layers consume directly: there is no spherical
prior on s as there is on z. Keyframe frames are the keyframe codes themselves, so the first and
last frames are the reference-guided (or latent-guided) `transfer` outputs.

`lightning-gans interpolate CKPT --source FACE --references A.png,B.png --domain y` (or
`--seeds 1,2,3` for mapping-network codes) dispatches here when CKPT holds a StarGAN v2 model.
A model with high-pass skips (w_hpf > 0) masks the source with the face-landmark network, whose
weights come from `fan_weights` / $LG_FAN_WEIGHTS (and --fan-weights where the CLI offers it).
"""

from __future__ import annotations

import os
from pathlib import Path

import torch

from ..errors import DataError
from ..model_file import LoadedStarGAN, ModelFile
from ..models.latents import seeds_to_z
from .common import SynthesisError, check_seeds, prepare_outdir
from .images import to_uint8
from .paths import lerp_keyframes
from .transfer import as_stargan, list_images, load_images
from .video import write_walk

ImageInput = str | os.PathLike | torch.Tensor | list | tuple


def image_files(spec: str | os.PathLike | list | tuple, what: str) -> list[Path]:
    """Files of 'A.png,B.png' (CLI), a list of paths, or one file/folder (a folder: its images, sorted)."""
    if isinstance(spec, (list, tuple)):
        items = list(spec)
    elif isinstance(spec, str) and "," in spec and not Path(spec).exists():
        items = [s.strip() for s in spec.split(",") if s.strip()]
    else:
        items = [spec]
    return [f for item in items for f in list_images(item, what)]


def load_input(x: ImageInput, img_size: int, what: str) -> tuple[torch.Tensor, list[Path]]:
    """Images [N, 3, R, R] in [-1, 1] (a tensor as is) and the files they came from."""
    if isinstance(x, torch.Tensor):
        x = x.unsqueeze(0) if x.ndim == 3 else x
        if x.ndim != 4 or tuple(x.shape[1:]) != (3, img_size, img_size):
            raise DataError(f"{what}: tensor of shape {tuple(x.shape)}; expected [N, 3, {img_size}, {img_size}]")
        return x.float(), []
    files = image_files(x, what)
    return load_images(files, img_size, what), files


def check_one_source(x_src: torch.Tensor) -> None:
    """A walk translates one fixed face; several sources would need several videos."""
    if x_src.shape[0] != 1:
        raise SynthesisError(f"--source: {x_src.shape[0]} images; give one face (every frame translates it)")


@torch.no_grad()
def keyframe_styles(
    net: LoadedStarGAN, domain: int, references: ImageInput | None = None, seeds: list[int] | None = None,
    batch: int = 16,
) -> torch.Tensor:
    """Style codes [K, style_dim] of the references (E(x, y)) or the seeds (F(z, y)), as `transfer`
    computes them (same batching), so keyframe frames reproduce its outputs."""
    if (references is None) == (not seeds):
        raise SynthesisError("give the keyframes as --references A.png,B.png or as --seeds 1,2 (one of them)")
    dev = next(net.G.parameters()).device
    if references is not None:
        x_ref, _ = load_input(references, net.img_size, "--references")
        y = torch.full((x_ref.shape[0],), domain, dtype=torch.int64, device=dev)
        return torch.cat([net.E(x_ref[i:i + batch].to(dev), y[i:i + batch]) for i in range(0, len(x_ref), batch)])
    z = seeds_to_z(check_seeds(list(seeds), "--seeds"), net.latent_dim).to(dev)
    return net.F(z, torch.full((z.shape[0],), domain, dtype=torch.int64, device=dev))


@torch.no_grad()
def interpolate_styles(
    model: LoadedStarGAN | str | os.PathLike,
    source: ImageInput,                        # one face: a file, a folder holding one, or [1, 3, R, R]
    references: ImageInput | None = None,      # keyframe faces ('A.png,B.png', list, folder, or tensor)
    seeds: list[int] | None = None,            # ... or keyframe seeds (mapping-network styles)
    domain: int | str = 0,
    frames: int = 60,
    *,
    network: str = "G_ema",
    batch: int = 16,
    device: torch.device | str = "cpu",
    fan_weights: str | os.PathLike | None = None,  # w_hpf > 0 models (None: $LG_FAN_WEIGHTS)
) -> tuple[torch.Tensor, torch.Tensor]:
    """(images [T, 3, R, R] float32 CPU, unclamped; styles [T, style_dim]) with T = (K - 1) * frames + 1."""
    net = as_stargan(model, network, device, fan_weights)
    y = net.domain_index(domain)
    if frames < 1:
        raise SynthesisError(f"--frames {frames}: need at least 1 frame per keyframe pair")
    x_src, _ = load_input(source, net.img_size, "--source")
    check_one_source(x_src)
    keys = keyframe_styles(net, y, references, seeds, batch)
    if keys.shape[0] < 2:
        raise SynthesisError("interpolation needs at least 2 keyframes (--references A.png,B.png or --seeds 1,2)")
    styles = lerp_keyframes(keys, frames)
    # Keyframe frames go through G as one batch of the K codes, exactly as `transfer` batches
    # K references on one source: CPU kernels (oneDNN conv, GEMM vs GEMV) round differently per
    # batch size (~1e-5 here), and this keeps the ends bit-equal to `transfer`'s outputs.
    is_key = torch.arange(styles.shape[0]) % frames == 0
    images = torch.empty(styles.shape[0], *x_src.shape[1:])
    for mask in (is_key, ~is_key):
        if mask.any():
            images[mask] = render(net, x_src, styles[mask], batch)
    return images, styles.cpu()


@torch.no_grad()
def render(net: LoadedStarGAN, x_src: torch.Tensor, styles: torch.Tensor, batch: int = 16) -> torch.Tensor:
    """G(x_src, s) for every style s [K, style_dim] -> [K, 3, R, R] float32 CPU, `batch` at a time."""
    dev = next(net.G.parameters()).device
    batch = max(1, batch)
    masks = net.masks(x_src)  # w_hpf > 0: the one source's masks, shared by every frame
    out = []
    for i in range(0, styles.shape[0], batch):
        s = styles[i:i + batch].to(dev)
        m = None if masks is None else [t.expand(s.shape[0], -1, -1, -1) for t in masks]
        out.append(net.G(x_src.expand(s.shape[0], -1, -1, -1).contiguous().to(dev), s, masks=m).float().cpu())
    return torch.cat(out)


def walk_styles(
    model: ModelFile | str | os.PathLike,
    source: str | os.PathLike,
    domain: int | str,
    outdir: str | os.PathLike,
    *,
    references: str | None = None,
    seeds: list[int] | None = None,
    frames: int = 60,
    fps: float = 30.0,
    fmt: str = "auto",
    no_frames: bool = False,
    batch: int = 16,
    network: str = "G_ema",
    device: str = "cpu",
    fan_weights: str | None = None,
    seed_spec: str | None = None,
) -> tuple[int, Path]:
    """The StarGAN v2 walk of `interpolate`: the style code of one source face between the
    codes of the references (or of the seeds' mapping-network codes) in `domain`, written as
    frames and a video; returns (frame count, video path)."""
    from .video import check_format

    if (references is None) == (seeds is None):
        raise SynthesisError("give the keyframes as --references A.png,B.png or as --seeds 1,2 (one of them)")
    if frames < 1:
        raise SynthesisError(f"--frames {frames}: need at least 1 frame per keyframe pair")
    if fps <= 0:
        raise SynthesisError(f"--fps {fps}: must be > 0")
    check_format(fmt)
    net = as_stargan(model, network, device, fan_weights=fan_weights)
    y = net.domain_index(domain)
    x_src, src_files = load_input(source, net.img_size, "--source")
    check_one_source(x_src)
    x_ref, ref_files = load_input(references, net.img_size, "--references") if seeds is None else (None, [])
    if len(seeds or ref_files) < 2:
        raise SynthesisError("interpolation needs at least 2 keyframes (--references A.png,B.png or --seeds 1,2)")
    outdir = prepare_outdir(outdir)
    imgs, _ = interpolate_styles(net, x_src, x_ref, seeds, y, frames, batch=batch)
    meta = dict(command="interpolate", **net.provenance(), domain=y,
                domain_name=net.domain_names[y] if y < len(net.domain_names) else None,
                mode="reference-guided" if seeds is None else "latent-guided", space="style (linear)",
                source_file=",".join(f.name for f in src_files),
                reference_files=",".join(f.name for f in ref_files) or None, seeds=seed_spec, frames_per_pair=frames)
    out = to_uint8(imgs)
    return len(out), write_walk(out, outdir, meta, fps, fmt, no_frames,
                                frame_meta=lambda i: {"keyframe_position": f"{i / frames:.4f}"})
