"""Project a (face) photo into W/W+ and write latent, image and video (`lightning-gans project`)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from ..errors import DataError
from ..model_file import LoadedGenerator
from ..progress import bar
from .common import prepare_outdir, save_latent
from .images import provenance, save_png, to_uint8
from .project import Projection, ProjectSchedule, project
from .video import write_video


def load_photo(path: str | os.PathLike, resolution: int, align: bool = False) -> torch.Tensor:
    """[1, 3, R, R] in [-1, 1]: the photo (FFHQ-aligned with --align, else centre-cropped), resized."""
    from ..data.faces.decode import DecodeError, decode_image

    path = Path(path)
    try:
        img = decode_image(path.read_bytes())
    except OSError as e:
        raise DataError(f"photo {path} cannot be read ({e.strerror or e}); check the path") from None
    except DecodeError as e:
        raise DataError(f"photo {path} is not a usable image ({e}); give a JPEG/PNG photo") from None
    if align:
        from ..data.faces.align import align_face
        from ..data.faces.mtcnn import MTCNN

        faces = MTCNN().detect(img)
        if not faces:
            raise DataError(f"photo {path}: no face found to align; give a face photo or drop --align")
        arr = align_face(img, faces[0].landmarks, resolution)
    else:
        side = min(img.size)
        left, top = (img.width - side) // 2, (img.height - side) // 2
        img = img.crop((left, top, left + side, top + side))
        arr = np.asarray(img.resize((resolution, resolution), Image.Resampling.LANCZOS) if side != resolution
                         else img)
    return torch.from_numpy(np.array(arr)).permute(2, 0, 1)[None].float() / 127.5 - 1


def project_photo(gen: LoadedGenerator, photo: str | os.PathLike, outdir: str | os.PathLike, *, space: str = "w",
                  steps: int = 1000, lpips_weights: str | None = None, lpips_lin: str | None = None,
                  align: bool = False, class_idx: int | None = None, seed: int = 0, video: bool = False,
                  device: str = "cpu") -> tuple[Path, Projection]:
    """Project `photo` with the paper's schedule and write projected_w.npz, projected.png,
    target.png (and a video of the run) with provenance to outdir; returns the latent's path and
    the result. Without LPIPS weights it projects with MSE, and says so."""
    outdir = prepare_outdir(outdir)
    target = load_photo(photo, gen.G.synthesis.img_resolution, align)

    from ..pretrained.lpips import load_lpips
    from ..pretrained.weights import MissingWeightsError

    try:
        lp = load_lpips(lpips_weights, lpips_lin, device=device, metric="project")
    except MissingWeightsError:
        if lpips_weights:
            raise
        lp = None
        print("notice: no LPIPS weights (--lpips-weights or $LG_VGG16_WEIGHTS); projecting with MSE "
              "instead, which gives blurrier, less faithful reconstructions than the paper's LPIPS")
    every = max(1, steps // 100)
    metric = "lpips" if lp else "mse"

    def step_done(step: int, dist: float) -> None:
        progress.update(1)
        progress.set_postfix({metric: f"{dist:.4f}"}, refresh=False)

    with bar(steps, "project", unit="step") as progress:
        res = project(gen, target[0], space=space, schedule=ProjectSchedule(steps=steps), lpips=lp,
                      class_idx=class_idx, seed=seed, snapshot_every=every if video else 0,
                      progress=step_done)
    print(f"projected in {steps} steps: {metric} {res.losses[-1]:.4f}")
    meta = dict(command="project", **gen.provenance(), photo=Path(photo).name, space=space, steps=steps,
                distance=res.distance, final_distance=f"{res.losses[-1]:.6g}", seed=seed, noise_mode="const")
    latent = save_latent(outdir / "projected_w.npz", res.ws, **provenance(**meta))
    save_png(to_uint8(res.image)[0], outdir / "projected.png",
             provenance(**meta, latent_file=latent.name, note="noise maps fitted to the photo"))
    save_png(to_uint8(target)[0], outdir / "target.png",
             provenance(**meta, synthetic="false", note="the photo as projected (cropped/aligned, resized)"))
    if video:
        frames = to_uint8(torch.cat([torch.cat([target.expand(len(res.snapshots), -1, -1, -1),
                                                torch.cat(res.snapshots)], dim=3)]))
        write_video(frames, outdir / "projection", 10, provenance(**meta, note="left: target, right: projection"))
    return latent, res
