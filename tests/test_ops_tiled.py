"""The shared-memory tiled CUDA upfirdn2d (csrc/upfirdn2d_tiled.cu, opt-in via LG_UPFIRDN2D=tiled)
held to the reference path: every instance (filter only, up 2, down 2), 1-D and 2-D filters up to
4 x 4, odd sizes, tiles cut by the image edge, crops and pads, float32/float16/bfloat16, first and
second-order gradients through the autograd wrapper; calls without an instance fall back to the
direct kernel. The GPU tests skip without CUDA (nvcc compiling the source is in test_jit.py); the
choice of kernel (LG_UPFIRDN2D, doctor) is tested on the CPU."""

from __future__ import annotations

import itertools
import random

import pytest
import torch

from lightning_gans.ops import _jit, doctor, setup_filter, upfirdn2d
from lightning_gans.ops.upfirdn2d import (
    cuda_kernel,
    downsample2d,
    filter2d,
    parse_padding,
    parse_scaling,
    upsample2d,
)

# Both paths round a float32 sum once, so low precision differs by at most one unit in the last place.
TOL = {torch.float32: dict(rtol=2e-5, atol=2e-5), torch.float16: dict(rtol=2e-3, atol=2e-3),
       torch.bfloat16: dict(rtol=1.6e-2, atol=1.6e-2)}
CASES = [(1, 1), (2, 1), (1, 2)]  # (up, down): the tiled kernel's instances


def test_kernel_choice_follows_lg_upfirdn2d(monkeypatch):
    monkeypatch.delenv("LG_UPFIRDN2D", raising=False)
    assert cuda_kernel() == "direct"  # opt-in: the default stays the direct kernel
    monkeypatch.setenv("LG_UPFIRDN2D", " Tiled ")
    assert cuda_kernel() == "tiled" and cuda_kernel("direct") == "direct"
    monkeypatch.setenv("LG_UPFIRDN2D", "fast")
    with pytest.raises(ValueError, match="LG_UPFIRDN2D"):
        cuda_kernel()
    # CPU calls have one kernel: the choice is not read there.
    x, f = torch.randn(1, 2, 6, 7), setup_filter([1, 3, 3, 1])
    torch.testing.assert_close(upfirdn2d(x, f, up=2, impl="ref"), upfirdn2d(x, f, up=2))
    torch.testing.assert_close(upfirdn2d(x, f, up=2, impl="ref"), upfirdn2d(x, f, up=2, kernel="direct"))


def test_doctor_names_the_selected_kernel(monkeypatch, capsys, tmp_path):
    monkeypatch.setenv("LG_EXTENSIONS_DIR", str(tmp_path))
    for env, want in ((None, "direct CUDA kernel (unset; tiled is opt-in)"),
                      ("tiled", "tiled CUDA kernel (LG_UPFIRDN2D=tiled)"), ("x", "invalid:")):
        if env is None:
            monkeypatch.delenv("LG_UPFIRDN2D", raising=False)
        else:
            monkeypatch.setenv("LG_UPFIRDN2D", env)
        doctor.report()
        line = next(ln for ln in capsys.readouterr().out.splitlines() if ln.startswith("LG_UPFIRDN2D"))
        assert want in line, line


@pytest.fixture(scope="module")
def cuda_kernels():
    if not torch.cuda.is_available():
        pytest.skip("no GPU visible (the CUDA sources are compiled by test_jit.py)")
    return _jit.get_module("cuda", required=True)


@pytest.fixture
def strict_tiled(cuda_kernels, monkeypatch):
    """Counts tiled calls and makes a fallback to the direct kernel an error, so a passing test
    proves the tiled kernel computed every forward and backward pass."""
    calls = []
    real = cuda_kernels.upfirdn2d_tiled
    monkeypatch.setattr(cuda_kernels, "upfirdn2d_tiled", lambda *a: calls.append(a[2:6]) or real(*a[:-1], True))
    return calls


def _check(x, f, kw, dtype, second_order=False):
    """Tiled vs reference: values, the input gradient, optionally the gradient of <dx, h> with
    respect to the output gradient (the op is linear in x: that is the second order R1 and path
    length run, the backward of the backward, i.e. the forward kernel again)."""
    x = x.to(dtype).requires_grad_()
    want = upfirdn2d(x, f, impl="ref", **kw)
    got = upfirdn2d(x, f, impl="compiled", kernel="tiled", **kw)
    assert got.shape == want.shape and got.dtype == want.dtype == dtype
    torch.testing.assert_close(got, want, **TOL[dtype])
    g = torch.randn_like(want).requires_grad_(second_order)
    (gw,) = torch.autograd.grad(want, x, g, create_graph=second_order)
    (gg,) = torch.autograd.grad(got, x, g, create_graph=second_order)
    torch.testing.assert_close(gg, gw, **TOL[dtype])
    if second_order:
        h = torch.randn_like(gw)
        (hw,) = torch.autograd.grad((gw * h).sum(), g)
        (hg,) = torch.autograd.grad((gg * h).sum(), g)
        assert hw.abs().sum() > 0
        torch.testing.assert_close(hg, hw, **TOL[dtype])


@pytest.mark.parametrize("up,down", CASES, ids=str)
@pytest.mark.parametrize("dtype", list(TOL), ids=str)
def test_tiled_matches_reference(strict_tiled, up, down, dtype):
    """Random filters (1-D 1..4 taps, 2-D up to 4 x 4, not square), sizes from 1 px to several
    32 x 32 tiles (odd, tiles cut by the edge), pads from -2 to 5 per side, flip and gain."""
    rng = random.Random(str((up, down, dtype)))
    torch.manual_seed(rng.randint(0, 1 << 30))
    checked = 0
    for trial in range(40):
        fw = rng.randint(1, 4)
        f = torch.randn([rng.randint(1, 4), fw] if rng.random() < 0.5 else [fw], device="cuda")
        n, c = rng.randint(1, 3), rng.randint(1, 5)
        h, w = rng.choice([1, 2, 5, 17, 31, 33, 70]), rng.choice([1, 3, 16, 32, 45, 97])
        kw = dict(up=up, down=down, padding=[rng.randint(-2, 5) for _ in range(4)],
                  flip_filter=rng.random() < 0.5, gain=rng.uniform(0.5, 4))
        try:
            upfirdn2d(torch.empty(1, 1, h, w), f.cpu(), impl="ref", **kw)
        except ValueError:
            continue  # padded input smaller than the filter: refused alike (test_ops_kernels)
        _check(torch.randn(n, c, h, w, device="cuda"), f, kw, dtype, second_order=trial % 8 == 0)
        checked += 1
    assert checked >= 25 and strict_tiled
    assert {call for call in strict_tiled} >= {(up, up, down, down), (down, down, up, up)}


@pytest.mark.parametrize("dtype", list(TOL), ids=str)
def test_tiled_stylegan2_calls(strict_tiled, monkeypatch, dtype):
    """The resampling helpers as StyleGAN2's layers call them, with LG_UPFIRDN2D=tiled: the 4 x 4
    [1,3,3,1] filter (2-D, as setup_filter gives it) and its separable form, NCHW and
    channels-last inputs, a 256 px map and an odd-sized one."""
    monkeypatch.setenv("LG_UPFIRDN2D", "tiled")
    monkeypatch.setenv("LG_OPS", "compiled")
    for f, (n, c, h, w), channels_last in itertools.product(
            (setup_filter([1, 3, 3, 1]), setup_filter([1, 3, 3, 1], separable=True)),
            ((2, 8, 256, 256), (3, 5, 37, 29)), (False, True)):
        f = f.cuda()
        x0 = torch.randn(n, c, h, w, device="cuda", dtype=dtype)
        if channels_last:
            x0 = x0.contiguous(memory_format=torch.channels_last)
        for fn, kw in ((upsample2d, dict(gain=4)), (downsample2d, {}), (filter2d, dict(padding=1, gain=4)),
                       (filter2d, dict(padding=2))):
            x = x0.clone().requires_grad_()
            got = fn(x, f, **kw)
            want = fn(x, f, impl="ref", **kw)
            torch.testing.assert_close(got, want, **TOL[dtype])
            g = torch.randn_like(want)
            torch.testing.assert_close(torch.autograd.grad(got, x, g)[0], torch.autograd.grad(want, x, g)[0],
                                       **TOL[dtype])
    assert len(strict_tiled) == 2 * 2 * 2 * 4 * 2  # forward and backward of every call


def test_tiled_matches_direct_kernel(cuda_kernels):
    """Same float32 sums in another order: the two CUDA kernels agree to rounding."""
    torch.manual_seed(3)
    x = torch.randn(4, 16, 64, 63, device="cuda")
    for (up, down), f in itertools.product(CASES, (setup_filter([1, 3, 3, 1]), torch.randn(3, 4))):
        kw = dict(up=up, down=down, padding=[2, 1, 1, 2], gain=2.0)
        a = upfirdn2d(x, f.cuda(), impl="compiled", kernel="direct", **kw)
        b = upfirdn2d(x, f.cuda(), impl="compiled", kernel="tiled", **kw)
        torch.testing.assert_close(b, a, rtol=1e-5, atol=1e-5)


def test_calls_without_a_tiled_instance_use_the_direct_kernel(cuda_kernels):
    """Up/down 4, up and down together, unequal x/y factors, filters wider than 4, float64:
    kernel='tiled' gives the direct kernel's result; strict mode refuses them by name."""
    torch.manual_seed(4)
    f4, f8 = setup_filter([1, 3, 3, 1]).cuda(), setup_filter([1, 3, 3, 1, 1, 3, 3, 1]).cuda()
    calls = [(torch.float32, f4, dict(up=4, padding=2)), (torch.float32, f4, dict(down=4, padding=1)),
             (torch.float32, f4, dict(up=2, down=2, padding=3)), (torch.float16, f4, dict(up=[2, 1], padding=2)),
             (torch.float32, f8, dict(padding=4)), (torch.float64, f4, dict(up=2, padding=2))]
    for dtype, f, kw in calls:
        x = torch.randn(2, 3, 11, 13, device="cuda", dtype=dtype)
        want = upfirdn2d(x, f, impl="ref", **kw)
        got = upfirdn2d(x, f, impl="compiled", kernel="tiled", **kw)
        torch.testing.assert_close(got, want, **TOL.get(dtype, dict(rtol=1e-10, atol=1e-10)))
        (ux, uy), (dx, dy) = parse_scaling(kw.get("up", 1)), parse_scaling(kw.get("down", 1))
        f_arg = f.to(torch.float64 if dtype == torch.float64 else torch.float32)
        with pytest.raises(RuntimeError, match="no tiled instance"):
            cuda_kernels.upfirdn2d_tiled(x, f_arg, ux, uy, dx, dy, *parse_padding(kw["padding"]), False, 1.0, True)
