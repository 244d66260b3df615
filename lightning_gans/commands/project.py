"""`lightning-gans project CKPT PHOTO`: project a (face) photo into W or W+ (the StyleGAN2
paper's projector) and write the latent (projected_w.npz, for generate / style-mix /
interpolate --latent), the projected image, the target and optionally a video of the run."""

from __future__ import annotations

from ..synthesis.common import prepare_outdir
from ..synthesis.generate import as_generator
from ..synthesis.project_photo import project_photo
from . import _args


def main(argv: list[str] | None = None) -> int:
    p = _args.parser("project", __doc__, "ffhq.ckpt photo.jpg --align --space w+ --steps 1000 --outdir out/")
    _args.add_checkpoint(p)
    p.add_argument("photo", help="the photo (an aligned face, or any face photo with --align)")
    _args.add_network(p)
    p.add_argument("--space", default="w", choices=["w", "w+"], help="W (one w) or W+ (one per layer)")
    p.add_argument("--steps", type=int, default=1000, help="optimisation steps (the paper's)")
    p.add_argument("--lpips-weights", default=None,
                   help="VGG16 file for LPIPS (StyleGAN2-ADA vgg16.pt or torchvision vgg16; else $LG_VGG16_WEIGHTS)")
    p.add_argument("--lpips-lin", default=None, help="lpips v0.1 vgg.pth (with a torchvision VGG16 file)")
    p.add_argument("--align", action="store_true", help="detect and FFHQ-align the face first (MTCNN)")
    p.add_argument("--class", dest="class_idx", type=int, default=None, help="class index (conditional G)")
    p.add_argument("--seed", type=int, default=0, help="seed of the noise added to w early on")
    p.add_argument("--video", action="store_true", help="also write a video of the optimisation")
    _args.add_outdir(p)
    _args.add_device(p)
    _args.add_output(p)
    a = _args.parse(p, argv)
    _args.at_least(a, steps=1)
    prepare_outdir(a.outdir)  # a bad folder fails before the checkpoint is read
    gen = as_generator(a.ckpt, a.network, a.device)
    latent, res = project_photo(gen, a.photo, a.outdir, space=a.space, steps=a.steps, lpips_weights=a.lpips_weights,
                                lpips_lin=a.lpips_lin, align=a.align, class_idx=a.class_idx, seed=a.seed,
                                video=a.video, device=a.device)
    print(f"wrote {latent} (ws {tuple(res.ws.shape)}), projected.png, target.png to {a.outdir}; "
          f"final {res.distance} {res.losses[-1]:.4f}")
    return 0
