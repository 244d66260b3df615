"""Tests of the StarGAN v2 networks: published parameter counts, shapes, domain heads, the
high-pass skip path, and parity with official clovaai/stargan-v2 checkpoints."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from helpers.parity_utils import parity_dir

from lightning_gans.models.stargan_v2 import (
    NETWORK_NAMES,
    Discriminator,
    Generator,
    MappingNetwork,
    StyleEncoder,
    build_networks,
)
from lightning_gans.models.stargan_v2_blocks import AdainResBlk, HighPass


def _parity_dir() -> Path:
    return (parity_dir() or Path("../shared/parity (not found)")) / "stargan_v2"


def _count(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


@pytest.mark.parametrize(
    "num_domains, w_hpf, expected",
    [
        # CelebA-HQ (male/female, high-pass skips) and AFHQ (cat/dog/wild) at 256 px.
        (2, 1, (43_467_395, 2_438_272, 20_916_928, 20_852_290)),
        (3, 0, (33_892_995, 3_259_072, 20_949_760, 20_852_803)),
    ],
)
def test_published_parameter_counts(num_domains, w_hpf, expected):
    with torch.device("meta"):  # shapes only: no memory, no init cost
        nets = build_networks(256, 64, 16, num_domains, w_hpf, 512, he_init=False)
    assert tuple(nets) == NETWORK_NAMES
    assert tuple(_count(nets[k]) for k in NETWORK_NAMES) == expected


@pytest.mark.parametrize("img_size", [64, 256])
@pytest.mark.parametrize("w_hpf", [0, 1])
def test_output_shapes(img_size, w_hpf):
    n, s_dim = 3, 64
    with torch.device("meta"):
        nets = build_networks(img_size, s_dim, 16, 3, w_hpf, 512, he_init=False)
        x = torch.empty(n, 3, img_size, img_size)
        y = torch.tensor([0, 2, 1])
        masks = [torch.empty(n, 1, 256, 256)] * 2 if w_hpf else None
        s = nets["mapping_network"](torch.empty(n, 16), y)
        assert s.shape == (n, s_dim)
        assert nets["style_encoder"](x, y).shape == (n, s_dim)
        assert nets["generator"](x, s, masks=masks).shape == (n, 3, img_size, img_size)
        assert nets["discriminator"](x, y).shape == (n,)
    # 16 px bottleneck, or 8 px with the extra level of the high-pass generator.
    levels = int(math.log2(img_size)) - 4 + w_hpf
    assert len(nets["generator"].encode) == len(nets["generator"].decode) == levels + 2


def test_mapping_selects_the_head_of_each_samples_domain():
    torch.manual_seed(0)
    net = MappingNetwork(latent_dim=16, style_dim=64, num_domains=3)
    z = torch.randn(5, 16)
    y = torch.tensor([2, 0, 1, 1, 2])
    s = net(z, y)
    h = net.shared(z)
    for i in range(5):
        for d in range(3):
            head_out = net.unshared[d](h[i : i + 1])[0]
            if d == y[i]:
                torch.testing.assert_close(s[i], head_out, rtol=0, atol=1e-6)
            else:
                assert (s[i] - head_out).abs().max() > 1e-3


def test_input_checks_name_the_input():
    with torch.device("meta"):
        G = Generator(img_size=64, w_hpf=0)
        D = Discriminator(img_size=64)
        x = torch.empty(2, 3, 64, 64)
        with pytest.raises(ValueError, match=r"Generator x: expected images \[N, 3, 64, 64\]"):
            G(torch.empty(2, 3, 32, 32), torch.empty(2, 64))
        with pytest.raises(ValueError, match="Generator s"):
            G(x, torch.empty(2, 32))
        with pytest.raises(ValueError, match="masks given but w_hpf == 0"):
            G(x, torch.empty(2, 64), masks=[torch.empty(2, 1, 64, 64)] * 2)
        with pytest.raises(ValueError, match="Discriminator y"):
            D(x, torch.zeros(2))  # float labels
        with pytest.raises(ValueError, match="MappingNetwork z"):
            MappingNetwork()(torch.empty(2, 8), torch.zeros(2, dtype=torch.long))


# ---------------------------------------------------------------- high-pass skip path


def test_highpass_kernel_and_buffer():
    hpf = HighPass(w_hpf=2.0)
    assert dict(hpf.named_buffers())["filter"].shape == (3, 3)
    x = torch.zeros(1, 2, 5, 5)
    x[0, 0] = 3.0  # constant channel: no high frequencies inside
    x[0, 1, 2, 2] = 1.0  # impulse: the response is the kernel itself
    out = hpf(x)
    assert out[0, 0, 1:-1, 1:-1].abs().max() == 0
    assert out[0, 0, 0, 0] == pytest.approx(3.0 * 5 / 2)  # zero padding: 5 of 8 neighbours out
    expected = torch.full((3, 3), -0.5)
    expected[1, 1] = 4.0
    torch.testing.assert_close(out[0, 1, 1:4, 1:4], expected, rtol=0, atol=0)


def test_state_dict_without_hpf_filter_loads_strictly():
    with torch.device("meta"):
        src = Generator(img_size=64, max_conv_dim=8, w_hpf=1)
    sd = {k: torch.zeros(v.shape) for k, v in src.state_dict().items() if k != "hpf.filter"}
    assert "hpf.filter" in src.state_dict()
    G = Generator(img_size=64, max_conv_dim=8, w_hpf=1)
    G.hpf.filter.zero_()
    G.load_state_dict(sd, strict=True)
    torch.testing.assert_close(G.hpf.filter, HighPass.make_kernel(1))


def test_hpf_generator_requires_masks():
    with torch.device("meta"):
        G = Generator(img_size=64, w_hpf=1)
        with pytest.raises(ValueError, match="w_hpf > 0 needs masks"):
            G(torch.empty(1, 3, 64, 64), torch.empty(1, 64))
        with pytest.raises(ValueError, match="expected two tensors"):
            G(torch.empty(1, 3, 64, 64), torch.empty(1, 64), masks=[torch.empty(1, 1, 8, 8)])


def test_adain_block_shortcut_only_without_hpf():
    torch.manual_seed(0)
    x, s = torch.randn(2, 4, 8, 8), torch.randn(2, 16)
    for w_hpf in (0, 1):
        blk = AdainResBlk(4, 6, style_dim=16, w_hpf=w_hpf, upsample=True)
        residual = blk._residual(x, s)
        shortcut = blk.conv1x1(F.interpolate(x, scale_factor=2, mode="nearest"))
        expected = residual if w_hpf else (residual + shortcut) / math.sqrt(2)
        torch.testing.assert_close(blk(x, s), expected, rtol=0, atol=1e-6)


def test_hpf_skips_add_masked_encoder_features_at_32_and_64_px():
    """Written out by hand for a 64-px generator: levels 64 -> 32 -> 16 -> 8 (+2 at 8)."""
    torch.manual_seed(1)
    G = Generator(img_size=64, style_dim=16, max_conv_dim=8, w_hpf=1).eval()
    x, s = torch.randn(1, 3, 64, 64), torch.randn(1, 16)
    masks = [torch.rand(1, 1, 256, 256), torch.rand(1, 1, 256, 256)]

    def resize(m, size):
        return F.interpolate(m, size=size, mode="bilinear", align_corners=False)

    with torch.no_grad():
        out = G(x, s, masks=masks)
        h64 = G.from_rgb(x)
        h32 = G.encode[0](h64)
        h = h32
        for blk in G.encode[1:]:
            h = blk(h)
        for blk in G.decode[:3]:  # 8, 8, 8 -> 16
            h = blk(h, s)
        h = G.decode[3](h, s)  # -> 32: the face-line mask
        h = h + G.hpf(resize(masks[0], 32) * h32)
        h = G.decode[4](h, s)  # -> 64: the inner-face mask
        h = h + G.hpf(resize(masks[1], 64) * h64)
        expected = G.to_rgb(h)
        torch.testing.assert_close(out, expected, rtol=0, atol=1e-5)
        # The masks matter: zero masks remove every skip.
        zero = [torch.zeros_like(m) for m in masks]
        assert (G(x, s, masks=zero) - out).abs().max() > 1e-3


def test_build_networks_he_init():
    torch.manual_seed(0)
    nets = build_networks(64, 64, 16, 2, 0, 16)
    G = nets["generator"]
    assert G.from_rgb.bias.abs().max() == 0
    assert nets["mapping_network"].unshared[1][6].bias.abs().max() == 0
    w = nets["mapping_network"].shared[2].weight  # 512 x 512: fan_in 512
    assert w.std().item() == pytest.approx(math.sqrt(2 / 512), rel=0.02)
    assert torch.equal(G.encode[0].norm1.weight, torch.ones(256))  # norms keep (1, 0)


# ---------------------------------------------------------------- parity with the official code


@pytest.mark.parametrize(
    "prefix, fname", [("ema", "000000_nets_ema.ckpt"), ("nets", "000000_nets.ckpt")]
)
def test_parity_with_official_checkpoints(prefix, fname):
    d = _parity_dir()
    if not (d / fname).is_file():
        pytest.skip(f"parity fixtures not found at {d} (set LG_PARITY_DIR to the parity folder)")
    ck = torch.load(d / fname, weights_only=True, map_location="cpu")
    ref = {k: torch.from_numpy(v) for k, v in np.load(d / "ref.npz").items()}
    # Exact constructor kwargs of the fixtures (parity README / kwargs.json).
    nets = {
        "generator": Generator(img_size=256, style_dim=64, max_conv_dim=16, w_hpf=0),
        "mapping_network": MappingNetwork(latent_dim=16, style_dim=64, num_domains=2),
        "style_encoder": StyleEncoder(img_size=256, style_dim=64, num_domains=2, max_conv_dim=16),
        "discriminator": Discriminator(img_size=256, num_domains=2, max_conv_dim=16),
    }
    for name, state in ck.items():
        nets[name].load_state_dict(state, strict=True)

    def check(key, out):
        assert out.shape == ref[key].shape, key
        torch.testing.assert_close(out, ref[key], rtol=0, atol=1e-4, msg=key)

    G, F_, E, D = (nets[k] for k in NETWORK_NAMES)
    x_src, x_ref, z, y_src, y_trg = (ref[k] for k in ("x_src", "x_ref", "z", "y_src", "y_trg"))
    with torch.no_grad():
        s_latent = F_(z, y_trg)
        check(f"{prefix}_s_latent", s_latent)
        check(f"{prefix}_x_fake_latent", G(x_src, s_latent))
        s_ref = E(x_ref, y_trg)
        check(f"{prefix}_s_ref", s_ref)
        check(f"{prefix}_x_fake_ref", G(x_src, s_ref))
        if "discriminator" in ck:
            check("nets_D_real", D(x_src, y_src))
            check("nets_D_fake_latent", D(ref["nets_x_fake_latent"], y_trg))
            check("nets_D_fake_ref", D(ref["nets_x_fake_ref"], y_trg))
