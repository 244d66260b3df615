"""The fused modulated-conv epilogue (CPU kernel) held to its definition: values, gradients of
all four inputs, second order (path length differentiates through it), both memory layouts."""

from __future__ import annotations

import itertools

import pytest
import torch

from lightning_gans.ops import _jit, bias_act, scaled_bias_act

TOL = {torch.float32: dict(rtol=2e-5, atol=2e-5), torch.float64: dict(rtol=1e-10, atol=1e-10)}


@pytest.fixture(scope="module", autouse=True)
def kernels():
    return _jit.get_module("cpu", required=True)


def definition(x, scale, noise, b, **kw):
    """What the op means, spelled out with the reference bias_act."""
    if scale is not None:
        x = x * scale[:, :, None, None]
    if noise is not None:
        x = x + noise
    return bias_act(x, b, impl="ref", **kw)


def inputs(dtype, layout, with_scale, with_noise, with_bias, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(3, 5, 6, 7, dtype=dtype, generator=g)
    if layout == "channels_last":
        x = x.contiguous(memory_format=torch.channels_last)
    scale = torch.rand(3, 5, dtype=dtype, generator=g) + 0.5 if with_scale else None
    noise = torch.randn(3, 1, 6, 7, dtype=dtype, generator=g) * 0.3 if with_noise else None
    b = torch.randn(5, dtype=dtype, generator=g) if with_bias else None
    return [t.requires_grad_() if t is not None else None for t in (x, scale, noise, b)]


CASES = list(itertools.product(("linear", "relu", "lrelu"), (None, 1.1), ("contiguous", "channels_last")))


@pytest.mark.parametrize("act,clamp,layout", CASES, ids=str)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=str)
def test_matches_definition(act, clamp, layout, dtype):
    for parts in itertools.product((True, False), repeat=3):
        x, scale, noise, b = inputs(dtype, layout, *parts)
        kw = dict(act=act, clamp=clamp, gain=1.7, alpha=0.3 if act == "lrelu" else None)
        want = definition(x, scale, noise, b, **kw)
        got = scaled_bias_act(x, scale, noise, b, impl="compiled", **kw)
        torch.testing.assert_close(got, want, **TOL[dtype])
        if layout == "channels_last":
            assert got.is_contiguous(memory_format=torch.channels_last)
        leaves = [t for t in (x, scale, noise, b) if t is not None]
        g = torch.randn_like(got)
        for a, e in zip(torch.autograd.grad(got, leaves, g), torch.autograd.grad(want, leaves, g)):
            torch.testing.assert_close(a, e, **TOL[dtype])


@pytest.mark.parametrize("layout", ["contiguous", "channels_last"])
def test_gradcheck_and_second_order(layout):
    x, scale, noise, b = inputs(torch.float64, layout, True, True, True, seed=1)
    x = (x.detach() + 0.05 * x.detach().sign()).requires_grad_()  # away from lrelu's kink
    fn = lambda *t: scaled_bias_act(*t, act="lrelu", gain=1.4, clamp=2.5, impl="compiled")  # noqa: E731
    assert torch.autograd.gradcheck(fn, (x, scale, noise, b))
    assert torch.autograd.gradgradcheck(fn, (x, scale, noise, b))


def test_noise_broadcast_and_fallbacks():
    """Constant noise [H, W] broadcasts (its gradient sums over the batch); an activation
    without a fused kernel (tanh) and CUDA take the composition, with the same values."""
    x, scale, _, b = inputs(torch.float32, "channels_last", True, False, True, seed=2)
    noise = torch.randn(6, 7, requires_grad=True)
    got = scaled_bias_act(x, scale, noise, b, act="lrelu", impl="compiled")
    want = definition(x, scale, noise, b, act="lrelu")
    torch.testing.assert_close(got, want, **TOL[torch.float32])
    (gn,) = torch.autograd.grad(got.sum(), noise)
    torch.testing.assert_close(gn, torch.autograd.grad(want.sum(), noise)[0], **TOL[torch.float32])
    tanh = scaled_bias_act(x, scale, noise, b, act="tanh", impl="compiled")
    torch.testing.assert_close(tanh, definition(x, scale, noise, b, act="tanh"), **TOL[torch.float32])
    with pytest.raises(ValueError, match="scale"):
        scaled_bias_act(x, scale[:, :2], None, b)
