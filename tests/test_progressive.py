"""The StyleGAN (v1) progressive schedule: official FFHQ values, fade-ins, resets, world sizes."""

import math

import numpy as np
import pytest

from lightning_gans.modules.progressive import ProgressiveSchedule

FFHQ = ProgressiveSchedule(max_resolution=1024)  # the official FFHQ defaults


def official_lod(kimg: float, res_log2: int = 10, initial: int = 8, train: float = 600, trans: float = 600):
    """training_loop.training_schedule's lod, written out independently with numpy."""
    phase_dur = train + trans
    phase_idx = int(np.floor(kimg / phase_dur))
    phase_kimg = kimg - phase_idx * phase_dur
    lod = res_log2 - np.floor(np.log2(initial)) - phase_idx
    lod -= max(phase_kimg - train, 0.0) / trans
    return max(lod, 0.0)


@pytest.mark.parametrize("kimg", [0, 1, 300, 600, 600.001, 750, 900, 1199.9, 1200, 1800, 2000, 8399, 8400, 9e4])
def test_matches_official_lod(kimg):
    p = FFHQ.at(round(kimg * 1000))
    lod = official_lod(round(kimg * 1000) / 1000)
    assert p.lod == pytest.approx(lod, abs=1e-9)
    assert p.resolution == 2 ** (10 - int(np.floor(lod)))
    assert p.alpha == pytest.approx(1 - (lod - np.floor(lod)), abs=1e-9)


def test_phase_boundaries_ffhq():
    at = lambda kimg: FFHQ.at(round(kimg * 1000))  # noqa: E731
    assert (at(0).resolution, at(0).alpha, at(0).phase, at(0).lod) == (8, 1.0, 0, 7.0)
    assert (at(600).resolution, at(600).alpha, at(600).phase) == (8, 1.0, 0)  # still stable
    assert (at(600.001).resolution, at(600.001).phase) == (16, 1)  # 16 px starts fading in
    assert at(600.001).alpha == pytest.approx(1e-3 / 600)
    assert (at(900).resolution, at(900).alpha, at(900).phase, at(900).lod) == (16, 0.5, 1, 6.5)
    assert (at(1200).resolution, at(1200).alpha, at(1200).phase) == (16, 1.0, 2)
    assert (at(2250).resolution, at(2250).alpha, at(2250).phase) == (32, 0.75, 3)
    assert FFHQ.num_phases == 15
    assert (at(8399).resolution, at(8399).phase) == (1024, 13)
    assert (at(8400).resolution, at(8400).alpha, at(8400).phase) == (1024, 1.0, 14)
    assert (at(25000).resolution, at(25000).phase, at(25000).lod) == (1024, 14, 0.0)
    for phase in range(FFHQ.num_phases):
        start = FFHQ.kimg_of_phase(phase)
        assert at(start + 0.001).phase == phase
        # A stable phase begins at its start kimg, a fade-in strictly after it (lod < integer).
        assert at(start).phase == (phase - 1 if phase % 2 else phase)


def test_alpha_rises_across_fade_in():
    nimg = np.linspace(600_000, 1_200_000, 61).astype(int)
    ps = [FFHQ.at(int(n)) for n in nimg]
    alphas = np.array([p.alpha for p in ps])
    assert alphas[0] == 1.0 and ps[0].resolution == 8  # the last stable image at 8 px
    inner = alphas[1:-1]
    assert all(p.resolution == 16 for p in ps[1:])
    assert np.all(np.diff(inner) > 0) and inner[0] == pytest.approx(1 / 60) and inner[-1] == pytest.approx(59 / 60)
    np.testing.assert_allclose(inner, (nimg[1:-1] - 600_000) / 600_000, atol=1e-12)
    assert alphas[-1] == 1.0 and ps[-1].phase == 2


def test_batch_and_lr_per_resolution():
    # Official FFHQ numbers on 8 GPUs, scaled to the world size.
    assert [FFHQ.batch(r, 8) for r in (4, 8, 16, 32, 64, 128, 1024)] == [512, 256, 128, 64, 32, 32, 32]
    assert [FFHQ.batch(r, 1) for r in (4, 8, 16, 32, 64, 128, 1024)] == [64, 32, 16, 8, 4, 4, 4]
    assert [FFHQ.batch(r, 2) for r in (8, 16, 1024)] == [64, 32, 8]
    assert FFHQ.max_batch(8) == 256 and FFHQ.max_batch(1) == 32  # starts at 8 px, not 4
    assert [FFHQ.lr(r) for r in (8, 64, 128, 256, 512, 1024)] == [0.001, 0.001, 0.0015, 0.002, 0.003, 0.003]


def run_schedule(s: ProgressiveSchedule, world: int, steps: int) -> list[tuple[int, object]]:
    """Simulate the module's loop: read the schedule at nimg, train a global batch, advance."""
    nimg, out = 0, []
    for _ in range(steps):
        p = s.at(nimg)
        out.append((nimg, p))
        nimg += s.batch(p.resolution, world)
    return out


def test_same_schedule_under_one_or_two_processes():
    s = ProgressiveSchedule(max_resolution=64, start_resolution=8, stable_kimg=0.5, fade_kimg=0.5,
                            minibatch_dict={8: 16, 16: 8, 32: 8, 64: 4}, minibatch_gpus=1)
    runs = {w: run_schedule(s, w, 2000 // w) for w in (1, 2)}
    # Same progress at the same number of images, whatever the world size.
    for w, run in runs.items():
        for nimg, p in run:
            assert p == s.at(nimg), w
    # Every phase is entered in both runs within one (largest) global batch of its start kimg.
    for w, run in runs.items():
        first = {}
        for nimg, p in run:
            first.setdefault(p.phase, nimg)
        assert sorted(first) == list(range(s.num_phases)), w
        for phase, nimg in first.items():
            assert 0 <= nimg - s.kimg_of_phase(phase) * 1000 <= s.max_batch(w), (w, phase)
    # Two processes take half the steps: the world-2 run reaches the final phase in ~half as many.
    steps_to_final = {w: next(i for i, (_, p) in enumerate(run) if p.phase == s.num_phases - 1)
                      for w, run in runs.items()}
    assert abs(steps_to_final[1] - 2 * steps_to_final[2]) <= 2


def test_phase_changes_are_official_optimizer_resets():
    """Official: reset Adam when floor(lod) or ceil(lod) changes; here: when the phase changes."""
    s = ProgressiveSchedule(max_resolution=32, start_resolution=4, stable_kimg=0.1, fade_kimg=0.06,
                            minibatch_dict={}, minibatch_base=8, minibatch_gpus=1)
    run = run_schedule(s, 1, 200)
    prev_lod, prev_phase = None, None
    for _, p in run:
        if prev_lod is not None:
            official = math.floor(p.lod) != math.floor(prev_lod) or math.ceil(p.lod) != math.ceil(prev_lod)
            assert official == (p.phase != prev_phase), p
        prev_lod, prev_phase = p.lod, p.phase


def test_bad_settings_name_the_key():
    with pytest.raises(ValueError, match="start_resolution"):
        ProgressiveSchedule(max_resolution=32, start_resolution=64)
    with pytest.raises(ValueError, match="power of two"):
        ProgressiveSchedule(max_resolution=48)
    with pytest.raises(ValueError, match="stable_kimg"):
        ProgressiveSchedule(max_resolution=32, stable_kimg=0, fade_kimg=0)
