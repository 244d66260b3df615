"""StyleGAN (v1) networks: official counts, progressive fade-in, truncation, mixing, layer math."""

import math

import pytest
import torch
import torch.nn.functional as F

from lightning_gans.models.stylegan import (
    TRUNCATION_CUTOFF,
    Discriminator,
    Generator,
    fade_in_reals,
    mix_styles,
    num_ws_at,
)
from lightning_gans.nn.adain import NoiseInput, StyleLayer, downscale2d, upscale2d
from lightning_gans.nn.layers import count_params

SMALL = dict(fmap_base=256, fmap_max=16)  # maps 16 up to 16x16, then 8, 4, 2 at 128


def small(res: int, **kw):
    G = Generator(z_dim=32, w_dim=32, img_resolution=res, mapping_layers=2, **SMALL, **kw)
    D = Discriminator(img_resolution=res, **SMALL)
    return G.eval(), D


def test_official_1024_parameter_counts():
    G, D = Generator(), Discriminator()
    # The total the official TF code prints for the FFHQ 1024 generator (trainables only).
    assert count_params(G) == 26_219_627
    assert count_params(G.mapping) == 8 * (512 * 512 + 512)
    torgbs = [getattr(G.synthesis, f"b{r}").torgb for r in G.synthesis.block_resolutions]
    assert sum(count_params(m) for m in torgbs) == 7_659  # all nine kept for progressive growing
    assert [m.weight.shape[1] for m in torgbs] == [512] * 4 + [256, 128, 64, 32, 16]
    # rosinality's port lacks only the bias after the learned constant.
    assert G.synthesis.b4.layer0.bias.numel() == 512
    assert count_params(G) - 512 == 26_219_115
    assert G.num_ws == 18
    assert count_params(D) == 23_087_249
    assert [getattr(D, f"b{r}").fromrgb.weight.shape[0] for r in [1024, 512, 256, 128, 64, 4]] == [
        16, 32, 64, 128, 256, 512,
    ]


@pytest.mark.parametrize("res,alpha", [(4, 1.0), (8, 0.5), (32, 1.0), (128, 0.3), (256, 0.0)])
def test_output_shapes_at_current_resolution(res, alpha):
    G, D = small(256)
    img = G(torch.randn(4, 32), resolution=res, alpha=alpha)
    assert img.shape == (4, 3, res, res)
    assert D(img, resolution=res, alpha=alpha).shape == (4, 1)
    assert num_ws_at(res) == 2 * int(math.log2(res)) - 2


@pytest.mark.parametrize("R", [16, 128])  # 128: the fused up-conv path
def test_generator_fade_in(R):
    G, _ = small(128)
    z = torch.randn(3, 32)
    run = lambda **kw: G(z, noise_mode="const", **kw)  # noqa: E731
    new, old = run(resolution=R, alpha=1.0), run(resolution=R, alpha=0.0)
    prev = run(resolution=R // 2)
    # alpha=0: the previous resolution's output, nearest-upsampled.
    torch.testing.assert_close(old, F.interpolate(prev, scale_factor=2, mode="nearest"))
    # alpha=1: the new branch alone, blocks up to R then torgb_R.
    ws = G.mapping(z, None)
    x = None
    for i, res in enumerate(r for r in G.synthesis.block_resolutions if r <= R):
        x = getattr(G.synthesis, f"b{res}")(x, ws[:, 2 * i : 2 * i + 2], "const")
    torch.testing.assert_close(new, getattr(G.synthesis, f"b{R}").torgb(x))
    torch.testing.assert_close(run(resolution=R, alpha=0.25), 0.75 * old + 0.25 * new)
    # The previous toRGB matters during the fade only.
    with torch.no_grad():
        getattr(G.synthesis, f"b{R // 2}").torgb.weight.add_(1.0)
    torch.testing.assert_close(run(resolution=R, alpha=1.0), new, rtol=0, atol=0)
    assert (run(resolution=R, alpha=0.5) - 0.5 * (old + new)).abs().max() > 1e-3


@pytest.mark.parametrize("R", [16, 128])
def test_discriminator_fade_in(R):
    _, D = small(128)
    img = torch.randn(4, 3, R, R)
    half = F.avg_pool2d(img, 2)
    torch.testing.assert_close(D(img, alpha=0.0), D(half, resolution=R // 2))
    # The reals D sees during a fade carry the same blend as G's output.
    torch.testing.assert_close(fade_in_reals(img, 0.0), F.interpolate(half, scale_factor=2))
    torch.testing.assert_close(D(fade_in_reals(img, 0.0), alpha=0.0), D(half))
    new = D(img, alpha=1.0)
    with torch.no_grad():
        getattr(D, f"b{R // 2}").fromrgb.weight.add_(1.0)
    torch.testing.assert_close(D(img, alpha=1.0), new, rtol=0, atol=0)
    assert (D(img, alpha=0.5) - new).abs().max() > 1e-3


def test_truncation_psi0_gives_w_avg_in_truncated_layers():
    G, _ = small(256)  # 14 ws
    G.mapping.w_avg.copy_(torch.randn(32))
    ws = G.mapping(torch.randn(5, 32), None, truncation_psi=0, truncation_cutoff=TRUNCATION_CUTOFF)
    torch.testing.assert_close(ws[:, :8], G.mapping.w_avg.expand(5, 8, 32))
    assert (ws[:, 8:] - G.mapping.w_avg).norm(dim=2).min() > 0.1
    # Every z gives the same image when all layers are truncated to w_avg (fixed noise) ...
    z1, z2 = torch.randn(2, 4, 32)
    same = lambda z, **kw: G(z, resolution=64, noise_mode="const", **kw)  # noqa: E731
    psi0 = dict(truncation_psi=0, truncation_cutoff=None)
    torch.testing.assert_close(same(z1, **psi0), same(z2, **psi0))
    assert (same(z1) - same(z2)).abs().max() > 1e-3  # ... and not without truncation.


def test_style_mixing_crossover():
    G, _ = small(64)  # 10 ws
    wa, wb = G.mapping(torch.randn(2, 32), None), G.mapping(torch.randn(2, 32), None)
    mixed = mix_styles(wa, wb, 3)
    assert torch.equal(mixed[:, :3], wa[:, :3]) and torch.equal(mixed[:, 3:], wb[:, 3:])
    # At 16x16 only the first num_ws_at(16) = 6 ws are used, so mixing after them changes nothing,
    # while mixing inside them does.
    syn = lambda ws: G.synthesis(ws, resolution=16, noise_mode="const")  # noqa: E731
    torch.testing.assert_close(syn(mix_styles(wa, wb, num_ws_at(16))), syn(wa), rtol=0, atol=0)
    assert (syn(mix_styles(wa, wb, 4)) - syn(wa)).abs().max() > 1e-4
    with pytest.raises(ValueError, match="crossover"):
        mix_styles(wa, wb, 11)


@pytest.mark.parametrize("fused", [False, True])
def test_style_layer_matches_v1_formula(fused):
    torch.manual_seed(1)
    I, O, w_dim, R = 3, 4, 8, 16
    layer = StyleLayer(I, O, w_dim, R, up=2, fused_scale=fused).double()
    with torch.no_grad():
        layer.noise.weight.normal_()
        layer.bias.normal_()
        layer.adain.affine.bias.normal_()
    x = torch.randn(2, I, R // 2, R // 2, dtype=torch.float64)
    w = torch.randn(2, w_dim, dtype=torch.float64)
    # Official: conv on the nearest-upsampled input with weight * sqrt(2)/sqrt(fan_in) (the fused
    # transposed conv is the same with the kernel flipped), [1,2,1] blur, noise, bias, lrelu,
    # instance norm, x * (1 + y_s) + y_b.
    weight = layer.conv.weight * math.sqrt(2) / math.sqrt(I * 9)
    weight = weight.flip([2, 3]) if fused else weight
    y = F.conv2d(F.interpolate(x, scale_factor=2), weight, padding=1)
    k = torch.tensor([1.0, 2.0, 1.0], dtype=torch.float64)
    k = (k[:, None] * k[None, :] / 16).expand(O, 1, 3, 3)
    y = F.conv2d(y, k, padding=1, groups=O)
    y = y + layer.noise.noise_const * layer.noise.weight.reshape(1, -1, 1, 1)
    y = F.leaky_relu(y + layer.bias.reshape(1, -1, 1, 1), 0.2)
    var = y.var(dim=[2, 3], unbiased=False, keepdim=True)
    y = (y - y.mean(dim=[2, 3], keepdim=True)) / (var + 1e-8).sqrt()
    style = w @ (layer.adain.affine.weight / math.sqrt(w_dim)).t() + layer.adain.affine.bias
    y = y * (style[:, :O, None, None] + 1) + style[:, O:, None, None]
    torch.testing.assert_close(layer(x, w, noise_mode="const"), y)
    torch.testing.assert_close(upscale2d(x), F.interpolate(x, scale_factor=2))
    torch.testing.assert_close(downscale2d(x), F.avg_pool2d(x, 2))


def test_discriminator_block_is_conv_blur_conv_then_average():
    _, D = small(32)
    blk = D.b16.double()
    x = torch.randn(2, blk.conv0.weight.shape[1], 16, 16, dtype=torch.float64)
    with torch.no_grad():
        blk.conv0.bias.normal_()
        blk.conv1.bias.normal_()
    act = lambda t, layer: math.sqrt(2) * F.leaky_relu(t + layer.bias.reshape(1, -1, 1, 1), 0.2)  # noqa: E731
    gain = lambda layer: layer.weight / math.sqrt(layer.weight[0].numel())  # noqa: E731
    y = act(F.conv2d(x, gain(blk.conv0), padding=1), blk.conv0)
    C = y.shape[1]
    k = torch.tensor([1.0, 2.0, 1.0], dtype=torch.float64)
    y = F.conv2d(y, (k[:, None] * k[None, :] / 16).expand(C, 1, 3, 3), padding=1, groups=C)
    y = act(F.avg_pool2d(F.conv2d(y, gain(blk.conv1), padding=1), 2), blk.conv1)
    torch.testing.assert_close(blk(x), y)


def test_gradients_reach_exactly_the_live_parameters():
    G, D = small(64)
    G.train()
    with torch.no_grad():  # the official zero init of the noise strengths leaves the 4x4 bias
        for m in G.modules():  # after the (spatially constant) learned input without gradient
            if isinstance(m, NoiseInput):
                m.weight.normal_()
    for alpha in (0.5, 1.0):
        G.zero_grad(set_to_none=True)
        D.zero_grad(set_to_none=True)
        D(G(torch.randn(4, 32), resolution=32, alpha=alpha), alpha=alpha).sum().backward()
        live_G = ("mapping.", "synthesis.b4.", "synthesis.b8.", "synthesis.b16.", "synthesis.b32.")
        live_D = ("b32.", "b16.", "b8.", "b4.")
        dead = ("synthesis.b4.torgb", "synthesis.b8.torgb", "b8.fromrgb", "b4.fromrgb")
        if alpha == 1.0:
            dead += ("synthesis.b16.torgb", "b16.fromrgb")
        for live, net in ((live_G, G), (live_D, D)):
            for name, p in net.named_parameters():
                should = name.startswith(live) and not name.startswith(dead)
                has = p.grad is not None and bool(p.grad.abs().sum() > 0)
                assert has == should, f"alpha={alpha} {name}: gradient {has}, expected {should}"
    assert G.mapping.w_avg.abs().sum() > 0  # tracked in training mode


def test_bad_progress_arguments():
    G, D = small(32)
    z = torch.randn(2, 32)
    with pytest.raises(ValueError, match="power of two"):
        G(z, resolution=64)
    with pytest.raises(ValueError, match="power of two"):
        G(z, resolution=12)
    with pytest.raises(ValueError, match="no lower resolution"):
        G(z, resolution=4, alpha=0.5)
    with pytest.raises(ValueError, match="alpha"):
        G(z, resolution=8, alpha=1.5)
    with pytest.raises(ValueError, match="unconditional"):
        G(z, torch.ones(2, 1))
    with pytest.raises(ValueError, match="current resolution"):
        D(torch.randn(4, 3, 16, 16), resolution=32)
