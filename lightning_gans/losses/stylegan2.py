"""StyleGAN2 objectives: non-saturating logistic loss, R1, path length regularization.

Karras et al., CVPR 2020 (sections 3.2 and 4; appendix B): the regularizers run lazily, every
`interval` minibatches, and are scaled by that interval so their strength stays the same.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


def g_nonsaturating(fake_logits: torch.Tensor) -> torch.Tensor:
    """-log(sigmoid(D(G(z)))) per sample."""
    return F.softplus(-fake_logits)


def d_logistic(real_logits: torch.Tensor, fake_logits: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(-log(sigmoid(D(x))), -log(1 - sigmoid(D(G(z))))) per sample."""
    return F.softplus(-real_logits), F.softplus(fake_logits)


def r1_penalty(real_img: torch.Tensor, real_logits: torch.Tensor) -> torch.Tensor:
    """||d D(x) / d x||^2 per sample (Mescheder et al. 2018); real_img must require grad."""
    (grad,) = torch.autograd.grad(real_logits.sum(), real_img, create_graph=True, only_inputs=True)
    return grad.square().sum(dim=[1, 2, 3])


def path_lengths(img: torch.Tensor, ws: torch.Tensor) -> torch.Tensor:
    """||J_w^T y|| per sample with y ~ N(0, I) / sqrt(H*W): the local scale of G around w."""
    noise = torch.randn_like(img) / math.sqrt(img.shape[2] * img.shape[3])
    (grad,) = torch.autograd.grad((img * noise).sum(), ws, create_graph=True, only_inputs=True)
    return grad.square().sum(dim=2).mean(dim=1).sqrt()


def style_mix(mapping: nn.Module, z: torch.Tensor, c: torch.Tensor | None, prob: float,
              update_w_avg: bool = True) -> torch.Tensor:
    """ws of z; with probability `prob`, those after a random cutoff come from a second latent.

    Style mixing regularization (StyleGAN, section 3.1): one cutoff per minibatch, drawn from
    [1, num_ws), so the network cannot assume adjacent styles are correlated. Both latents go
    through the mapping network as one batch (half the small matmuls); w_avg follows z only.
    """
    num_ws = mapping.num_ws
    if prob <= 0 or torch.rand([]).item() >= prob:
        return mapping(z, c, update_w_avg=update_w_avg)
    cutoff = int(torch.randint(1, num_ws, []).item())
    n = z.shape[0]
    both = mapping(torch.cat([z, torch.randn_like(z)]), torch.cat([c, c]) if c is not None else None,
                   update_w_avg=update_w_avg, w_avg_rows=n)
    return torch.cat([both[:n, :cutoff], both[n:, cutoff:]], dim=1)


class StyleGAN2Loss:
    """The four training phases' losses: G main, G path length, D main, D R1.

    G and D are plain modules; `augment` (ADA) is applied to every image D sees.
    Each method returns (loss to backpropagate, dict of scalars to log).
    """

    def __init__(
        self,
        G: nn.Module,
        D: nn.Module,
        augment: nn.Module | None = None,
        r1_gamma: float = 10.0,
        style_mixing_prob: float = 0.9,
        pl_weight: float = 2.0,
        pl_batch_shrink: int = 2,
        pl_decay: float = 0.01,
        pl_mean: torch.Tensor | None = None,  # running mean of path lengths (a module buffer)
    ):
        self.G, self.D, self.augment = G, D, augment
        self.r1_gamma = r1_gamma
        self.style_mixing_prob = style_mixing_prob
        self.pl_weight = pl_weight
        self.pl_batch_shrink = pl_batch_shrink
        self.pl_decay = pl_decay
        self.pl_mean = pl_mean if pl_mean is not None else torch.zeros([])

    def run_G(self, z, c, update_w_avg=True):
        ws = style_mix(self.G.mapping, z, c, self.style_mixing_prob, update_w_avg=update_w_avg)
        return self.G.synthesis(ws), ws

    def run_D(self, img, c):
        if self.augment is not None:
            img = self.augment(img)
        return self.D(img, c)

    def g_main(self, z, c):
        img, _ = self.run_G(z, c)
        logits = self.run_D(img, c)
        loss = g_nonsaturating(logits).mean()
        return loss, {"loss/G_main": loss.detach(), "scores/fake": logits.detach().mean()}

    def g_pl(self, z, c, gain: float):
        n = max(z.shape[0] // self.pl_batch_shrink, 1)
        img, ws = self.run_G(z[:n], c[:n] if c is not None else None)
        lengths = path_lengths(img, ws)
        pl_mean = self.pl_mean.lerp(lengths.detach().mean(), self.pl_decay)
        self.pl_mean.copy_(pl_mean)
        penalty = (lengths - pl_mean).square()
        loss = (penalty * self.pl_weight).mean() * gain
        # img[:, 0, 0, 0] * 0 keeps every synthesis parameter in the graph (DDP needs all grads).
        loss = loss + (img[:, 0, 0, 0] * 0).sum()
        return loss, {"reg/pl_penalty": penalty.detach().mean(), "reg/pl_mean": pl_mean.detach()}

    def d_main(self, real_img, real_c, z, gen_c):
        with torch.no_grad():
            fake_img, _ = self.run_G(z, gen_c, update_w_avg=False)
        fake_logits = self.run_D(fake_img, gen_c)
        real_logits = self.run_D(real_img, real_c)
        loss_real, loss_fake = d_logistic(real_logits, fake_logits)
        loss = loss_real.mean() + loss_fake.mean()
        return loss, {
            "loss/D_real": loss_real.detach().mean(),
            "loss/D_fake": loss_fake.detach().mean(),
            "loss/D_main": loss.detach(),
            "scores/real": real_logits.detach().mean(),
            "signs/real": real_logits.detach().sign().mean(),
        }

    def d_r1(self, real_img, real_c, gain: float):
        real = real_img.detach().requires_grad_(True)
        logits = self.run_D(real, real_c)
        penalty = r1_penalty(real, logits)
        loss = (penalty * (self.r1_gamma / 2)).mean() * gain + (logits * 0).sum()
        return loss, {"reg/r1_penalty": penalty.detach().mean(), "loss/D_r1": loss.detach()}


def lazy_adam_kwargs(lr: float, betas: tuple[float, float], interval: int | None) -> dict:
    """Adam settings for a net regularized every `interval` steps: lr and betas ** mb_ratio.

    mb_ratio = I / (I + 1) compensates for the extra optimizer step the regularizer takes.
    """
    ratio = interval / (interval + 1) if interval else 1.0
    return dict(lr=lr * ratio, betas=tuple(float(b**ratio) for b in betas))

