"""FFHQ alignment on known geometry: a similarity transform of the photo and of its landmarks
must not change the aligned face (lightning_gans.data.faces.align)."""

import numpy as np
import pytest
from PIL import Image
from skimage import data, transform

from lightning_gans.data.faces.align import align_face, ffhq_crop

# Hand-marked on skimage.data.astronaut() (512 px) by viewing 7-9x zooms with a pixel grid:
# iris centres, nose tip, mouth corners; (x, y) pixel indices, image-left first.
ASTRONAUT_LANDMARKS = np.array(
    [(203.0, 101.5), (245.5, 102.5), (224.0, 126.0), (203.0, 140.0), (244.5, 141.0)]
)


def _warp(img: np.ndarray, lm: np.ndarray, angle: float, scale: float, centre, canvas):
    """The photo and its landmarks under one similarity transform (face centre -> `centre`)."""
    rot = transform.SimilarityTransform(scale=scale, rotation=np.deg2rad(angle))
    shift = np.asarray(centre) - rot(lm.mean(0, keepdims=True))[0]
    t = transform.SimilarityTransform(scale=scale, rotation=np.deg2rad(angle), translation=shift)
    out = transform.warp(img, t.inverse, output_shape=canvas, order=3, mode="constant")
    return (np.clip(out, 0, 1) * 255 + 0.5).astype(np.uint8), t(lm)


def _mae(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a.astype(np.float64) - b.astype(np.float64)).mean())


def test_crop_geometry_of_an_upright_face():
    # Eyes 40 px apart at y=100, mouth 50 px below their middle: x axis is (1, 0), the half side
    # is max(2 * 40, 1.8 * 50) = 90, the centre 0.1 * 50 = 5 px below the eye midpoint.
    lm = np.array([(80, 100), (120, 100), (100, 125), (85, 150), (115, 150)], dtype=float)
    crop = ffhq_crop(lm)
    np.testing.assert_allclose(crop.quad, [(10, 15), (10, 195), (190, 195), (190, 15)])
    assert crop.size == pytest.approx(180) and crop.face_size == pytest.approx(90)
    # The nose does not enter the geometry.
    lm2 = lm.copy()
    lm2[2] += (7, -3)
    np.testing.assert_allclose(ffhq_crop(lm2).quad, crop.quad)


def test_crop_is_equivariant_under_similarity():
    t = transform.SimilarityTransform(scale=1.7, rotation=0.6, translation=(40, -7))
    crop, moved = ffhq_crop(ASTRONAUT_LANDMARKS), ffhq_crop(t(ASTRONAUT_LANDMARKS))
    np.testing.assert_allclose(moved.quad, t(crop.quad), atol=1e-9)
    assert moved.size == pytest.approx(crop.size * 1.7)


@pytest.mark.parametrize(
    "angle, scale, resolution",
    [
        (0.0, 1.0, 128),  # subpixel shift only (centre moves by a fraction of a pixel)
        (25.0, 1.0, 128),
        (-40.0, 1.5, 128),
        (90.0, 1.2, 128),
        (10.0, 3.0, 64),  # qsize 510 px for a 64 px face: the integer shrink path (x3)
    ],
)
def test_aligned_face_is_invariant_to_similarity(angle, scale, resolution):
    a = data.astronaut()
    ref = align_face(a, ASTRONAUT_LANDMARKS, resolution)
    img, lm = _warp(a, ASTRONAUT_LANDMARKS, angle, scale, (530.3, 470.6), (1000, 1100))
    out = align_face(img, lm, resolution)
    assert out.shape == (resolution, resolution, 3) and out.dtype == np.uint8
    # Only resampling differs (bicubic warp + bilinear/Lanczos alignment): < 1.5 / 255.
    assert _mae(out, ref) < 1.5
    # ...while a 2 px error in the landmarks, or the other rotation sense, is far off:
    assert _mae(align_face(img, lm + (2.0 * scale, 0.0), resolution), ref) > 4 * _mae(out, ref)
    flip = lm.copy()
    flip[:, 1] = 2 * lm[:, 1].mean() - flip[:, 1]
    assert _mae(align_face(img, flip, resolution), ref) > 10


def test_transformed_copies_agree_with_each_other():
    a = data.astronaut()
    outs = [align_face(*_warp(a, ASTRONAUT_LANDMARKS, ang, sc, (400, 380), (800, 800)), 96)
            for ang, sc in [(-15, 0.9), (30, 1.1), (180, 1.3)]]
    assert max(_mae(outs[0], o) for o in outs[1:]) < 1.5


def test_padding_fills_outside_with_reflected_blurred_photo():
    a = data.astronaut()
    # Cut the photo so the crop square leaves it on the left and top.
    cut = np.ascontiguousarray(a[80:400, 190:512])
    out = align_face(cut, ASTRONAUT_LANDMARKS - (190, 80), 128).astype(np.float64)
    no_pad = align_face(Image.fromarray(cut), ASTRONAUT_LANDMARKS - (190, 80), 128, pad=False)
    # Without padding the outside is black; with it, the corner holds photo-like colours,
    # and the face away from the cut edges (the blur reaches ~17 px into the photo) is intact.
    assert no_pad[:8, :8].max() == 0
    assert out[:8, :8].mean() > 60
    ref = align_face(a, ASTRONAUT_LANDMARKS, 128)
    assert _mae(out[64:120, 56:110], ref[64:120, 56:110]) < 1.0
    assert _mae(out[:40, :40], ref[:40, :40]) > 10  # the padded corner is not the real photo
