"""StyleGAN2 objectives: non-saturating logistic loss, R1, path length regularization.

Karras et al., CVPR 2020 (sections 3.2 and 4; appendix B): the regularizers run lazily, every
`interval` minibatches, and are scaled by that interval so their strength stays the same.
The phases and what each one reports follow StyleGAN2-ADA's training/loss.py: Gmain, Greg,
Dmain, Dreg, and the fused Gboth / Dboth of non-lazy regularization (`OFFICIAL_STATS` names the
official statistic behind every value a phase returns).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

# Our logged key -> the official training_stats name (StyleGAN2-ADA training/loss.py).
OFFICIAL_STATS = {
    "loss/G_main": "Loss/G/loss",
    "scores/fake": "Loss/scores/fake",
    "signs/fake": "Loss/signs/fake",
    "reg/pl_penalty": "Loss/pl_penalty",
    "reg/G_pl": "Loss/G/reg",
    "loss/D_main": "Loss/D/loss",
    "scores/real": "Loss/scores/real",
    "signs/real": "Loss/signs/real",
    "reg/r1_penalty": "Loss/r1_penalty",
    "reg/D_r1": "Loss/D/reg",
}
PHASES = ("Gmain", "Greg", "Gboth", "Dmain", "Dreg", "Dboth")


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


def path_lengths(img: torch.Tensor, ws: torch.Tensor, noise: torch.Tensor | None = None) -> torch.Tensor:
    """||J_w^T y|| per sample with y = noise / sqrt(H*W), noise ~ N(0, I) (drawn unless given):
    the local scale of G around w."""
    noise = torch.randn_like(img) if noise is None else noise.to(img)
    noise = noise / math.sqrt(img.shape[2] * img.shape[3])
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
    """The training phases' losses: G main, G path length, D main, D R1 (and fused main + reg).

    G and D are plain modules in train mode (so w_avg moves in every phase that runs G, as in
    the official loop); `augment` (ADA) is applied to every image D sees. Each method returns
    (loss to backpropagate, stats): stats hold detached per-sample values under our keys (the
    official statistic of each is in OFFICIAL_STATS), which the module averages for logging.
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
        noise_mode: str = "random",  # synthesis noise in training ('const' for parity checks)
    ):
        self.G, self.D, self.augment = G, D, augment
        self.r1_gamma = r1_gamma
        self.style_mixing_prob = style_mixing_prob
        self.pl_weight = pl_weight
        self.pl_batch_shrink = pl_batch_shrink
        self.pl_decay = pl_decay
        self.pl_mean = pl_mean if pl_mean is not None else torch.zeros([])
        self.noise_mode = noise_mode

    def run_G(self, z, c, update_w_avg=True):
        ws = style_mix(self.G.mapping, z, c, self.style_mixing_prob, update_w_avg=update_w_avg)
        return self.G.synthesis(ws, noise_mode=self.noise_mode), ws

    def run_D(self, img, c):
        if self.augment is not None:
            img = self.augment(img)
        return self.D(img, c)

    def g_main(self, z, c):
        """Gmain: maximize D's logits for generated images."""
        img, _ = self.run_G(z, c)
        logits = self.run_D(img, c)
        loss = g_nonsaturating(logits)
        stats = {"loss/G_main": loss.detach(), "scores/fake": logits.detach(), "signs/fake": logits.detach().sign()}
        return loss.mean(), stats

    def g_pl(self, z, c, gain: float, noise: torch.Tensor | None = None):
        """Greg: path length regularization on the first N // pl_batch_shrink latents.

        As in the official loss, the penalty is taken against the updated running mean, and that
        mean is not detached there: the gradient also flows through its lerp towards the batch's
        mean length (the stored buffer is detached). `noise`: the N(0, 1) draw (None = drawn).
        """
        n = max(z.shape[0] // self.pl_batch_shrink, 1)  # the official has 0 rows (a NaN) at batch 1
        img, ws = self.run_G(z[:n], c[:n] if c is not None else None)
        lengths = path_lengths(img, ws, noise)
        pl_mean = self.pl_mean.lerp(lengths.mean(), self.pl_decay)
        self.pl_mean.copy_(pl_mean.detach())
        penalty = (lengths - pl_mean).square()
        reg = penalty * self.pl_weight
        # img[:, 0, 0, 0] * 0 keeps every synthesis parameter in the graph (DDP needs all grads).
        loss = (img[:, 0, 0, 0] * 0 + reg).mean() * gain
        return loss, {"reg/pl_penalty": penalty.detach(), "reg/G_pl": reg.detach(),
                      "reg/pl_mean": pl_mean.detach()}

    def d_main(self, real_img, real_c, z, gen_c, r1: bool = False):
        """Dmain: minimize D's logits for generated images, maximize them for reals.

        G runs in train mode (w_avg moves, as in the official Dmain); no graph is kept for it.
        r1: also apply R1 to the same real logits (the fused 'Dboth' of non-lazy regularization).
        """
        with torch.no_grad():
            fake_img, _ = self.run_G(z, gen_c)
        fake_logits = self.run_D(fake_img, gen_c)
        do_r1 = r1 and self.r1_gamma != 0
        real = real_img.detach().requires_grad_(do_r1)
        real_logits = self.run_D(real, real_c)
        loss_real, loss_fake = d_logistic(real_logits, fake_logits)
        stats = {
            "loss/D_real": loss_real.detach(),
            "loss/D_fake": loss_fake.detach(),
            "loss/D_main": (loss_fake + loss_real).detach(),
            "scores/fake": fake_logits.detach(),
            "signs/fake": fake_logits.detach().sign(),
            "scores/real": real_logits.detach(),
            "signs/real": real_logits.detach().sign(),
        }
        real_term = real_logits * 0 + loss_real
        if do_r1:
            penalty = r1_penalty(real, real_logits)
            reg = penalty * (self.r1_gamma / 2)
            real_term = real_term + reg
            stats.update({"reg/r1_penalty": penalty.detach(), "reg/D_r1": reg.detach()})
        return loss_fake.mean() + real_term.mean(), stats

    def d_r1(self, real_img, real_c, gain: float):
        """Dreg: R1 on the reals (also reports their scores and signs, which ADA counts)."""
        real = real_img.detach().requires_grad_(True)
        logits = self.run_D(real, real_c)
        penalty = r1_penalty(real, logits)
        reg = penalty * (self.r1_gamma / 2)
        loss = (logits * 0 + reg).mean() * gain
        return loss, {"reg/r1_penalty": penalty.detach(), "reg/D_r1": reg.detach(),
                      "scores/real": logits.detach(), "signs/real": logits.detach().sign()}

    def phase(self, name: str, real_img, real_c, z, gen_c, gain: float = 1, pl_noise=None):
        """One phase of the official loop by its name ('Gmain', 'Greg', 'Gboth', 'Dmain', 'Dreg',
        'Dboth'): (loss, stats). A regularization phase whose weight is 0 returns (None, {})."""
        if name not in PHASES:
            raise ValueError(f"phase must be one of {PHASES}, got {name!r}")
        do_pl = name in ("Greg", "Gboth") and self.pl_weight != 0
        if name == "Gmain":
            loss, stats = self.g_main(z, gen_c)
            return _gained(loss, gain), stats
        if name == "Greg":
            return self.g_pl(z, gen_c, gain=gain, noise=pl_noise) if do_pl else (None, {})
        if name == "Gboth":
            loss, stats = self.g_main(z, gen_c)
            loss = _gained(loss, gain)
            if do_pl:
                reg, s = self.g_pl(z, gen_c, gain=gain, noise=pl_noise)
                loss, stats = loss + reg, {**stats, **s}
            return loss, stats
        if name == "Dreg":
            return self.d_r1(real_img, real_c, gain=gain) if self.r1_gamma != 0 else (None, {})
        loss, stats = self.d_main(real_img, real_c, z, gen_c, r1=(name == "Dboth"))
        return _gained(loss, gain), stats


def _gained(loss: torch.Tensor, gain: float) -> torch.Tensor:
    return loss if gain == 1 else loss * gain


def lazy_adam_kwargs(lr: float, betas: tuple[float, float], interval: int | None) -> dict:
    """Adam settings for a net regularized every `interval` steps: lr and betas ** mb_ratio.

    mb_ratio = I / (I + 1) compensates for the extra optimizer step the regularizer takes. As in
    the official loop it depends on the interval only: a zero r1_gamma / pl_weight keeps it.
    interval None (non-lazy: main and regularization in one step) leaves lr and betas as given.
    """
    ratio = interval / (interval + 1) if interval else 1.0
    return dict(lr=lr * ratio, betas=tuple(float(b**ratio) for b in betas))
