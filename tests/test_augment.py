"""ADA pieces: the bgc augmentation pipeline, the p controller and freeze-D (Karras et al. 2020)."""

import math

import numpy as np
import pytest
import torch

from lightning_gans.augment import AdaController, AugmentPipe, discriminator_layers, freeze_discriminator
from lightning_gans.data.demo import _astronaut, drawn_face, photo_crop
from lightning_gans.models.stylegan2_discriminator import Discriminator

GEOMETRIC = ["xflip", "rotate90", "xint", "scale", "rotate", "aniso", "xfrac"]
COLOUR = ["brightness", "contrast", "lumaflip", "hue", "saturation"]
NONE = {k: 0 for k in GEOMETRIC + COLOUR}


def only(*names, p=1.0):
    return AugmentPipe(**{**NONE, **{n: 1 for n in names}}, p=p)


def smooth(n=4, size=32, dtype=torch.float32):
    """Band-limited test images (a few low-frequency sinusoids), so resampling is near exact."""
    yy, xx = torch.meshgrid(torch.arange(size, dtype=dtype), torch.arange(size, dtype=dtype), indexing="ij")
    waves = [(1, 0, 0.3), (0, 1, 1.0), (1, 1, 2.0), (2, 1, 0.0), (1, 2, 0.7)]
    imgs = [torch.stack([torch.sin(2 * math.pi * (a * xx + b * yy) / size + c + ch) for ch in range(3)])
            for a, b, c in waves[:n]]
    return 0.5 * torch.stack(imgs)


def test_p_zero_is_identity():
    x = torch.randn(4, 3, 16, 16)
    assert AugmentPipe(p=0.0)(x) is x


@pytest.mark.parametrize("name", GEOMETRIC + COLOUR)
def test_each_augmentation_changes_images_and_passes_gradients(name):
    x = torch.randn(8, 3, 16, 16, requires_grad=True)
    y = only(name)(x)
    assert y.shape == x.shape
    changed = (y - x).detach().abs().amax(dim=(1, 2, 3)) > 0.01
    assert changed.any()
    w = torch.randn_like(y)
    (y * w).sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all() and x.grad[changed].abs().sum() > 0


@pytest.mark.parametrize("names", [GEOMETRIC, COLOUR])
def test_gradcheck_float64(names):
    pipe = only(*names)

    def f(x):
        torch.manual_seed(1)  # the same random transforms on every call
        return pipe(x)

    x = torch.randn(2, 3, 8, 8, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(f, (x,), fast_mode=True)
    # R1 differentiates D(augment(x)) twice. For fixed draws the pipeline is affine, x -> A x + b,
    # so d/dw <A^T w, v> must equal A v = f(v) - f(0): the backward is itself differentiable.
    w = torch.randn_like(x, requires_grad=True)
    (g,) = torch.autograd.grad((f(x) * w).sum(), x, create_graph=True)
    v = torch.randn_like(x)
    (gg,) = torch.autograd.grad((g * v).sum(), w)
    torch.testing.assert_close(gg, f(v) - f(torch.zeros_like(v)))


def test_blits_are_exact_and_untouched_samples_pass_through():
    x = smooth(5, dtype=torch.float64)
    torch.manual_seed(3)
    y = only("xflip")(x)
    inner = (slice(None), slice(6, -6), slice(6, -6))  # away from the reflect-padded border
    flipped = 0
    for i in range(len(x)):
        if (y[i] - x[i]).abs().max() < 1e-6:
            continue  # not flipped: the resampling chain is the identity (orthogonal filter)
        assert (y[i] - x[i].flip(2))[inner].abs().max() < 5e-3  # filter residual; misaligned ~0.3
        flipped += 1
    assert flipped > 0
    torch.manual_seed(4)
    y = only("rotate90")(x)
    ks = []
    for i in range(len(x)):
        errs = [(y[i] - torch.rot90(x[i], k, (1, 2)))[inner].abs().max().item() for k in range(4)]
        assert min(errs) < 5e-3  # filter residual; misaligned ~0.3
        ks.append(int(np.argmin(errs)))
    assert len(set(ks)) > 1


def test_colour_transforms_act_on_luma_and_chroma_as_specified():
    x = torch.rand(16, 3, 4, 4) * 2 - 1
    luma, chroma = x.mean(dim=1, keepdim=True), x - x.mean(dim=1, keepdim=True)

    def parts(y):
        return y.mean(dim=1, keepdim=True), y - y.mean(dim=1, keepdim=True)

    y_l, y_c = parts(only("brightness")(x))  # one offset added to all channels
    torch.testing.assert_close(y_c, chroma)
    assert (y_l - luma).flatten(1).std(dim=1).max() < 1e-5
    y = only("contrast")(x)  # one factor on all channels
    k = (y / x).flatten(1)
    assert (k.std(dim=1) / k.mean(dim=1).abs()).max() < 1e-3
    y_l, y_c = parts(only("lumaflip")(x))  # luma -> +-luma, chroma kept
    torch.testing.assert_close(y_c, chroma)
    assert torch.isclose(y_l, luma, atol=1e-5).flatten(1).all(1).logical_xor(
        torch.isclose(y_l, -luma, atol=1e-5).flatten(1).all(1)).all()
    y_l, y_c = parts(only("hue")(x))  # rotation about the grey axis: luma and |chroma| kept
    torch.testing.assert_close(y_l, luma)
    torch.testing.assert_close(y_c.norm(dim=1), chroma.norm(dim=1))
    assert (y_c - chroma).abs().max() > 0.1
    y_l, y_c = parts(only("saturation")(x))  # chroma scaled by one factor per image
    torch.testing.assert_close(y_l, luma)
    ratio = (y_c.norm(dim=1) / chroma.norm(dim=1)).flatten(1)
    assert (ratio.std(dim=1) / ratio.mean(dim=1)).max() < 1e-3


def face_batch(n=64, size=32):
    base = _astronaut(size)
    imgs = []
    for i in range(n):
        rng = np.random.default_rng([7, i])
        img = photo_crop(base, size, rng) if i % 2 == 0 else drawn_face(size, rng)
        imgs.append(torch.from_numpy(np.asarray(img.convert("RGB"), dtype=np.float32)).permute(2, 0, 1))
    return torch.stack(imgs) / 127.5 - 1


def expected_colour_matrix(p: float) -> torch.Tensor:
    """E[C] of the bgc colour stage at probability p, from the paper's distributions."""
    v = torch.tensor([1, 1, 1, 0.0], dtype=torch.float64) / math.sqrt(3)
    vv, eye, e4 = torch.outer(v, v), torch.eye(4, dtype=torch.float64), torch.zeros(4, 4, dtype=torch.float64)
    e4[3, 3] = 1
    lognormal_mean = lambda std: math.exp((std * math.log(2)) ** 2 / 2)  # noqa: E731  E[2^(std Z)]
    contrast = eye.clone()
    contrast[:3, :3] *= (1 - p) + p * lognormal_mean(0.5)
    lumaflip = eye - p * vv  # flip (i = 1) with probability p / 2: E = I - 2 vv * p / 2
    hue = (1 - p) * eye + p * (vv + e4)  # a uniform angle over the full circle averages to the axis
    saturation = vv + (eye - vv) * ((1 - p) + p * lognormal_mean(1.0))
    return saturation @ hue @ lumaflip @ contrast  # brightness has zero mean


def test_leak_check_mean_colour():
    x = face_batch()
    mean = x.mean(dim=(0, 2, 3))
    # Geometric transforms only move pixels (reflect padding brings in image content, filters have
    # unit DC gain), so the batch's mean colour may move only by border effects: within 0.03 in
    # [-1, 1] (about 4/255 per channel) at p = 1, while a systematic leak (wrong gain, zeros
    # sampled in) would be far larger.
    torch.manual_seed(0)
    geo = only(*GEOMETRIC)(x).mean(dim=(0, 2, 3))
    assert (geo - mean).abs().max() < 0.03, (geo, mean)
    # Colour at p = 0.2 (a typical ADA p on a few thousand images): the augmented mean must match
    # E[C] @ mean derived from the paper's distributions, within 4 standard errors over 1024
    # augmented images; e.g. a brightness offset with nonzero mean or a wrong probability fails.
    p = 0.2
    reps = x.repeat(16, 1, 1, 1)
    per_image = only(*COLOUR, p=p)(reps).mean(dim=(2, 3)).double()
    expected = expected_colour_matrix(p) @ torch.cat([mean.double(), torch.ones(1, dtype=torch.float64)])
    se = per_image.std(dim=0) / math.sqrt(len(per_image))
    assert ((per_image.mean(dim=0) - expected[:3]).abs() < 4 * se).all(), (per_image.mean(0), expected, se)
    # ... and the shift it does make stays small at that p.
    assert (per_image.mean(dim=0) - mean).abs().max() < 0.1


# ---- controller ---------------------------------------------------------------------------
@pytest.mark.parametrize("r_t,direction", [(0.9, 1), (0.2, -1)])
def test_controller_moves_p_towards_target(r_t, direction):
    ctl, p = AdaController(target=0.6, interval=4, kimg=500), torch.tensor(0.3)
    for it in range(8):
        ctl.accumulate(torch.tensor(r_t))
        out = ctl.update(p, it, batch_size=32)
        if it % 4 != 3:
            assert out is None  # only every interval-th iteration
        else:
            assert out.item() == pytest.approx(r_t)
    step = 32 * 4 / (500 * 1000)
    assert ctl.step_size(32) == pytest.approx(step)
    assert p.item() == pytest.approx(0.3 + direction * 2 * step)


def test_controller_averages_since_last_update_clamps_and_reduces():
    ctl, p = AdaController(target=0.6, interval=2, kimg=100), torch.tensor(0.0)
    seen = []
    ctl.accumulate(torch.tensor(1.0))
    ctl.accumulate(torch.tensor(0.0))  # mean 0.5 < target: p would go negative
    assert ctl.update(p, 1, 64, reduce=lambda t: seen.append(t.clone()) or t).item() == pytest.approx(0.5)
    assert p.item() == 0.0 and seen[0].tolist() == [1.0, 2.0]
    ctl.accumulate(torch.tensor(0.7))
    ctl.accumulate(torch.tensor(0.7))
    ctl.update(p, 3, 64)
    assert p.item() == pytest.approx(64 * 2 / 100_000)
    assert ctl.state_dict()["sign_stats"].tolist() == [0.0, 0.0]


# ---- freeze-D -------------------------------------------------------------------------------
def test_freeze_d_stops_gradients_and_updates():
    torch.set_num_threads(1)
    D = Discriminator(img_resolution=16, channel_base=256, channel_max=16, mbstd_group_size=2)
    names = [n for n, _ in discriminator_layers(D)]
    assert names[:6] == ["b16.fromrgb", "b16.conv0", "b16.conv1", "b16.skip", "b8.conv0", "b8.conv1"]
    keys = set(D.state_dict())
    frozen = freeze_discriminator(D, 5)
    assert frozen == ["b16.fromrgb.weight", "b16.fromrgb.bias", "b16.conv0.weight", "b16.conv0.bias",
                      "b16.conv1.weight", "b16.conv1.bias", "b16.skip.weight", "b8.conv0.weight", "b8.conv0.bias"]
    assert set(D.state_dict()) == keys  # checkpoints and pretrained weights still load
    before = {k: v.clone() for k, v in D.state_dict().items()}
    opt = torch.optim.Adam(D.parameters(), lr=0.01)
    img = torch.randn(4, 3, 16, 16, requires_grad=True)
    D.requires_grad_(True)  # the module toggles requires_grad around each phase
    torch.nn.functional.softplus(-D(img)).mean().backward()
    opt.step()
    after = D.state_dict()
    for k in keys:
        if k in frozen:
            assert torch.equal(after[k], before[k]), k
        elif k.endswith("weight"):
            assert not torch.equal(after[k], before[k]), k
    assert img.grad is not None and img.grad.abs().sum() > 0  # R1 still sees d D / d x
    with pytest.raises(ValueError, match="freeze_d=99"):
        freeze_discriminator(D, 99)
