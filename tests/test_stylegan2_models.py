"""StyleGAN2 networks: official parameter counts, shapes, truncation, modulated conv, parity."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from helpers.parity_utils import parity_dir

from lightning_gans.models.stylegan2 import Generator
from lightning_gans.models.stylegan2_discriminator import Discriminator
from lightning_gans.nn import MinibatchStdLayer, modulated_conv2d
from lightning_gans.nn.layers import count_params


def small(res, **kw):
    g = Generator(32, 0, 32, res, 3, mapping_kwargs=dict(num_layers=2), channel_base=256, channel_max=16, **kw)
    d = Discriminator(0, res, 3, channel_base=256, channel_max=16)
    return g, d


def test_config_f_parameter_counts():
    G = Generator(512, 0, 512, 1024, 3)
    D = Discriminator(0, 1024, 3)
    assert count_params(G) == 30_370_060
    assert count_params(D) == 29_012_513
    assert count_params(G.mapping) == 8 * (512 * 512 + 512)
    assert G.num_ws == 18


@pytest.mark.parametrize("res", [4, 8, 16, 32, 64, 128, 256])
def test_output_shapes(res):
    G, D = small(res)
    z = torch.randn(4, 32)
    img = G(z)
    assert img.shape == (4, 3, res, res)
    assert G.num_ws == 2 * int(np.log2(res)) - 2
    assert D(img).shape == (4, 1)


def test_bad_resolution_and_shapes():
    with pytest.raises(ValueError, match="power of two"):
        Generator(8, 0, 8, 48, 3)
    G, D = small(16)
    with pytest.raises(ValueError, match="z must be"):
        G(torch.randn(2, 7))
    with pytest.raises(ValueError, match="D expects images"):
        D(torch.randn(2, 3, 8, 8))


def test_truncation_psi0_gives_w_avg_for_every_z():
    G, _ = small(16)
    G.mapping.w_avg.copy_(torch.randn(32))
    ws = G.mapping(torch.randn(5, 32), None, truncation_psi=0)
    torch.testing.assert_close(ws, G.mapping.w_avg.expand(5, G.num_ws, 32))
    # cutoff: only the first ws are truncated
    ws = G.mapping(torch.randn(5, 32), None, truncation_psi=0, truncation_cutoff=2)
    torch.testing.assert_close(ws[:, :2], G.mapping.w_avg.expand(5, 2, 32))
    assert (ws[:, 2:] - G.mapping.w_avg).abs().max() > 0.1


def test_w_avg_tracks_mapping_output_in_training_only():
    G, _ = small(8)
    z = torch.randn(64, 32)
    G.eval()
    G.mapping(z, None)
    assert torch.all(G.mapping.w_avg == 0)
    G.train()
    w = G.mapping(z, None)[:, 0]
    torch.testing.assert_close(G.mapping.w_avg, w.mean(0) * (1 - 0.995))


def test_modulated_conv_equals_explicit_per_sample_conv():
    torch.manual_seed(1)
    N, I, O, k = 3, 5, 4, 3
    x = torch.randn(N, I, 8, 8, dtype=torch.float64)
    weight = torch.randn(O, I, k, k, dtype=torch.float64)
    styles = torch.randn(N, I, dtype=torch.float64)
    expected = []
    for n in range(N):
        w = weight * styles[n].reshape(1, I, 1, 1)
        w = w / w.square().sum(dim=[1, 2, 3], keepdim=True).add(1e-8).sqrt()
        expected.append(F.conv2d(x[n : n + 1], w, padding=1))
    expected = torch.cat(expected)
    for fused in (True, False):
        out = modulated_conv2d(x, weight, styles, padding=1, fused_modconv=fused)
        torch.testing.assert_close(out, expected, rtol=1e-10, atol=1e-10)
    # without demodulation it is a plain conv with per-sample scaled weights
    out = modulated_conv2d(x, weight, styles, padding=1, demodulate=False)
    ref = torch.cat([F.conv2d(x[n : n + 1], weight * styles[n].reshape(1, I, 1, 1), padding=1) for n in range(N)])
    torch.testing.assert_close(out, ref)


def test_minibatch_stddev_matches_definition():
    x = torch.randn(8, 6, 4, 4, dtype=torch.float64)
    out = MinibatchStdLayer(group_size=4, num_channels=2)(x)
    assert out.shape == (8, 8, 4, 4)
    # sample i is in group i % 2; channels split into 2 groups of 3
    for i in range(8):
        members = x[[j for j in range(8) if j % 2 == i % 2]]
        for f in range(2):
            sub = members[:, f * 3 : (f + 1) * 3]
            std = (sub.var(dim=0, unbiased=False) + 1e-8).sqrt().mean()
            torch.testing.assert_close(out[i, 6 + f], std.expand(4, 4))
    with pytest.raises(ValueError, match="divisible"):
        MinibatchStdLayer(4)(torch.randn(6, 4, 4, 4))


def test_noise_modes_and_gradients():
    G, D = small(16)
    z = torch.randn(4, 32)
    a = G(z, noise_mode="const")
    b = G(z, noise_mode="const")
    torch.testing.assert_close(a, b)
    # noise strengths start at 0: give them a value so the modes differ
    for m in G.modules():
        if hasattr(m, "noise_strength"):
            m.noise_strength.data.fill_(0.5)
    assert (G(z, noise_mode="const") - G(z, noise_mode="none")).abs().max() > 1e-3
    assert (G(z, noise_mode="random") - G(z, noise_mode="random")).abs().max() > 1e-3
    D(G(z)).sum().backward()
    assert all(p.grad is not None for p in G.parameters())
    assert all(p.grad is not None for p in D.parameters())


def test_conditional_networks():
    G = Generator(16, 3, 16, 8, 3, mapping_kwargs=dict(num_layers=2), channel_base=64, channel_max=8)
    D = Discriminator(3, 8, 3, channel_base=64, channel_max=8)
    c = F.one_hot(torch.tensor([0, 1, 2, 0]), 3).float()
    img = G(torch.randn(4, 16), c)
    out = D(img, c)
    assert out.shape == (4, 1)
    assert (D(img, c.roll(1, 0)) - out).abs().max() > 0


@pytest.mark.skipif(parity_dir() is None, reason="../shared/parity (official outputs) not present")
def test_parity_with_official_stylegan2_ada_outputs():
    p = parity_dir() / "sg2ada"
    ref = np.load(p / "ref.npz")
    kw = dict(channel_base=1024, channel_max=32, conv_clamp=256)
    G = Generator(512, 0, 512, 32, 3, mapping_kwargs=dict(num_layers=8), **kw).eval()
    G.load_state_dict({k: torch.from_numpy(v) for k, v in np.load(p / "G_ema.npz").items()})
    D = Discriminator(0, 32, 3, mbstd_group_size=4, **kw).eval()
    # the official D blocks hold an unused block-level filter copy (b32.resample_filter): skip it
    D.load_state_dict({k: torch.from_numpy(v) for k, v in np.load(p / "D.npz").items() if k.count(".") > 1})
    z = torch.from_numpy(ref["z"])
    with torch.no_grad():
        for psi, key in [(1, "psi1"), (0.7, "psi07")]:
            ws = G.mapping(z, None, truncation_psi=psi)
            np.testing.assert_allclose(ws.numpy(), ref[f"ws_{key}"], rtol=0, atol=1e-4)
            img = G.synthesis(ws, noise_mode="const")
            np.testing.assert_allclose(img.numpy(), ref[f"img_{key}"], rtol=0, atol=1e-4)
            d = D(torch.from_numpy(ref[f"img_{key}"]))
            np.testing.assert_allclose(d.numpy(), ref[f"D_{key}"], rtol=0, atol=1e-4)
        img = G.synthesis(G.mapping(z, None), noise_mode="none")
        np.testing.assert_allclose(img.numpy(), ref["img_psi1_noise_none"], rtol=0, atol=1e-4)


def test_orig_discriminator_is_resnet_without_skips():
    """The official cifar D ('orig'): the same convs as 'resnet', no 1x1 skips, no sqrt(1/2)."""
    from lightning_gans.models.stylegan2_discriminator import Discriminator

    torch.manual_seed(0)
    kw = dict(img_resolution=32, channel_base=1024, channel_max=64, mbstd_group_size=2)
    resnet, orig = Discriminator(**kw), Discriminator(**kw, architecture="orig")
    skips = {k: v for k, v in resnet.state_dict().items() if ".skip." in k}
    assert skips and not any(".skip." in k for k in orig.state_dict())
    skip_params = sum(p.numel() for k, p in resnet.named_parameters() if ".skip." in k)
    assert sum(p.numel() for p in orig.parameters()) == sum(p.numel() for p in resnet.parameters()) - skip_params
    orig.load_state_dict({k: v for k, v in resnet.state_dict().items() if ".skip." not in k})
    img = torch.randn(2, 3, 32, 32)
    blk = orig.b32
    x = blk.fromrgb(img)
    assert torch.allclose(blk(None, img), blk.conv1(blk.conv0(x)))
    assert not torch.allclose(orig(img), resnet(img))
    with pytest.raises(ValueError, match="architecture 'skip'"):
        Discriminator(**kw, architecture="skip")
