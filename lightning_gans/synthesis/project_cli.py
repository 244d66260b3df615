"""`lightning-gans project CKPT PHOTO`: project a (face) photo into W/W+ and write latent, image, video."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from ..errors import DataError
from ..progress import bar
from .common import add_output_args, parse_args, prepare_outdir, save_latent
from .images import provenance, save_png, to_uint8
from .load import load_generator
from .project import ProjectSchedule, project
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


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="lightning-gans project", description=__doc__)
    p.add_argument("ckpt", help="StyleGAN2 checkpoint written by `lightning-gans train`")
    p.add_argument("photo", help="the photo (an aligned face, or any face photo with --align)")
    p.add_argument("--network", default="G_ema", choices=["G_ema", "G"])
    p.add_argument("--space", default="w", choices=["w", "w+"], help="W (one w) or W+ (one per layer)")
    p.add_argument("--steps", type=int, default=1000, help="optimisation steps (paper: 1000)")
    p.add_argument("--lpips-weights", default=None,
                   help="VGG16 file for LPIPS (StyleGAN2-ADA vgg16.pt or torchvision vgg16; else $LG_VGG16_WEIGHTS)")
    p.add_argument("--lpips-lin", default=None, help="lpips v0.1 vgg.pth (with a torchvision VGG16 file)")
    p.add_argument("--align", action="store_true", help="detect and FFHQ-align the face first (MTCNN)")
    p.add_argument("--class", dest="class_idx", type=int, default=None)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--video", action="store_true", help="also write a video of the optimisation")
    p.add_argument("--outdir", default="out")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    add_output_args(p)
    a = parse_args(p, argv)
    outdir = prepare_outdir(a.outdir)
    gen = load_generator(a.ckpt, a.network, a.device)
    target = load_photo(a.photo, gen.G.synthesis.img_resolution, a.align)

    from ..pretrained.lpips import load_lpips
    from ..pretrained.weights import MissingWeightsError

    try:
        lp = load_lpips(a.lpips_weights, a.lpips_lin, device=a.device, metric="project")
    except MissingWeightsError:
        if a.lpips_weights:
            raise
        lp = None
        print("notice: no LPIPS weights (--lpips-weights or $LG_VGG16_WEIGHTS); projecting with MSE "
              "instead, which gives blurrier, less faithful reconstructions than the paper's LPIPS")
    every = max(1, a.steps // 100)
    metric = "lpips" if lp else "mse"

    def step_done(step: int, dist: float) -> None:
        progress.update(1)
        progress.set_postfix({metric: f"{dist:.4f}"}, refresh=False)

    with bar(a.steps, "project", unit="step") as progress:
        res = project(gen, target[0], space=a.space, schedule=ProjectSchedule(steps=a.steps), lpips=lp,
                      class_idx=a.class_idx, seed=a.seed, snapshot_every=every if a.video else 0,
                      progress=step_done)
    print(f"projected in {a.steps} steps: {metric} {res.losses[-1]:.4f}")
    meta = dict(command="project", **gen.provenance(), photo=Path(a.photo).name, space=a.space, steps=a.steps,
                distance=res.distance, final_distance=f"{res.losses[-1]:.6g}", seed=a.seed, noise_mode="const")
    latent = save_latent(outdir / "projected_w.npz", res.ws, **provenance(**meta))
    save_png(to_uint8(res.image)[0], outdir / "projected.png",
             provenance(**meta, latent_file=latent.name, note="noise maps fitted to the photo"))
    save_png(to_uint8(target)[0], outdir / "target.png",
             provenance(**meta, synthetic="false", note="the photo as projected (cropped/aligned, resized)"))
    if a.video:
        frames = to_uint8(torch.cat([torch.cat([target.expand(len(res.snapshots), -1, -1, -1),
                                                torch.cat(res.snapshots)], dim=3)]))
        write_video(frames, outdir / "projection", 10, provenance(**meta, note="left: target, right: projection"))
    print(f"wrote {latent} (ws {tuple(res.ws.shape)}), projected.png, target.png to {outdir}; "
          f"final {res.distance} {res.losses[-1]:.4f}")
    return 0
