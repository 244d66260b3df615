"""StarGAN v2 objectives (Choi et al., CVPR 2020): adversarial, R1, style, diversity, cycle.

`discriminator_loss` and `generator_loss` compose the terms for one branch of the paper's
training step, latent-guided (styles from the mapping network, z) or reference-guided (styles
from the style encoder, reference images), as the official clovaai/stargan-v2 solver does:

    D:  adv(D(x), 1) + adv(D(G(x, s~)), 0) + lambda_reg * R1
    G:  adv(D(G(x, s~)), 1) + lambda_sty * L_sty - lambda_ds * L_ds + lambda_cyc * L_cyc

Official training order per iteration: D latent, D reference, G latent, G reference; the
networks that each G step updates are given by `generator_step_networks`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Literal

import torch
import torch.nn as nn
import torch.nn.functional as F

__all__ = [
    "adv_loss",
    "r1_penalty",
    "style_reconstruction_loss",
    "diversity_sensitive_loss",
    "cycle_consistency_loss",
    "ds_weight",
    "discriminator_loss",
    "generator_loss",
    "generator_step_networks",
]

Masks = Sequence[torch.Tensor]
HeatmapFn = Callable[[torch.Tensor], Masks]  # images [N,3,R,R] -> generator masks (FAN heatmaps)


def adv_loss(logits: torch.Tensor, target: Literal[0, 1]) -> torch.Tensor:
    """Non-saturating logistic loss: BCE-with-logits of logits [N] against all-`target`, mean."""
    if target not in (0, 1):
        raise ValueError(f"adv_loss target must be 0 or 1, got {target!r}")
    return F.binary_cross_entropy_with_logits(logits, torch.full_like(logits, float(target)))


def r1_penalty(d_out: torch.Tensor, x_real: torch.Tensor) -> torch.Tensor:
    """R1 (zero-centred gradient penalty on reals): 0.5 * mean_i ||dD(x_i)/dx_i||^2.

    d_out [N] must be computed from x_real [N, ...] (which requires grad); the graph is kept
    (create_graph) so the penalty itself can be backpropagated into D.
    """
    if not x_real.requires_grad:
        raise ValueError("r1_penalty: x_real must require grad and be the input of d_out")
    (grad,) = torch.autograd.grad(d_out.sum(), x_real, create_graph=True)
    return 0.5 * grad.pow(2).flatten(1).sum(1).mean()


def style_reconstruction_loss(s_pred: torch.Tensor, s_trg: torch.Tensor) -> torch.Tensor:
    """L_sty: mean |E_y(G(x, s~)) - s~| over batch and style dimensions."""
    return torch.mean(torch.abs(s_pred - s_trg))


def diversity_sensitive_loss(x_fake: torch.Tensor, x_fake2: torch.Tensor) -> torch.Tensor:
    """L_ds: mean |G(x, s1) - G(x, s2)|; the G objective *subtracts* it (maximises diversity).

    The official solver detaches the second image, so only G(x, s1) receives the gradient;
    `generator_loss` passes x_fake2 detached.
    """
    return torch.mean(torch.abs(x_fake - x_fake2))


def cycle_consistency_loss(x_rec: torch.Tensor, x_real: torch.Tensor) -> torch.Tensor:
    """L_cyc: mean |G(G(x, s~), E_y_org(x)) - x|."""
    return torch.mean(torch.abs(x_rec - x_real))


def ds_weight(step: int, lambda_ds: float, ds_iter: int) -> float:
    """lambda_ds decayed linearly from `lambda_ds` at step 0 to exactly 0 at step `ds_iter`.

    A closed form of the step (so a resumed run gets the right value); the official solver
    instead subtracts lambda_ds / ds_iter after each iteration, which leaves a float residue
    around 0 (possibly slightly negative) and restarts from the full value on resume.
    """
    if ds_iter <= 0:
        raise ValueError(f"ds_iter must be > 0, got {ds_iter}")
    if step < 0:
        raise ValueError(f"step must be >= 0, got {step}")
    if step >= ds_iter:
        return 0.0
    return lambda_ds * (ds_iter - step) / ds_iter


def _nets(nets: Mapping[str, nn.Module], *names: str) -> list[nn.Module]:
    missing = [n for n in names if n not in nets]
    if missing:
        raise KeyError(f"nets lacks {missing}; expected the keys of build_networks()")
    return [nets[n] for n in names]


def _target_style(
    nets: Mapping[str, nn.Module],
    y_trg: torch.Tensor,
    z: torch.Tensor | None,
    x_ref: torch.Tensor | None,
) -> torch.Tensor:
    if z is not None:
        return nets["mapping_network"](z, y_trg)
    return nets["style_encoder"](x_ref, y_trg)


def discriminator_loss(
    nets: Mapping[str, nn.Module],
    x_real: torch.Tensor,
    y_org: torch.Tensor,
    y_trg: torch.Tensor,
    *,
    z_trg: torch.Tensor | None = None,
    x_ref: torch.Tensor | None = None,
    masks: Masks | None = None,
    lambda_reg: float = 1.0,
) -> tuple[torch.Tensor, dict[str, float]]:
    """D objective of one branch: give exactly one of z_trg [N, latent_dim] (latent-guided) or
    x_ref [N,3,R,R] (reference-guided). x_real [N,3,R,R] of domains y_org [N]; fakes are
    translated to y_trg [N]; masks: the generator's FAN masks of x_real (w_hpf > 0 only).

    The fake is made without gradients (only D is trained here). Returns (loss, {real, fake,
    reg}).
    """
    if (z_trg is None) == (x_ref is None):
        raise ValueError("discriminator_loss: give exactly one of z_trg (latent) or x_ref")
    discriminator, generator = _nets(nets, "discriminator", "generator")

    # A detached leaf, so R1 differentiates w.r.t. the image without touching the caller's tensor.
    x_real = x_real.detach().requires_grad_(True)
    out = discriminator(x_real, y_org)
    loss_real = adv_loss(out, 1)
    loss_reg = r1_penalty(out, x_real)

    with torch.no_grad():
        s_trg = _target_style(nets, y_trg, z_trg, x_ref)
        x_fake = generator(x_real, s_trg, masks=masks)
    loss_fake = adv_loss(discriminator(x_fake, y_trg), 0)

    loss = loss_real + loss_fake + lambda_reg * loss_reg
    return loss, {"real": loss_real.item(), "fake": loss_fake.item(), "reg": loss_reg.item()}


def generator_loss(
    nets: Mapping[str, nn.Module],
    x_real: torch.Tensor,
    y_org: torch.Tensor,
    y_trg: torch.Tensor,
    *,
    z_trgs: tuple[torch.Tensor, torch.Tensor] | None = None,
    x_refs: tuple[torch.Tensor, torch.Tensor] | None = None,
    masks: Masks | None = None,
    heatmap_fn: HeatmapFn | None = None,
    lambda_sty: float = 1.0,
    lambda_ds: float = 1.0,
    lambda_cyc: float = 1.0,
) -> tuple[torch.Tensor, dict[str, float]]:
    """G objective of one branch: exactly one of z_trgs (z1, z2) [N, latent_dim] each, or x_refs
    (ref1, ref2) [N,3,R,R] each (two references of domains y_trg). lambda_ds is the *current*
    (decayed) weight, see `ds_weight`.

    With w_hpf > 0: masks are the FAN masks of x_real and heatmap_fn (e.g. FAN get_heatmap)
    gives those of the fake for the cycle pass; it runs without gradients, as officially.

    Gradients reach every network used (D included); which ones to step is the caller's choice,
    see `generator_step_networks`. Returns (loss, {adv, sty, ds, cyc}).
    """
    if (z_trgs is None) == (x_refs is None):
        raise ValueError("generator_loss: give exactly one of z_trgs (latent) or x_refs")
    generator, style_encoder, discriminator = _nets(
        nets, "generator", "style_encoder", "discriminator"
    )
    z1, z2 = z_trgs if z_trgs is not None else (None, None)
    r1, r2 = x_refs if x_refs is not None else (None, None)

    # Adversarial: the translated image should pass as domain y_trg.
    s_trg = _target_style(nets, y_trg, z1, r1)
    x_fake = generator(x_real, s_trg, masks=masks)
    loss_adv = adv_loss(discriminator(x_fake, y_trg), 1)

    # Style reconstruction: the style encoder recovers the style that made the image.
    loss_sty = style_reconstruction_loss(style_encoder(x_fake, y_trg), s_trg)

    # Diversity sensitive: two styles of the same domain should give different images.
    s_trg2 = _target_style(nets, y_trg, z2, r2)
    x_fake2 = generator(x_real, s_trg2, masks=masks).detach()
    loss_ds = diversity_sensitive_loss(x_fake, x_fake2)

    # Cycle consistency: translating back with the source's own style recovers the source.
    masks_fake = None
    if getattr(generator, "w_hpf", 0) > 0:
        if heatmap_fn is None:
            raise ValueError("generator_loss: w_hpf > 0 needs heatmap_fn (FAN get_heatmap)")
        with torch.no_grad():
            masks_fake = heatmap_fn(x_fake.detach())
    s_org = style_encoder(x_real, y_org)
    x_rec = generator(x_fake, s_org, masks=masks_fake)
    loss_cyc = cycle_consistency_loss(x_rec, x_real)

    loss = loss_adv + lambda_sty * loss_sty - lambda_ds * loss_ds + lambda_cyc * loss_cyc
    terms = {"adv": loss_adv, "sty": loss_sty, "ds": loss_ds, "cyc": loss_cyc}
    return loss, {k: v.item() for k, v in terms.items()}


def generator_step_networks(
    branch: Literal["latent", "reference"],
    *,
    style_encoder_in_reference_branch: bool = False,
) -> tuple[str, ...]:
    """Networks whose optimizers step after a G branch's backward (names as in build_networks).

    Latent branch: generator, mapping network and style encoder. Reference branch: the official
    solver steps the generator only, although the style encoder (which made the target style
    and the cycle style) received gradients; the paper does not discuss it. Keeping the default
    (False) reproduces the published training; True also steps the style encoder there.
    """
    if branch == "latent":
        return ("generator", "mapping_network", "style_encoder")
    if branch == "reference":
        if style_encoder_in_reference_branch:
            return ("generator", "style_encoder")
        return ("generator",)
    raise ValueError(f"branch must be 'latent' or 'reference', got {branch!r}")
