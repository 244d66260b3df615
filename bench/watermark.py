"""Robustness of the invisible watermark (lightning_gans/synthesis/watermark.py). Not a test: a table.

    .venv/bin/python bench/watermark.py [--n 200] [--out watermark_bench.json]

Images, all 256 px: N "generated" = N/2 outputs of a random-init StyleGAN2 at 256 px (contrast-
stretched: an untrained G's raw output is nearly flat) + N/2 drawn faces of the demo data; N "real"
= N/2 augmented crops of the demo portrait (skimage astronaut, as lightning_gans/data/demo.py) +
N/2 random crops of the other scikit-image colour photos. Each is marked with a random checkpoint
hash, attacked, and read back blind; a read counts only when the payload is exactly the one
embedded. False positives: the same images unmarked (all 2N after no attack; the N real photos
after JPEG 75 and the 0.5x resize). PSNR: marked vs original, mean and minimum.
"""

from __future__ import annotations

import argparse
import io
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from lightning_gans.data import demo  # noqa: E402
from lightning_gans.models.stylegan2 import Generator  # noqa: E402
from lightning_gans.synthesis import watermark as wm  # noqa: E402

R = 256


def jpeg(a: np.ndarray, q: int) -> np.ndarray:
    buf = io.BytesIO()
    Image.fromarray(a).save(buf, "JPEG", quality=q)
    return np.asarray(Image.open(buf).convert("RGB"))


def png(a: np.ndarray) -> np.ndarray:
    buf = io.BytesIO()
    Image.fromarray(a).save(buf, "PNG")
    return np.asarray(Image.open(buf).convert("RGB"))


def half_and_back(a: np.ndarray) -> np.ndarray:
    im = Image.fromarray(a)
    return np.asarray(im.resize((R // 2, R // 2), Image.Resampling.BICUBIC).resize((R, R), Image.Resampling.BICUBIC))


def crop10(a: np.ndarray) -> np.ndarray:
    """10% off each dimension, unevenly (13 px top, 12 bottom, 8 left, 17 right): the grid shifts."""
    return a[13 : R - 12, 8 : R - 17]


def screenshot(a: np.ndarray) -> np.ndarray:
    """Shown at 125% display scaling (bilinear), colour-managed (gamma 1.05, warmer white), captured,
    cropped back to the picture and scaled back to its size, saved as PNG."""
    up = Image.fromarray(a).resize((R * 5 // 4, R * 5 // 4), Image.Resampling.BILINEAR)
    x = (np.asarray(up, dtype=np.float64) / 255.0) ** 1.05 * np.array([1.02, 1.0, 0.97])
    shot = Image.fromarray(np.clip(np.round(x * 255), 0, 255).astype(np.uint8))
    return png(np.asarray(shot.resize((R, R), Image.Resampling.BILINEAR)))


ATTACKS = {
    "none": lambda a: a,
    "JPEG 90": lambda a: jpeg(a, 90),
    "JPEG 75": lambda a: jpeg(a, 75),
    "JPEG 50": lambda a: jpeg(a, 50),
    "0.5x resize and back": half_and_back,
    "10% crop": crop10,
    "PNG->JPEG 85->PNG": lambda a: png(jpeg(png(a), 85)),
    "screenshot-like re-render": screenshot,
}


def generated(n: int, rng: np.random.Generator) -> list[np.ndarray]:
    torch.manual_seed(0)
    G = Generator(z_dim=64, w_dim=64, c_dim=0, img_resolution=R, img_channels=3,
                  mapping_kwargs={"num_layers": 2}, channel_base=2048, channel_max=32).eval()
    out = []
    with torch.no_grad():
        for i in range(0, n - n // 2, 10):
            z = torch.from_numpy(rng.standard_normal((min(10, n - n // 2 - i), 64))).float()
            img = G(z, None, noise_mode="random", update_w_avg=False).float()
            lo, hi = img.amin(dim=(1, 2, 3), keepdim=True), img.amax(dim=(1, 2, 3), keepdim=True)
            x = ((img - lo) / (hi - lo + 1e-8) * 255).round().byte().permute(0, 2, 3, 1).numpy()
            out.extend(x)
    out.extend(np.asarray(demo.drawn_face(R, rng)) for _ in range(n // 2))
    return out


def real(n: int, rng: np.random.Generator) -> list[np.ndarray]:
    from skimage import data

    base = demo._astronaut(R)
    out = [np.asarray(demo.photo_crop(base, R, rng).convert("RGB")) for _ in range(n // 2)]
    # the colour photos bundled with scikit-image (no download: pooch-fetched ones are left out)
    photos = [data.chelsea(), data.coffee(), data.rocket(), data.hubble_deep_field(), data.immunohistochemistry(),
              data.retina()]
    photos = [p for p in photos if min(p.shape[:2]) >= R]
    while len(out) < n:
        p = photos[len(out) % len(photos)]
        side = int(rng.integers(R, min(p.shape[:2]) + 1))
        y, x = (int(rng.integers(0, s - side + 1)) for s in p.shape[:2])
        crop = Image.fromarray(np.ascontiguousarray(p[y : y + side, x : x + side, :3]))
        out.append(np.asarray(crop.resize((R, R), Image.Resampling.LANCZOS).convert("RGB")))
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=200, help="images per group (generated, real)")
    ap.add_argument("--out", default=None, help="also write the results as JSON")
    a = ap.parse_args()
    rng = np.random.default_rng(0)
    t0 = time.time()
    groups = {"generated": generated(a.n, rng), "real": real(a.n, rng)}
    hashes = {g: [rng.bytes(32).hex() for _ in imgs] for g, imgs in groups.items()}
    marked = {g: [wm.embed(x, h) for x, h in zip(imgs, hashes[g])] for g, imgs in groups.items()}
    psnr = [10 * np.log10(255**2 / max(np.mean((m.astype(np.float64) - x) ** 2), 1e-12))
            for g in groups for m, x in zip(marked[g], groups[g])]
    res: dict = {"n": a.n, "psnr_mean": float(np.mean(psnr)), "psnr_min": float(np.min(psnr)), "attacks": {}}
    for name, attack in ATTACKS.items():
        row = {}
        for g in groups:
            ok = sum(wm.detect(attack(m)).payload == wm.payload_string(h) for m, h in zip(marked[g], hashes[g]))
            row[g] = ok / len(marked[g])
        res["attacks"][name] = row
        print(f"{name:28s} generated {row['generated']:7.1%}  real {row['real']:7.1%}  ({time.time() - t0:.0f}s)",
              flush=True)
    fp = {}
    for name in ("none", "JPEG 75", "0.5x resize and back"):
        imgs = groups["generated"] + groups["real"] if name == "none" else groups["real"]
        fp[name] = [sum(wm.detect(ATTACKS[name](x)).found for x in imgs), len(imgs)]
        print(f"false positives, unmarked, {name}: {fp[name][0]}/{fp[name][1]}  ({time.time() - t0:.0f}s)", flush=True)
    res["false_positives"] = fp
    res["seconds"] = time.time() - t0
    print(f"PSNR marked vs original: mean {res['psnr_mean']:.2f} dB, min {res['psnr_min']:.2f} dB")
    if a.out:
        Path(a.out).write_text(json.dumps(res, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
