"""Reference paths of upfirdn2d and bias_act: against a plain NumPy transcription of their
definitions, and first/second-order gradients by finite differences (float64)."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch

from lightning_gans.ops import downsample2d, filter2d, setup_filter, upsample2d
from lightning_gans.ops.bias_act import ACTIVATIONS, _bias_act_ref
from lightning_gans.ops.upfirdn2d import _upfirdn2d_ref


def naive_upfirdn2d(x, f, up=(1, 1), down=(1, 1), pad=(0, 0, 0, 0), flip=False, gain=1.0):
    """The definition, one step at a time, in NumPy loops (independent of the code under test)."""
    x, f = np.asarray(x, np.float64), np.asarray(f, np.float64)
    (upx, upy), (dx, dy), (px0, px1, py0, py1) = up, down, pad
    n, c, h, w = x.shape
    u = np.zeros((n, c, h * upy, w * upx))
    u[:, :, ::upy, ::upx] = x  # zero insertion: samples at multiples of up
    p = np.zeros((n, c, h * upy + py0 + py1, w * upx + px0 + px1))
    for i in range(p.shape[2]):  # pad with zeros; negative pads drop samples
        for j in range(p.shape[3]):
            si, sj = i - py0, j - px0
            if 0 <= si < u.shape[2] and 0 <= sj < u.shape[3]:
                p[:, :, i, j] = u[:, :, si, sj]
    k = np.outer(f, f) if f.ndim == 1 else f
    k = k * gain
    fh, fw = k.shape
    out = np.zeros((n, c, p.shape[2] - fh + 1, p.shape[3] - fw + 1))
    for i in range(out.shape[2]):
        for j in range(out.shape[3]):
            for a in range(fh):
                for b in range(fw):
                    # convolution: window offset (a, b) meets the filter tap mirrored, unless flip
                    tap = k[a, b] if flip else k[fh - 1 - a, fw - 1 - b]
                    out[:, :, i, j] += p[:, :, i + a, j + b] * tap
    return out[:, :, ::dy, ::dx]


def naive_bias_act(x, b, dim, act, alpha, gain, clamp):
    """NumPy formulas of the activations (defaults as documented in the papers / torch)."""
    x = np.asarray(x, np.float64)
    if b is not None:
        shape = [1] * x.ndim
        shape[dim] = -1
        x = x + np.asarray(b, np.float64).reshape(shape)
    sig = 1 / (1 + np.exp(-x))
    selu_a, selu_s = 1.6732632423543772848170429916717, 1.0507009873554804934193349852946
    y = {
        "linear": x,
        "relu": np.maximum(x, 0),
        "lrelu": np.where(x > 0, x, x * alpha),
        "tanh": np.tanh(x),
        "sigmoid": sig,
        "elu": np.where(x > 0, x, np.expm1(np.minimum(x, 0))),
        "selu": selu_s * np.where(x > 0, x, selu_a * np.expm1(np.minimum(x, 0))),
        "softplus": np.where(x > 20, x, np.log1p(np.exp(np.minimum(x, 20)))),
        "swish": x * sig,
    }[act] * gain
    return np.clip(y, -clamp, clamp) if clamp is not None else y


UPDOWN = [(1, 1), (2, 1), (1, 2), (2, 2), (3, 1), ((2, 1), (1, 2))]


@pytest.mark.parametrize("up,down", UPDOWN)
def test_upfirdn2d_ref_matches_definition(up, down):
    rng = np.random.default_rng(0)
    up2 = up if isinstance(up, tuple) else (up, up)
    down2 = down if isinstance(down, tuple) else (down, down)
    for fsize, two_d, flip in itertools.product([1, 2, 3, 4], [False, True], [False, True]):
        f = rng.standard_normal((fsize, fsize) if two_d else fsize)
        x = rng.standard_normal((2, 3, 5, 6))
        pad = [int(v) for v in rng.integers(-1, 4, size=4)]
        gain = float(rng.uniform(0.5, 2))
        try:
            want = naive_upfirdn2d(x, f, up2, down2, pad, flip, gain)
        except ValueError:
            continue
        if want.shape[2] < 1 or want.shape[3] < 1:
            continue
        got = _upfirdn2d_ref(torch.from_numpy(x), torch.from_numpy(f), list(up2), list(down2), pad,
                             flip, gain)
        np.testing.assert_allclose(got.numpy(), want, rtol=1e-10, atol=1e-10)


def test_upfirdn2d_ref_rejects_filter_larger_than_input():
    with pytest.raises(ValueError, match="smaller than the filter"):
        _upfirdn2d_ref(torch.zeros(1, 1, 2, 2), torch.ones(4, 4), padding=-1)


def test_resampling_helpers_keep_size_and_dc_level():
    f = setup_filter([1, 3, 3, 1])
    x = torch.full((1, 2, 8, 8), 0.5)
    up, down, same = (op(x, f, impl="ref") for op in (upsample2d, downsample2d, filter2d))
    assert up.shape == (1, 2, 16, 16) and down.shape == (1, 2, 4, 4) and same.shape == x.shape
    # Away from the zero-padded borders a constant image stays constant.
    for y in (up[..., 3:-3, 3:-3], down[..., 1:-1, 1:-1], same[..., 2:-2, 2:-2]):
        torch.testing.assert_close(y, torch.full_like(y, 0.5))


@pytest.mark.parametrize("act", sorted(ACTIVATIONS))
def test_bias_act_ref_matches_definition(act):
    rng = np.random.default_rng(1)
    x = rng.standard_normal((3, 4, 5)) * 3
    b = rng.standard_normal(4)
    spec = ACTIVATIONS[act]
    for clamp, gain, alpha in [(None, None, None), (0.7, 1.5, 0.1)]:
        got = _bias_act_ref(torch.from_numpy(x), torch.from_numpy(b), 1, act, alpha, gain, clamp)
        want = naive_bias_act(x, b, 1, act, spec.def_alpha if alpha is None else alpha,
                              spec.def_gain if gain is None else gain, clamp)
        np.testing.assert_allclose(got.numpy(), want, rtol=1e-12, atol=1e-12)
    got = _bias_act_ref(torch.from_numpy(x), torch.from_numpy(rng.standard_normal(5)), -1, act)
    assert got.shape == x.shape


def test_bias_act_ref_errors():
    with pytest.raises(ValueError, match="unknown activation"):
        _bias_act_ref(torch.zeros(2, 3), act="gelu")
    with pytest.raises(ValueError, match="does not match"):
        _bias_act_ref(torch.zeros(2, 3), torch.zeros(4))


GRAD_CASES = [
    dict(up=2, padding=[2, 1, 2, 1], f=[1.0, 3.0, 3.0, 1.0]),
    dict(down=2, padding=[1, 1, 1, 1], f=[[1.0, 2.0, 0.5], [0.0, 1.0, -1.0], [2.0, 1.0, 1.0]]),
    dict(up=[1, 2], down=[2, 1], padding=[-1, 2, 1, -1], f=[1.0, -2.0, 4.0]),
]


@pytest.mark.parametrize("case", GRAD_CASES, ids=lambda c: f"up{c.get('up')}-down{c.get('down')}")
def test_upfirdn2d_ref_gradients(case):
    case = dict(case)
    f = torch.tensor(case.pop("f"), dtype=torch.float64)
    x = torch.randn(1, 1, 5, 6, dtype=torch.float64, generator=torch.Generator().manual_seed(2),
                    requires_grad=True)
    fn = lambda x: _upfirdn2d_ref(x, f, **case, gain=1.7)  # noqa: E731
    assert torch.autograd.gradcheck(fn, (x,))
    assert torch.autograd.gradgradcheck(fn, (x,))


@pytest.mark.parametrize("act", sorted(ACTIVATIONS))
def test_bias_act_ref_gradients(act):
    g = torch.Generator().manual_seed(3)
    # Keep away from the kinks of relu/lrelu and from the clamp, where finite differences lie.
    x = torch.randn(2, 3, 4, dtype=torch.float64, generator=g)
    x = (x + 0.1 * x.sign()).requires_grad_()
    b = torch.randn(3, dtype=torch.float64, generator=g).mul(0.01).requires_grad_()
    for clamp in (None, 1.3 * math.sqrt(2)):
        fn = lambda x, b, clamp=clamp: _bias_act_ref(x, b, act=act, clamp=clamp)  # noqa: E731
        assert torch.autograd.gradcheck(fn, (x, b))
        assert torch.autograd.gradgradcheck(fn, (x, b))
