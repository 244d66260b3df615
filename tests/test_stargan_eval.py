"""The StarGAN v2 evaluation protocol on stand-in networks whose FID / diversity are known."""

import math

import numpy as np
import pytest
import torch
from torch import nn

from lightning_gans.metrics.stargan_eval import evaluate_stargan, pairwise_diversity

N_IMG, BATCH, NUM_OUTS = 64, 32, 10


class AddStyle(nn.Module):
    """G(x, s) = x + gain * s[:, :1] + offset: uses the style iff gain != 0."""

    def __init__(self, gain: float, offset: float = 0.0) -> None:
        super().__init__()
        self.gain, self.offset = gain, offset

    def forward(self, x, s):
        return x + self.gain * s[:, :1].view(-1, 1, 1, 1) + self.offset


class Identity(nn.Module):  # F(z, y) = z
    def forward(self, z, y):
        return z


class MeanStyle(nn.Module):  # E(x, y) = mean of the image
    def forward(self, x, y):
        return x.mean(dim=(1, 2, 3)).unsqueeze(1)


def features(x: torch.Tensor) -> torch.Tensor:
    """A linear stand-in for Inception: per-channel means of the four quadrants, [n, 12]."""
    q = x.unfold(2, 4, 4).unfold(3, 4, 4).mean(dim=(-1, -2))  # [n, 3, 2, 2]
    return q.flatten(1)


def mean_abs(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:  # stand-in for LPIPS, [n]
    return (a - b).abs().flatten(1).mean(1)


def domain_images(seed: int) -> torch.Tensor:
    return torch.rand(N_IMG, 3, 8, 8, generator=torch.Generator().manual_seed(seed)) * 2 - 1


def batches(x: torch.Tensor) -> list[torch.Tensor]:
    return list(x.split(BATCH))


def fid_of_repeats(x: torch.Tensor, shift: float) -> float:
    """FID of NUM_OUTS copies of x (shifted) against x: the covariances differ only by the
    N-1 normalisation, so FID = |shift|^2 * D + tr(S) (1 - sqrt(c))^2."""
    f = features(x).double().numpy()
    c = NUM_OUTS * (N_IMG - 1) / (NUM_OUTS * N_IMG - 1)
    return f.shape[1] * shift**2 + np.trace(np.cov(f.T)) * (1 - math.sqrt(c)) ** 2


def nets(g: nn.Module) -> dict:
    return {"generator": g, "mapping_network": Identity(), "style_encoder": MeanStyle()}


@pytest.mark.parametrize("mode", ["latent", "reference"])
def test_style_blind_generator_has_zero_diversity_and_known_fid(mode):
    a, b = domain_images(0), domain_images(1)
    # G ignores the style and adds 0.5: outputs from domain 0 are a + 0.5; the real images of
    # domain 1 are a itself, so the task's FID is the shift alone (12 * 0.25 = 3.0).
    out = evaluate_stargan(
        nets(AddStyle(0.0, 0.5)), {0: batches(a), 1: batches(b)}, {0: batches(b), 1: batches(a)},
        features, mean_abs, mode=mode, num_outs=NUM_OUTS, latent_dim=1,
        domain_names=["photo", "drawn"])
    assert set(out) == {f"{m}_{mode}/{t}" for m in ("FID", "LPIPS")
                        for t in ("photo2drawn", "drawn2photo", "mean")}
    assert out[f"LPIPS_{mode}/photo2drawn"] == 0.0 and out[f"LPIPS_{mode}/mean"] == 0.0
    assert out[f"FID_{mode}/photo2drawn"] == pytest.approx(fid_of_repeats(a, 0.5), rel=1e-6)
    assert out[f"FID_{mode}/drawn2photo"] == pytest.approx(fid_of_repeats(b, 0.5), rel=1e-6)
    assert out[f"FID_{mode}/photo2drawn"] == pytest.approx(3.0, rel=1e-3)


def test_identical_sets_give_fid_near_zero():
    a, b = domain_images(0), domain_images(1)
    out = evaluate_stargan(nets(AddStyle(0.0)), {0: batches(a), 1: batches(b)},
                           {0: batches(b), 1: batches(a)}, features, mean_abs,
                           num_outs=NUM_OUTS, latent_dim=1)
    assert out["FID_latent/021"]  # task "0" -> "1" == pytest.approx(fid_of_repeats(a, 0.0), rel=1e-6)
    assert out["FID_latent/mean"] < 1e-3


def test_latent_diversity_measures_style_spread():
    # G(x, s) = x + z: |G(x, z_i) - G(x, z_j)| = |z_i - z_j|, whose mean is 2 / sqrt(pi) for
    # independent standard normal z.
    a, b = domain_images(0), domain_images(1)
    out = evaluate_stargan(nets(AddStyle(1.0)), {0: batches(a), 1: batches(b)},
                           {0: batches(b), 1: batches(a)}, features, mean_abs,
                           num_outs=NUM_OUTS, latent_dim=1, seed=3)
    assert out["LPIPS_latent/mean"] == pytest.approx(2 / math.sqrt(math.pi), rel=0.06)
    again = evaluate_stargan(nets(AddStyle(1.0)), {0: batches(a), 1: batches(b)},
                             {0: batches(b), 1: batches(a)}, features, mean_abs,
                             num_outs=NUM_OUTS, latent_dim=1, seed=3)
    assert again == out  # seeded: reproducible


def test_reference_mode_uses_target_domain_references():
    # References of domain d are constant images of value v_d; with E = image mean and
    # G = x + s, every output of task src->trg is x + v_trg: zero diversity, and where the real
    # set of trg is x_src + v_trg, the FID of identical sets.
    imgs = {d: domain_images(d) for d in range(3)}
    value = {0: -0.3, 1: 0.2, 2: 0.45}
    refs = {d: batches(torch.full((N_IMG, 3, 8, 8), v)) for d, v in value.items()}
    real = {d: batches(imgs[(d + 1) % 3] + value[d]) for d in range(3)}
    out = evaluate_stargan(nets(AddStyle(1.0)), {d: batches(x) for d, x in imgs.items()}, real,
                           features, mean_abs, mode="reference", num_outs=NUM_OUTS,
                           references=refs)
    tasks = {f"{s}2{t}" for s in range(3) for t in range(3) if s != t}
    assert set(out) == {f"{m}_reference/{t}" for m in ("FID", "LPIPS") for t in tasks | {"mean"}}
    assert all(out[f"LPIPS_reference/{t}"] == 0.0 for t in tasks)
    for trg in range(3):
        src = (trg + 1) % 3
        want = fid_of_repeats(imgs[src], 0.0)
        assert out[f"FID_reference/{src}2{trg}"] == pytest.approx(want, rel=1e-6, abs=1e-9)
        other = 3 - trg - src  # a different source domain: a real distance
        assert out[f"FID_reference/{other}2{trg}"] > 100 * max(want, 1e-6)


def test_pairwise_diversity_is_mean_over_pairs():
    outs = [torch.full((2, 3, 4, 4), v) for v in (0.0, 1.0, 3.0)]
    # pairs: |0-1|, |0-3|, |1-3| -> mean 2
    assert pairwise_diversity(outs, mean_abs) == pytest.approx(2.0)
    with pytest.raises(ValueError):
        pairwise_diversity(outs[:1], mean_abs)
