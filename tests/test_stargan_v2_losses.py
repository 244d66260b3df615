"""Tests of the StarGAN v2 objectives on hand-made networks with losses known in closed form."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from lightning_gans.losses.stargan_v2 import (
    adv_loss,
    cycle_consistency_loss,
    discriminator_loss,
    diversity_sensitive_loss,
    ds_weight,
    generator_loss,
    generator_step_networks,
    r1_penalty,
    style_reconstruction_loss,
)

N, C, R, S = 4, 3, 4, 5  # batch, channels, resolution, style_dim (= latent_dim of the toy F)


class ShiftGenerator(nn.Module):
    """G(x, s) = a * x + b * s[:, 0]; a=1, b=0 is the identity. Records the masks of each call."""

    def __init__(self, a: float = 1.0, b: float = 0.0, w_hpf: float = 0) -> None:
        super().__init__()
        self.a = nn.Parameter(torch.tensor(a))
        self.b = nn.Parameter(torch.tensor(b))
        self.w_hpf = w_hpf
        self.mask_calls: list = []

    def forward(self, x, s, masks=None):
        self.mask_calls.append(masks)
        return self.a * x + self.b * s[:, :1, None, None]


class LinearD(nn.Module):
    """D_y(x) = <W[y], vec(x)> + c[y]: dD/dx = W[y], so R1 is known exactly."""

    def __init__(self, num_domains: int = 2) -> None:
        super().__init__()
        self.W = nn.Parameter(torch.randn(num_domains, C * R * R))
        self.c = nn.Parameter(torch.randn(num_domains))

    def forward(self, x, y):
        return (self.W[y] * x.flatten(1)).sum(1) + self.c[y]


class ToyMapping(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.tensor(1.0))

    def forward(self, z, y):
        return self.scale * z + y[:, None].float()


class ToyStyleEncoder(nn.Module):
    """E_y(x) = per-channel means, padded to S, plus y."""

    def __init__(self) -> None:
        super().__init__()
        self.proj = nn.Linear(C, S)

    def forward(self, x, y):
        return self.proj(x.mean((2, 3))) + y[:, None].float()


def toy_nets(G: nn.Module | None = None) -> dict[str, nn.Module]:
    torch.manual_seed(0)
    return {
        "generator": G if G is not None else ShiftGenerator(a=0.7, b=0.3),
        "mapping_network": ToyMapping(),
        "style_encoder": ToyStyleEncoder(),
        "discriminator": LinearD(),
    }


def batch() -> tuple[torch.Tensor, ...]:
    g = torch.Generator().manual_seed(1)
    x = torch.randn(N, C, R, R, generator=g)
    y_org = torch.tensor([0, 1, 0, 1])
    y_trg = torch.tensor([1, 1, 0, 0])
    z1, z2 = torch.randn(2, N, S, generator=g)
    ref1, ref2 = torch.randn(2, N, C, R, R, generator=g)
    return x, y_org, y_trg, z1, z2, ref1, ref2


# ---------------------------------------------------------------- single terms


def test_adv_loss_is_bce_with_logits():
    logits = torch.tensor([0.0, 2.0, -3.0])
    assert adv_loss(torch.zeros(3), 1).item() == pytest.approx(math.log(2))
    expected_real = torch.log1p(torch.exp(-logits)).mean()  # -log sigmoid(l)
    expected_fake = torch.log1p(torch.exp(logits)).mean()  # -log(1 - sigmoid(l))
    torch.testing.assert_close(adv_loss(logits, 1), expected_real)
    torch.testing.assert_close(adv_loss(logits, 0), expected_fake)
    with pytest.raises(ValueError, match="0 or 1"):
        adv_loss(logits, 0.5)


def test_r1_of_linear_discriminator_is_analytic_and_differentiable():
    torch.manual_seed(0)
    D = LinearD()
    x = torch.randn(N, C, R, R, requires_grad=True)
    y = torch.tensor([0, 1, 1, 1])
    reg = r1_penalty(D(x, y), x)
    sq = D.W.detach().pow(2).sum(1)  # ||W[d]||^2
    expected = 0.5 * (sq[0] + 3 * sq[1]) / N
    assert reg.item() == pytest.approx(expected.item(), rel=1e-6)
    # create_graph: the penalty trains D, d/dW[d] = (count of d / N) * W[d].
    reg.backward()
    torch.testing.assert_close(D.W.grad, torch.stack([D.W[0], 3 * D.W[1]]).detach() / N)
    with pytest.raises(ValueError, match="require grad"):
        r1_penalty(D(x.detach(), y), x.detach())


def test_l1_terms():
    a, b = torch.zeros(2, 3), torch.tensor([[1.0, -2.0, 0.0], [0.0, 0.0, 3.0]])
    assert style_reconstruction_loss(a, b).item() == pytest.approx(1.0)
    assert diversity_sensitive_loss(a, b).item() == pytest.approx(1.0)
    assert cycle_consistency_loss(b, b).item() == 0


def test_ds_weight_decays_linearly_to_exactly_zero():
    assert ds_weight(0, 2.0, 100) == 2.0
    assert ds_weight(25, 2.0, 100) == pytest.approx(1.5)
    assert ds_weight(99, 2.0, 100) == pytest.approx(0.02)
    assert ds_weight(100, 2.0, 100) == 0.0
    assert ds_weight(10**6, 2.0, 100) == 0.0
    weights = [ds_weight(i, 1.0, 7) for i in range(10)]
    assert all(w1 > w2 for w1, w2 in zip(weights[:7], weights[1:8]))
    assert weights[7:] == [0.0, 0.0, 0.0]
    with pytest.raises(ValueError, match="ds_iter"):
        ds_weight(0, 1.0, 0)


# ---------------------------------------------------------------- composed objectives


def test_discriminator_loss_terms_and_gradients():
    nets = toy_nets()
    x, y_org, y_trg, z1, _, ref1, _ = batch()
    D, G = nets["discriminator"], nets["generator"]
    loss, terms = discriminator_loss(nets, x, y_org, y_trg, z_trg=z1, lambda_reg=2.0)
    with torch.no_grad():
        x_fake = G(x, nets["mapping_network"](z1, y_trg))
        real = F.softplus(-D(x, y_org)).mean().item()
        fake = F.softplus(D(x_fake, y_trg)).mean().item()
        reg = 0.5 * D.W[y_org].pow(2).sum(1).mean().item()
    assert terms == pytest.approx({"real": real, "fake": fake, "reg": reg}, rel=1e-5)
    assert loss.item() == pytest.approx(real + fake + 2.0 * reg, rel=1e-5)
    loss.backward()
    assert D.W.grad is not None and G.a.grad is None  # only D is trained by this objective
    assert not x.requires_grad  # the caller's tensor is left alone

    # Reference branch: the fake's style comes from the style encoder, not the mapping.
    _, terms_ref = discriminator_loss(nets, x, y_org, y_trg, x_ref=ref1)
    with torch.no_grad():
        x_fake = G(x, nets["style_encoder"](ref1, y_trg))
        fake = F.softplus(D(x_fake, y_trg)).mean().item()
    assert terms_ref["fake"] == pytest.approx(fake, rel=1e-5)
    with pytest.raises(ValueError, match="exactly one"):
        discriminator_loss(nets, x, y_org, y_trg, z_trg=z1, x_ref=ref1)


def test_cycle_and_diversity_vanish_when_generator_is_identity():
    nets = toy_nets(ShiftGenerator(a=1.0, b=0.0))
    x, y_org, y_trg, z1, z2, _, _ = batch()
    loss, terms = generator_loss(nets, x, y_org, y_trg, z_trgs=(z1, z2))
    assert terms["cyc"] == 0.0 and terms["ds"] == 0.0
    E, D = nets["style_encoder"], nets["discriminator"]
    with torch.no_grad():
        s = nets["mapping_network"](z1, y_trg)
        sty = (E(x, y_trg) - s).abs().mean().item()  # G(x, s) = x
        adv = F.softplus(-D(x, y_trg)).mean().item()
    assert terms["sty"] == pytest.approx(sty, rel=1e-5)
    assert terms["adv"] == pytest.approx(adv, rel=1e-5)
    assert loss.item() == pytest.approx(adv + sty, rel=1e-5)


def test_generator_loss_cycle_matches_hand_computation():
    nets = toy_nets()  # G(x, s) = 0.7 x + 0.3 s0
    x, y_org, y_trg, _, _, ref1, ref2 = batch()
    _, terms = generator_loss(nets, x, y_org, y_trg, x_refs=(ref1, ref2))
    E = nets["style_encoder"]
    with torch.no_grad():
        x_fake = 0.7 * x + 0.3 * E(ref1, y_trg)[:, :1, None, None]
        x_rec = 0.7 * x_fake + 0.3 * E(x, y_org)[:, :1, None, None]  # source style, from E
    assert terms["cyc"] == pytest.approx((x_rec - x).abs().mean().item(), rel=1e-5)


def test_diversity_term_is_subtracted_and_only_the_first_fake_gets_its_gradient():
    x, y_org, y_trg, z1, z2, _, _ = batch()
    results = {}
    for lam in (0.0, 1.0):
        nets = toy_nets(ShiftGenerator(a=0.7, b=0.3))
        loss, terms = generator_loss(nets, x, y_org, y_trg, z_trgs=(z1, z2), lambda_ds=lam)
        loss.backward()
        results[lam] = (loss.item(), terms, nets["generator"].b.grad.item())
    (loss0, _, grad0), (loss1, terms1, grad1) = results[0.0], results[1.0]
    s1 = z1[:, 0] + y_trg.float()  # style component 0 of the toy mapping
    s2 = z2[:, 0] + y_trg.float()
    ds = (0.3 * (s1 - s2)).abs().mean().item()
    assert terms1["ds"] == pytest.approx(ds, rel=1e-5) and ds > 0.1
    assert loss1 == pytest.approx(loss0 - ds, rel=1e-5)  # maximising diversity lowers the loss
    # G(x, s2) is detached: d(ds)/db = mean(sign(b (s1 - s2)) * s1), not mean|s1 - s2|.
    d_ds_db = (torch.sign(s1 - s2) * s1).mean().item()
    assert grad1 - grad0 == pytest.approx(-d_ds_db, rel=1e-4)


def test_branches_use_the_right_style_source():
    x, y_org, y_trg, z1, z2, ref1, ref2 = batch()
    nets = toy_nets()
    generator_loss(nets, x, y_org, y_trg, z_trgs=(z1, z2))[0].backward()
    assert nets["mapping_network"].scale.grad is not None
    nets = toy_nets()
    generator_loss(nets, x, y_org, y_trg, x_refs=(ref1, ref2))[0].backward()
    assert nets["mapping_network"].scale.grad is None
    with pytest.raises(ValueError, match="exactly one"):
        generator_loss(nets, x, y_org, y_trg)


def test_hpf_masks_real_for_translation_fake_for_cycle():
    G = ShiftGenerator(w_hpf=1)
    nets = toy_nets(G)
    x, y_org, y_trg, z1, z2, _, _ = batch()
    masks_real = [torch.ones(N, 1, 8, 8)] * 2
    masks_fake = [torch.zeros(N, 1, 8, 8)] * 2
    seen = []

    def heatmap_fn(img):
        seen.append(img)
        return masks_fake

    with pytest.raises(ValueError, match="heatmap_fn"):
        generator_loss(nets, x, y_org, y_trg, z_trgs=(z1, z2), masks=masks_real)
    G.mask_calls.clear()
    generator_loss(
        nets, x, y_org, y_trg, z_trgs=(z1, z2), masks=masks_real, heatmap_fn=heatmap_fn
    )
    assert G.mask_calls == [masks_real, masks_real, masks_fake]
    assert len(seen) == 1 and not seen[0].requires_grad


def test_generator_step_networks_reproduce_the_official_quirk():
    assert generator_step_networks("latent") == ("generator", "mapping_network", "style_encoder")
    assert generator_step_networks("reference") == ("generator",)
    assert generator_step_networks("reference", style_encoder_in_reference_branch=True) == (
        "generator",
        "style_encoder",
    )
    with pytest.raises(ValueError, match="branch"):
        generator_step_networks("ref")
