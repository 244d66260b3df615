"""Compiled CPU kernels of upfirdn2d and bias_act held to the reference paths: values, first and
second-order gradients, dispatch rules (LG_OPS / impl), and a whole StyleGAN2 G and D."""

from __future__ import annotations

import itertools
import math
import random

import pytest
import torch

from lightning_gans.ops import _isa, _jit, bias_act, setup_filter, upfirdn2d
from lightning_gans.ops.bias_act import ACTIVATIONS


@pytest.fixture(scope="module", params=["cpu", "cuda"])
def device(request) -> torch.device:
    if request.param == "cuda" and not torch.cuda.is_available():
        pytest.skip("no GPU visible (the CUDA sources are compiled by test_jit.py)")
    return torch.device(request.param)


@pytest.fixture(scope="module")
def kernels(device):
    """The device's kernels, built on the first run (a minute or two) and cached."""
    return _jit.get_module(device.type, required=True)


@pytest.fixture(scope="module")
def cpu_kernels():
    return _jit.get_module("cpu", required=True)


TOL = {torch.float32: dict(rtol=2e-5, atol=2e-5), torch.float64: dict(rtol=1e-10, atol=1e-10)}


def both(fn, *args, **kw):
    """fn(..., impl='ref') and fn(..., impl='compiled'); both must raise ValueError or neither."""
    try:
        want = fn(*args, impl="ref", **kw)
    except ValueError:
        with pytest.raises(ValueError):
            fn(*args, impl="compiled", **kw)
        return None, None
    return want, fn(*args, impl="compiled", **kw)


def random_input(rng: random.Random, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    n, c, h, w = rng.randint(1, 3), rng.randint(1, 4), rng.randint(1, 12), rng.randint(1, 12)
    layout = rng.choice(["contiguous", "channels_last", "transposed", "strided"])
    if layout == "channels_last":  # NHWC memory: the CPU kernels' second native layout
        return torch.randn(n, c, h, w, dtype=dtype, device=device).contiguous(memory_format=torch.channels_last)
    if layout == "transposed":  # a [N, C, H, W] view of a [N, C, W, H] tensor
        return torch.randn(n, c, w, h, dtype=dtype, device=device).transpose(2, 3)
    if layout == "strided":
        return torch.randn(n, c * 2, h, w + 3, dtype=dtype, device=device)[:, ::2, :, 1 : w + 1]
    return torch.randn(n, c, h, w, dtype=dtype, device=device)


FACTORS = [1, 2, 4]
UPDOWN = list(itertools.product(FACTORS, FACTORS)) + [([2, 1], [1, 4]), ([1, 4], [2, 1])]


@pytest.mark.parametrize("up,down", UPDOWN, ids=str)
def test_upfirdn2d_matches_reference(kernels, device, up, down):
    """Values and gradients over filter sizes 1..8 (1-D and 2-D), pads incl. crops, dtypes,
    shapes and memory layouts."""
    rng = random.Random(str((up, down)))
    torch.manual_seed(rng.randint(0, 1 << 30))
    checked = 0
    for fsize, two_d, dtype in itertools.product(range(1, 9), (False, True), TOL):
        fh = rng.randint(1, 8) if two_d else fsize  # 2-D filters need not be square
        f = torch.randn([fh, fsize] if two_d else [fsize], device=device)
        x = random_input(rng, dtype, device).requires_grad_()
        pad = [rng.randint(-2, 5) for _ in range(4)]
        kw = dict(up=up, down=down, padding=pad, flip_filter=rng.random() < 0.5,
                  gain=rng.uniform(0.5, 4))
        want, got = both(upfirdn2d, x, f, **kw)
        if want is None:
            continue
        assert got.shape == want.shape and got.dtype == want.dtype
        torch.testing.assert_close(got, want, **TOL[dtype])
        g = torch.randn_like(want)
        (gx_want,) = torch.autograd.grad(want, x, g)
        (gx_got,) = torch.autograd.grad(got, x, g)
        torch.testing.assert_close(gx_got, gx_want, **TOL[dtype])
        checked += 1
    assert checked >= 12  # the random sizes and pads must leave enough valid cases


def test_upfirdn2d_stylegan_filters(kernels, device):
    """The [1,3,3,1] outer product (factored into separable passes by the kernel), its 1-D form,
    and a 2-D filter that is not an outer product, through the resampling helpers' pads."""
    x0 = torch.randn(2, 5, 16, 17, device=device)
    rank2 = torch.tensor([[1.0, 2.0, 1.0], [2.0, 4.0, 2.5], [1.0, 2.0, 1.0]])
    for f, x in itertools.product(
        (setup_filter([1, 3, 3, 1]), setup_filter([1, 3, 3, 1], separable=True), rank2),
        (x0, x0.contiguous(memory_format=torch.channels_last)),
    ):
        f = f.to(device)
        for kw in (dict(up=2, padding=[2, 1, 2, 1], gain=4), dict(down=2, padding=1),
                   dict(padding=[2, 1, 2, 1]), dict(up=2, down=2, padding=3)):
            want, got = both(upfirdn2d, x, f, **kw)
            torch.testing.assert_close(got, want, **TOL[torch.float32])


def test_cpu_kernels_keep_channels_last(cpu_kernels):
    """NHWC in, NHWC out (values and gradients as the reference): a channels-last network
    pays no layout conversions around the kernels."""
    x = torch.randn(2, 6, 9, 8).contiguous(memory_format=torch.channels_last).requires_grad_()
    b = torch.randn(6)
    for fn in (lambda x, impl: upfirdn2d(x, setup_filter([1, 3, 3, 1]), up=2, padding=[2, 1, 2, 1], impl=impl),
               lambda x, impl: upfirdn2d(x, setup_filter([1, 3, 3, 1]), down=2, padding=1, impl=impl),
               lambda x, impl: bias_act(x, b, act="lrelu", clamp=1.0, impl=impl)):
        got, want = fn(x, "compiled"), fn(x, "ref")
        assert got.is_contiguous(memory_format=torch.channels_last) and not got.is_contiguous()
        torch.testing.assert_close(got, want, **TOL[torch.float32])
        g = torch.randn_like(got)  # channels-last, as the next layer's gradient would be
        (gx,) = torch.autograd.grad(got, x, g)
        assert gx.is_contiguous(memory_format=torch.channels_last)
        torch.testing.assert_close(gx, torch.autograd.grad(want, x, g)[0], **TOL[torch.float32])


GRAD_CASES = [
    dict(up=2, padding=[2, 1, 2, 1], f=[1.0, 3.0, 3.0, 1.0]),
    dict(down=2, padding=[1, 1, 1, 1], f=[[1.0, 2.0, 0.5], [0.0, 1.0, -1.0], [2.0, 1.0, 1.0]]),
    dict(up=[1, 2], down=[2, 1], padding=[-1, 2, 1, -1], f=[1.0, -2.0, 4.0]),
    dict(up=4, down=2, padding=[3, -1, 0, 2], f=[[0.5, 1.0], [1.5, -1.0]], flip_filter=True),
]


@pytest.mark.parametrize("case", GRAD_CASES, ids=lambda c: f"up{c.get('up')}-down{c.get('down')}")
def test_upfirdn2d_gradcheck(kernels, device, case):
    case = dict(case)
    f = torch.tensor(case.pop("f"), dtype=torch.float64, device=device)
    x0 = torch.randn(1, 2, 4, 5, dtype=torch.float64, device=device)
    fn = lambda x: upfirdn2d(x, f, **case, gain=1.5, impl="compiled")  # noqa: E731
    for x in (x0.clone(), x0.contiguous(memory_format=torch.channels_last)):
        x.requires_grad_()
        assert torch.autograd.gradcheck(fn, (x,))
        assert torch.autograd.gradgradcheck(fn, (x,))


def bias_cases(rng: random.Random):
    """(x, b, dim): feature maps, FC activations, a trailing channel dim, no bias, 1-D."""
    yield torch.randn(3, 6, 5, 4), torch.randn(6), 1
    yield torch.randn(7, 12), torch.randn(12), 1
    yield torch.randn(2, 3, 8), torch.randn(8), -1
    yield torch.randn(4, 5, 3, 3).transpose(2, 3), None, 1
    yield torch.randn(2, 6, 5, 4).contiguous(memory_format=torch.channels_last), torch.randn(6), 1
    yield torch.randn(2, 6, 5, 4).contiguous(memory_format=torch.channels_last), None, 1
    yield torch.randn(9), torch.randn(9), 0
    yield torch.randn(2, 8, 3, 3)[:, ::2], torch.randn(4), rng.choice([1, -3])


@pytest.mark.parametrize("act", sorted(ACTIVATIONS))
def test_bias_act_matches_reference(kernels, device, act):
    """Values, gradients and second-order gradients, with and without clamp, float32/64."""
    rng = random.Random(act)
    torch.manual_seed(rng.randint(0, 1 << 30))
    for (x0, b0, dim), clamp, dtype in itertools.product(bias_cases(rng), (None, 0.8), TOL):
        x = (x0.to(device, dtype) * 3).requires_grad_()  # reach the clamp and softplus' tail
        b = None if b0 is None else b0.to(device, dtype).requires_grad_()
        inputs = [x] if b is None else [x, b]
        kw = dict(b=b, dim=dim, act=act, clamp=clamp, alpha=0.3 if act == "lrelu" else None)
        want, got = both(bias_act, x, **kw)
        torch.testing.assert_close(got, want, **TOL[dtype])
        g, h = torch.randn_like(want), torch.randn_like(x)
        grads_want = torch.autograd.grad(want, inputs, g, create_graph=True)
        grads_got = torch.autograd.grad(got, inputs, g, create_graph=True)
        for a, e in zip(grads_got, grads_want):
            torch.testing.assert_close(a, e, **TOL[dtype])
        # Second order: d/d(x, b) of <dx, h>, what R1 and path length differentiate.
        loss_want, loss_got = (grads_want[0] * h).sum(), (grads_got[0] * h).sum()
        if not ACTIVATIONS[act].has_2nd_grad:  # piecewise linear: the second order is zero
            for loss in (loss_want, loss_got):
                if loss.requires_grad:
                    zeros = torch.autograd.grad(loss, inputs, allow_unused=True,
                                                materialize_grads=True)
                    assert all(t.abs().max() == 0 for t in zeros)
            continue
        second_got = torch.autograd.grad(loss_got, inputs)
        for a, e in zip(second_got, torch.autograd.grad(loss_want, inputs)):
            torch.testing.assert_close(a, e, **TOL[dtype])


def test_bias_act_plain_backward_sums_bias_grad_in_the_kernel(cpu_kernels, monkeypatch):
    """A training step's backward (no create_graph) takes dx and db from one fused kernel pass
    (bias_act_grad): both as the reference's, for NCHW rows, [N, C] rows (more than one row
    block of the db partial sums), a trailing channel dim, channels-last maps, a strided view,
    with and without clamp, each activation family, one thread and several."""
    calls = []
    real = cpu_kernels.bias_act_grad
    monkeypatch.setattr(cpu_kernels, "bias_act_grad", lambda *a: calls.append(1) or real(*a))
    shapes = [((8, 32, 12, 12), 1, None), ((300, 24), 1, None), ((5, 7, 40), -1, None),
              ((3, 20, 9, 11), 1, torch.channels_last), ((4, 16, 10, 10), 1, "strided")]
    threads = torch.get_num_threads()
    try:
        for (shape, dim, layout), act, clamp, dtype, nthreads in itertools.product(
                shapes, ("lrelu", "linear", "swish"), (None, 0.7), TOL, (1, 2)):
            torch.set_num_threads(nthreads)
            x0 = torch.randn(shape, dtype=dtype) * 2
            if layout is torch.channels_last:
                x0 = x0.contiguous(memory_format=torch.channels_last)
            elif layout == "strided":
                x0 = torch.randn(shape[0], shape[1] * 2, *shape[2:], dtype=dtype)[:, ::2] * 2
            b0 = torch.randn(shape[dim], dtype=dtype)
            grads = {}
            for impl in ("ref", "compiled"):
                x, b = x0.clone().requires_grad_(), b0.clone().requires_grad_()
                y = bias_act(x, b, dim=dim, act=act, clamp=clamp, impl=impl)
                g = torch.randn_like(y, generator=torch.Generator().manual_seed(1))
                y.backward(g)
                grads[impl] = (x.grad, b.grad)
            for got, want in zip(grads["compiled"], grads["ref"]):
                assert got.shape == want.shape and got.dtype == want.dtype
                torch.testing.assert_close(got, want, **TOL[dtype])
            if clamp is not None:  # the clamp must have cut some gradients
                assert (grads["ref"][0] == 0).any()
    finally:
        torch.set_num_threads(threads)
    assert len(calls) == len(shapes) * 3 * 2 * len(TOL) * 2
    # Only x needs a gradient: no bias sum at all, the plain mode-1 kernel.
    calls.clear()
    x = torch.randn(2, 3, 4, 4, requires_grad=True)
    bias_act(x, torch.randn(3), act="lrelu", impl="compiled").sum().backward()
    assert not calls and x.grad is not None


def test_cpu_kernels_report_their_isa(cpu_kernels):
    """The module says which vector ISA it was compiled for: the one the spec (LG_CPU_ISA, else
    the CPU's best) asked for, and never more than the CPU has."""
    spec = _jit.spec_for("cpu")
    assert cpu_kernels.isa == spec.isa
    assert _isa.CPU_ISAS.index(cpu_kernels.isa) >= _isa.CPU_ISAS.index(_isa.detected_isa())


@pytest.mark.parametrize("act", sorted(ACTIVATIONS))
def test_bias_act_gradcheck(kernels, device, act):
    x = torch.randn(2, 3, 4, dtype=torch.float64, device=device)
    x = (x + 0.1 * x.sign()).requires_grad_()  # away from the kinks of relu/lrelu
    b = (torch.randn(3, dtype=torch.float64, device=device) * 0.01).requires_grad_()
    for clamp in (None, 1.3 * math.sqrt(2)):
        fn = lambda x, b, clamp=clamp: bias_act(x, b, act=act, clamp=clamp, impl="compiled")  # noqa: E731
        assert torch.autograd.gradcheck(fn, (x, b))
        assert torch.autograd.gradgradcheck(fn, (x, b))


def test_bias_act_third_order_is_refused(kernels, device):
    x = torch.randn(5, 3, dtype=torch.float64, device=device, requires_grad=True)
    y = bias_act(x, act="tanh", impl="compiled")
    (g,) = torch.autograd.grad(y.sum(), x, create_graph=True)
    (gg,) = torch.autograd.grad(g.sum(), x, create_graph=True)
    with pytest.raises(RuntimeError, match="third-order"):
        gg.sum().backward()


def test_dispatch_follows_lg_ops_and_impl(cpu_kernels, monkeypatch):
    calls = []
    real = cpu_kernels.upfirdn2d
    monkeypatch.setattr(cpu_kernels, "upfirdn2d", lambda *a: calls.append(1) or real(*a))
    x, f = torch.randn(1, 2, 6, 6), setup_filter([1, 3, 3, 1])
    for env, impl, compiled in [
        (None, None, True), ("ref", None, False), ("compiled", None, True), ("auto", None, True),
        ("compiled", "ref", False), ("ref", "compiled", True),
    ]:
        if env is None:
            monkeypatch.delenv("LG_OPS", raising=False)
        else:
            monkeypatch.setenv("LG_OPS", env)
        calls.clear()
        upfirdn2d(x, f, up=2, impl=impl)
        assert bool(calls) == compiled, (env, impl)
    monkeypatch.setenv("LG_OPS", "fast")
    with pytest.raises(ValueError, match="LG_OPS"):
        upfirdn2d(x, f)


def test_unsupported_calls_use_reference_or_fail_loudly(cpu_kernels, monkeypatch):
    monkeypatch.delenv("LG_OPS", raising=False)
    x16 = torch.randn(1, 2, 6, 6).half()
    f = setup_filter([1, 3, 3, 1])
    torch.testing.assert_close(upfirdn2d(x16, f), upfirdn2d(x16, f, impl="ref"))
    with pytest.raises(ValueError, match="float16"):
        upfirdn2d(x16, f, impl="compiled")
    with pytest.raises(ValueError, match="float16"):
        bias_act(x16, act="lrelu", impl="compiled")
    # A filter that requires grad gets its gradient from the reference path.
    fg = f.clone().requires_grad_()
    upfirdn2d(torch.randn(1, 1, 5, 5), fg, padding=1).sum().backward()
    assert fg.grad is not None and fg.grad.abs().sum() > 0
    # bias_act promotes x and b like x + b does.
    x, b64 = torch.randn(2, 3), torch.randn(3, dtype=torch.float64)
    want, got = both(bias_act, x, b64, act="lrelu")
    assert got.dtype == want.dtype == torch.float64
    torch.testing.assert_close(got, want)


def _stylegan2(dtype: torch.dtype, device: torch.device):
    sg2 = pytest.importorskip("lightning_gans.models.stylegan2")
    sg2_d = pytest.importorskip("lightning_gans.models.stylegan2_discriminator")
    torch.manual_seed(0)
    G = sg2.Generator(z_dim=32, c_dim=0, w_dim=32, img_resolution=16, img_channels=3,
                      mapping_kwargs=dict(num_layers=2), channel_base=256, channel_max=32)
    D = sg2_d.Discriminator(c_dim=0, img_resolution=16, img_channels=3, channel_base=256,
                          channel_max=32)
    return G.to(device, dtype), D.to(device, dtype)


def _run(G, D, inputs, mode: str, monkeypatch) -> dict[str, torch.Tensor]:
    """Forward G and D, the gradients of D's output, and an R1-style second-order gradient.
    `inputs` is (z, c) for the whole G, or (ws,) for its synthesis network alone."""
    monkeypatch.setenv("LG_OPS", mode)
    torch.manual_seed(5)  # the same noise inputs for both paths
    if len(inputs) == 2:
        gen, c = G, inputs[1]
        img = G(*inputs)
    else:
        gen, c = G.synthesis, None
        img = G.synthesis(*inputs)
    params = [p for p in list(gen.parameters()) + list(D.parameters()) if p.requires_grad]
    logits = D(img, c)
    out = {"img": img.detach(), "logits": logits.detach()}
    # Unused and zero gradients (lrelu's second order) may be None on one path: materialize.
    grads = torch.autograd.grad(logits.sum(), params, allow_unused=True, materialize_grads=True)
    out.update({f"grad{i}": g for i, g in enumerate(grads)})
    real = img.detach().requires_grad_()
    (r1,) = torch.autograd.grad(D(real, c).sum(), real, create_graph=True)
    out["r1"] = r1.detach()
    grads = torch.autograd.grad(r1.square().sum(), list(D.parameters()), allow_unused=True,
                                materialize_grads=True)
    out.update({f"r1grad{i}": g for i, g in enumerate(grads)})
    return out


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).norm() / b.norm()) if b.norm() > 0 else float(a.norm())


def test_stylegan2_float64_same_under_ref_and_compiled(kernels, device, monkeypatch):
    """Synthesis network and D in float64: every output and gradient (incl. R1's second order)
    agrees to rounding, so any wrong tap, pad or derivative shows."""
    G, D = _stylegan2(torch.float64, device)
    ws = torch.randn(3, G.synthesis.num_ws, 32, dtype=torch.float64, device=device)
    ref = _run(G, D, (ws,), "ref", monkeypatch)
    comp = _run(G, D, (ws,), "compiled", monkeypatch)
    assert ref.keys() == comp.keys()
    for key, want in ref.items():
        assert _rel(comp[key], want) < 1e-10, key


def test_stylegan2_same_under_ref_and_compiled(kernels, device, monkeypatch):
    """The whole G (mapping included) and D in float32: outputs within 1e-5 relative, and all
    gradients together within 1e-5 relative. Per tensor the bound is 1e-4: a scalar parameter's
    gradient (noise strength) is a sum with heavy cancellation, where float32 rounding of
    differently ordered sums shows up at ~2e-5 on the CPU and ~1.1e-4 on an H200 (a 16-entry bias
    gradient of R1's second order, whose sums the GPU orders differently run to run)."""
    G, D = _stylegan2(torch.float32, device)
    z, c = torch.randn(4, 32, device=device), torch.zeros(4, 0, device=device)
    # Full float32 convolutions and matmuls on both paths: TF32 would swamp what is compared.
    precision, cudnn_tf32 = torch.get_float32_matmul_precision(), torch.backends.cudnn.allow_tf32
    torch.set_float32_matmul_precision("highest")
    torch.backends.cudnn.allow_tf32 = False
    try:
        ref = _run(G, D, (z, c), "ref", monkeypatch)
        comp = _run(G, D, (z, c), "compiled", monkeypatch)
    finally:
        torch.set_float32_matmul_precision(precision)
        torch.backends.cudnn.allow_tf32 = cudnn_tf32
    assert ref.keys() == comp.keys()
    for key in ("img", "logits", "r1"):
        assert _rel(comp[key], ref[key]) < 1e-5, key
    for prefix in ("grad", "r1grad"):
        keys = [k for k in ref if k.startswith(prefix)]
        flat = lambda d, keys=keys: torch.cat([d[k].flatten() for k in keys])  # noqa: E731
        assert _rel(flat(comp), flat(ref)) < 1e-5, prefix
        for k in keys:
            assert _rel(comp[k], ref[k]) < 2e-4 or (comp[k] - ref[k]).abs().max() < 1e-9, k
