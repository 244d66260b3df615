"""One StyleGAN2-ADA training iteration against the official code (../shared/parity/sg2ada_step).

The fixture holds the official loss's four phases (Gmain, Greg, Dmain, Dreg) run on the sg2ada
fixture's weights: inputs, the path-length noise, every reported statistic and every parameter's
gradient per phase, w_avg after each phase and pl_mean after Greg. Shapes and settings are read
from the fixture files, so the same test runs against another fixture root (LG_PARITY_DIR).

Also: the optimizer, EMA and ADA settings of one iteration against numbers computed here from
the official formulas (training_loop.py, train.py), and the phase schedule (lazy intervals kept
at zero weights, the fused Gboth / Dboth of non-lazy regularization).
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from helpers.parity_utils import parity_dir

from lightning_gans.interop import sg2ada
from lightning_gans.losses.stylegan2 import OFFICIAL_STATS
from lightning_gans.modules.stylegan2 import StyleGAN2Module

pytestmark = pytest.mark.usefixtures("one_thread")

STAT_TOL = 1e-6  # losses and penalties (the phase's mean): relative
OUT_TOL = 1e-5  # every per-sample value: x max(1, max |ref|), the fixtures' tolerance for network outputs
LOSS_STATS = ("Loss/G/", "Loss/D/", "Loss/pl_penalty", "Loss/r1_penalty")
GRAD_TOL = 1e-4  # gradients: max |diff| / max |ref| per tensor
NEAR_ZERO = 1e-6  # leaky-ReLU outputs this close to 0 may have rounded to the other sign


def _fixture():
    root = parity_dir()
    if root is None or not (root / "sg2ada_step" / "step.npz").is_file():
        pytest.skip("parity fixture sg2ada_step not present")
    step = json.loads((root / "sg2ada_step" / "step.json").read_text())
    ref = dict(np.load(root / "sg2ada_step" / "step.npz"))
    net_dir = root / step.get("fixture", "sg2ada")
    kwargs = json.loads((net_dir / "kwargs.json").read_text())
    G_sd = {k: torch.from_numpy(v) for k, v in np.load(net_dir / "G.npz").items()}
    D_sd = {k: torch.from_numpy(v) for k, v in np.load(net_dir / "D.npz").items()
            if not sg2ada.is_official_block_filter(k)}
    return step, ref, kwargs, G_sd, D_sd


def _module(step, kwargs, G_sd, D_sd, **overrides) -> StyleGAN2Module:
    cfg = step["config"]
    hp = sg2ada.hparams_from_official(kwargs["G"]["init_kwargs"], kwargs["D"]["init_kwargs"])
    hp.update(r1_gamma=cfg["r1_gamma"], pl_weight=cfg["pl_weight"], pl_decay=cfg["pl_decay"],
              pl_batch_shrink=cfg["pl_batch_shrink"], style_mixing_prob=cfg["style_mixing_prob"],
              ada_target=None, **overrides)
    m = StyleGAN2Module(**hp)
    sg2ada.load_strict(m.G, G_sd, "G")
    sg2ada.load_strict(m.D, D_sd, "D")
    m.loss.noise_mode = "const"  # the fixture's synthesis noise
    return m.train()


class _Flips:
    """Forward hooks on every leaky-ReLU layer: record outputs within NEAR_ZERO of 0 (candidates for
    a sign that rounded the other way in the official run), or give chosen ones the other slope
    (output x 0.2 or x 5: the same value to ~1e-7, the other sign's gradient)."""

    def __init__(self, nets):
        self.layers = [(name, mod) for net in nets for name, mod in net.named_modules()
                       if getattr(mod, "activation", None) == "lrelu" and hasattr(mod, "weight")]
        self.flip: set = set()
        self.found: list = []

    def __enter__(self):
        self.calls = {}
        self.handles = [mod.register_forward_hook(self._hook(name)) for name, mod in self.layers]
        return self

    def __exit__(self, *exc):
        for h in self.handles:
            h.remove()

    def _hook(self, name):
        def hook(mod, inputs, out):
            call = self.calls[name] = self.calls.get(name, -1) + 1
            flat = out.detach().flatten()
            for idx in (flat.abs() < NEAR_ZERO).nonzero().flatten().tolist():
                if flat[idx] != 0:
                    self.found.append((name, call, idx))
            mine = [(i, flat[i] > 0) for (n, c, i) in self.flip if n == name and c == call]
            if not mine:
                return out
            scale = torch.ones_like(flat)
            for i, positive in mine:
                scale[i] = 0.2 if positive else 5.0
            return out * scale.reshape(out.shape)
        return hook


def _run_phase(m, name, ph, ref, w_avg0, pl_mean0, flip=frozenset()):
    real = torch.from_numpy(ref["real"])
    c = torch.from_numpy(ref["c"])
    c = c[ph["z_row"]] if c.ndim == 3 else c  # labels per phase, or one set for all
    c = c if c.shape[-1] > 0 else None
    z = torch.from_numpy(ref["z"][ph["z_row"]])
    noise = torch.from_numpy(ref[f"{name}/pl_noise_raw"]) if f"{name}/pl_noise_raw" in ref else None
    net = m.G if ph["network"] == "G" else m.D
    m.G.requires_grad_(net is m.G)
    m.D.requires_grad_(net is m.D)
    for p in net.parameters():
        p.grad = None
    m.G.mapping.w_avg.copy_(w_avg0)  # every phase starts from the fixture's weights and buffers
    m.pl_mean.fill_(pl_mean0)
    with _Flips([m.G, m.D]) as hooks:
        hooks.flip = set(flip)
        loss, stats = m.loss.phase(name, real, c, z, c, gain=ph["gain"], pl_noise=noise)
        loss.backward()
    grads = {k: (p.grad if p.grad is not None else torch.zeros_like(p)).detach().clone()
             for k, p in net.named_parameters()}
    return stats, grads, hooks.found


def _grad_errors(grads, ref, name):
    out = {}
    for k, g in grads.items():
        r = torch.from_numpy(ref[f"{name}/grad/{k}"])
        out[k] = float((g - r).abs().max() / r.abs().max().clamp_min(1e-30))
    return out


def test_one_iteration_matches_official(capsys):
    step, ref, kwargs, G_sd, D_sd = _fixture()
    m = _module(step, kwargs, G_sd, D_sd)
    w_avg0 = G_sd["mapping.w_avg"].clone()
    pl_mean0 = float(step["config"]["pl_mean0"])
    official = {v: k for k, v in OFFICIAL_STATS.items()}
    report = []
    for name, ph in step["phases"].items():
        assert ph["gain"] == step["config"]["gains"][name]
        stats, grads, found = _run_phase(m, name, ph, ref, w_avg0, pl_mean0)
        # statistics: every value the official phase reports. Losses and penalties (what the phase
        # backpropagates is their mean) within 1e-6 relative; every per-sample value within the
        # fixtures' network-output tolerance; signs equal unless the score is within 1e-6 of 0.
        for stat in ph["stats"]:
            r = torch.from_numpy(ref[f"{name}/stat/{stat}"]).double()
            ours = stats[official[stat]].double().reshape(r.shape)
            if "/signs/" in stat:
                scores = stats[official[stat].replace("signs", "scores")].reshape(r.shape)
                assert bool(((ours == r) | (scores.abs() < 1e-6)).all()), (name, stat)
                continue
            assert float((ours - r).abs().max()) <= OUT_TOL * max(1.0, float(r.abs().max())), (name, stat)
            if stat.startswith(LOSS_STATS):
                err = abs(float(ours.mean() - r.mean())) / abs(float(r.mean()))
                assert err <= STAT_TOL, (name, stat, err)
                report.append(f"{name}: {stat} mean rel. error {err:.1e}")
        # buffers: w_avg moves in every phase that runs G (Dmain too); pl_mean after Greg
        moved = float((m.G.mapping.w_avg - w_avg0).abs().max())
        assert moved == pytest.approx(ph["w_avg_moved"], rel=1e-4, abs=1e-9), (name, moved)
        after = torch.from_numpy(ref[f"{name}/w_avg_after"])
        if float((after - w_avg0).abs().max()) == pytest.approx(ph["w_avg_moved"], rel=1e-4, abs=1e-9):
            torch.testing.assert_close(m.G.mapping.w_avg, after, rtol=0, atol=1e-6)
        else:  # the stored array contradicts the fixture's own w_avg_moved: say so, check the move
            report.append(f"{name}: fixture's w_avg_after is not w_avg moved by w_avg_moved; checked the move")
        if f"{name}/pl_mean_after" in ref:
            assert float(m.pl_mean) == pytest.approx(float(ref[f"{name}/pl_mean_after"]), rel=1e-6)
        # gradients: per tensor, allowing only an explained leaky-ReLU sign flip
        errs = _grad_errors(grads, ref, name)
        flipped = None
        if max(errs.values()) > GRAD_TOL:
            assert found, (name, "gradients differ without a near-zero leaky-ReLU input", _worst(errs))
            tries = [{f} for f in found] + ([set(found)] if len(found) > 1 else [])
            for flip in tries:
                _, g2, _ = _run_phase(m, name, ph, ref, w_avg0, pl_mean0, flip=flip)
                e2 = _grad_errors(g2, ref, name)
                if max(e2.values()) <= GRAD_TOL:
                    flipped, errs = flip, e2
                    break
            assert flipped is not None, (name, "no sign flip explains the gradients", _worst(errs), found)
        report.append(f"{name}: worst grads {_worst(errs)}" + (f" after the sign flip at {sorted(flipped)}"
                                                              if flipped else ""))
    with capsys.disabled():
        print("\n" + "\n".join(report))


def _worst(errs, k=3):
    return [(n, f"{e:.2e}") for n, e in sorted(errs.items(), key=lambda t: -t[1])[:k]]


def test_fused_phases_are_main_plus_regularization():
    """reg_interval None: Gboth / Dboth take main and regularization gradients in one step, gain 1."""
    step, ref, kwargs, G_sd, D_sd = _fixture()
    m = _module(step, kwargs, G_sd, D_sd)
    w_avg0, pl0 = G_sd["mapping.w_avg"].clone(), float(step["config"]["pl_mean0"])
    for both, main, reg, net in (("Gboth", "Gmain", "Greg", "G"), ("Dboth", "Dmain", "Dreg", "D")):
        ph = {"network": net, "z_row": 0, "gain": 1}
        noise = ref["Greg/pl_noise_raw"]
        ref2 = {**ref, f"{both}/pl_noise_raw": noise, f"{reg}/pl_noise_raw": noise}
        _, g_both, _ = _run_phase(m, both, ph, ref2, w_avg0, pl0)
        _, g_main, _ = _run_phase(m, main, ph, ref2, w_avg0, pl0)
        _, g_reg, _ = _run_phase(m, reg, ph, ref2, w_avg0, pl0)
        for k in g_both:
            torch.testing.assert_close(g_both[k], g_main[k] + g_reg[k], rtol=1e-4, atol=1e-6, msg=k)
        assert any(float(g.abs().max()) > 0 for g in g_reg.values())
    hp = dict(resolution=8, z_dim=8, w_dim=8, mapping_layers=1, channel_base=32, channel_max=4, ada_target=None)
    m = StyleGAN2Module(**hp, r1_interval=None, pl_interval=None)
    assert m.phases(0) == [("Gboth", 1), ("Dboth", 1)] and m.phases(3) == m.phases(0)
    opt_g, opt_d = m.configure_optimizers()
    assert opt_g.param_groups[0]["lr"] == 0.002 and opt_d.param_groups[0]["betas"] == (0.0, 0.99)


TINY = dict(resolution=8, z_dim=8, w_dim=8, mapping_layers=1, channel_base=32, channel_max=4,
            mbstd_group_size=2, batch_size=4, style_mixing_prob=0.0)


def _fit(m: StyleGAN2Module, steps: int, batch: int = 4, c=None):
    import pytorch_lightning as pl

    torch.manual_seed(1)
    data = [{"img": torch.rand(batch, 3, 8, 8) * 2 - 1, **({"c": c} if c is not None else {})}
            for _ in range(steps)]
    trainer = pl.Trainer(max_steps=steps, accelerator="cpu", devices=1, logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False)
    trainer.fit(m, train_dataloaders=torch.utils.data.DataLoader(data, batch_size=None))
    return trainer


@pytest.mark.parametrize("r1_gamma,pl_weight", [(10.0, 2.0), (0.0, 0.0)])
def test_adam_state_after_one_step_follows_official_formulas(r1_gamma, pl_weight):
    """lr * mb_ratio and betas ** mb_ratio with mb_ratio = I / (I + 1) (kept at zero weights, as
    the official intervals stay 16 / 4), eps 1e-8; one Adam step from zero state."""
    lr, betas = 0.0025, (0.0, 0.99)
    m = StyleGAN2Module(**TINY, lr=lr, betas=betas, r1_gamma=r1_gamma, pl_weight=pl_weight, ada_target=None)
    captured = {}

    def grab(opt, name):
        def pre(optimizer, args, kwargs):
            if name not in captured:  # the first step of this optimizer: its parameters and grads
                params = optimizer.param_groups[0]["params"]
                captured[name] = [(p.detach().clone(), p.grad.detach().clone()) for p in params]
        opt.register_step_pre_hook(pre)

    orig = m.configure_optimizers

    def configure():
        opts = orig()
        grab(opts[0], "G")
        grab(opts[1], "D")
        return opts

    m.configure_optimizers = configure
    trainer = _fit(m, 1)
    for i, (name, interval) in enumerate((("G", 4), ("D", 16))):
        ratio = interval / (interval + 1)
        opt = trainer.optimizers[i]
        group = opt.param_groups[0]
        assert group["lr"] == pytest.approx(lr * ratio, rel=1e-12)
        assert group["betas"][1] == pytest.approx(0.99**ratio, rel=1e-12) and group["betas"][0] == 0.0
        assert group["eps"] == 1e-8
        # iteration 0 runs the regularization phase too (when its weight is not 0): the state
        # after the *first* step is the one we check against the formula
        params, grads = zip(*captured[name])
        b2 = 0.99**ratio
        p0, g0 = params[0], grads[0]
        exp_avg_sq = (1 - b2) * g0.square()
        expected = p0 - lr * ratio * g0 / ((exp_avg_sq / (1 - b2)).sqrt() + 1e-8)
        st = opt.state[group["params"][0]]
        steps = int(st["step"])
        assert steps == (2 if (name == "G" and pl_weight) or (name == "D" and r1_gamma) else 1)
        if steps == 1:
            torch.testing.assert_close(group["params"][0].detach(), expected, rtol=1e-6, atol=1e-7)
            torch.testing.assert_close(st["exp_avg"], g0, rtol=1e-6, atol=1e-9)
            torch.testing.assert_close(st["exp_avg_sq"], exp_avg_sq, rtol=1e-5, atol=1e-12)


def test_ema_beta_with_rampup_follows_official_formula():
    """G_ema = G.lerp(G_ema, beta), beta = 0.5 ** (batch / max(min(ema_kimg*1000, nimg*rampup), 1e-8)),
    nimg before the increment; buffers (w_avg) copied."""
    m = StyleGAN2Module(**TINY, ema_kimg=0.01, ema_rampup=0.05, ada_target=None)
    _fit(m, 1)
    # iteration 0: nimg 0 -> rampup gives ema_nimg 0 -> beta 0: G_ema is G
    for a, b in zip(m.G_ema.parameters(), m.G.parameters()):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    ema0 = [p.detach().clone() for p in m.G_ema.parameters()]
    nimg = int(m.nimg)
    m2_beta = 0.5 ** (4 / max(min(0.01 * 1000, nimg * 0.05), 1e-8))
    assert 0 < m2_beta < 1
    _fit_more(m)
    for e0, e1, g in zip(ema0, m.G_ema.parameters(), m.G.parameters()):
        torch.testing.assert_close(e1, g.detach().lerp(e0, m2_beta), rtol=1e-6, atol=1e-7)
    torch.testing.assert_close(m.G_ema.mapping.w_avg, m.G.mapping.w_avg, rtol=0, atol=0)


def _fit_more(m):
    """One more iteration of an already-fitted module (a new trainer, same module state)."""
    import pytorch_lightning as pl

    data = [{"img": torch.rand(4, 3, 8, 8) * 2 - 1}]
    trainer = pl.Trainer(max_steps=1, accelerator="cpu", devices=1, logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False)
    trainer.fit(m, train_dataloaders=torch.utils.data.DataLoader(data, batch_size=None))


def test_ada_p_after_one_adjustment_follows_official_formula():
    """p += sign(mean sign(D(real)) over Dmain and Dreg since the last adjustment - target)
    * batch * interval / (ada_kimg * 1000), clamped at 0; adjusted after iteration interval-1."""
    target, interval, kimg = 0.6, 2, 0.05
    m = StyleGAN2Module(**TINY, ada_target=target, ada_interval=interval, ada_kimg=kimg, ada_p=0.1, r1_interval=2)
    signs = []
    orig = m.ada.accumulate
    m.ada.accumulate = lambda s: (signs.append(s.clone()), orig(s))[1]
    _fit(m, interval)
    assert len(signs) == 2 + 1  # Dmain x 2 iterations + Dreg at iteration 0 (interval 2: also at 2)
    r_t = float(torch.cat([s.flatten() for s in signs]).double().mean())
    expected = max(0.1 + math.copysign(1, r_t - target) * (4 * interval) / (kimg * 1000) if r_t != target else 0.1, 0)
    assert float(m.augment_pipe.p) == pytest.approx(expected, abs=1e-7)
    assert float(m.augment_pipe.p) != pytest.approx(0.1)


def test_init_from_applies_official_resume_settings(tmp_path):
    """init_from= as the official --resume: ada_kimg 100, no EMA ramp-up (kept through a checkpoint)."""
    from lightning_gans.modules.init_from import load_initial_weights

    src = StyleGAN2Module(**TINY, ada_target=0.6)
    path = tmp_path / "src.ckpt"
    torch.save({"state_dict": src.state_dict(), "model_config": src.model_config(),
                "hyper_parameters": dict(src.hparams)}, path)
    m = StyleGAN2Module(**TINY, ada_target=0.6, ada_kimg=500, ema_rampup=0.05)
    load_initial_weights(m, path)
    assert m.ada.kimg == 100 and m.hparams.ada_kimg == 100 and m.hparams.ema_rampup is None
    ckpt: dict = {}
    m.on_save_checkpoint(ckpt)
    fresh = StyleGAN2Module(**TINY, ada_target=0.6, ada_kimg=500, ema_rampup=0.05)
    fresh.on_load_checkpoint(ckpt)
    assert fresh.ada.kimg == 100 and fresh.hparams.ema_rampup is None


def test_conditional_gen_c_is_drawn_per_phase_from_the_dataset_labels():
    m = StyleGAN2Module(**TINY, c_dim=3, ada_target=None)
    m.label_probs.copy_(torch.tensor([0.0, 0.0, 1.0]))  # the dataset: all class 2
    real_c = torch.nn.functional.one_hot(torch.tensor([0, 1, 0, 1]), 3).float()  # this batch has none
    gen = m.gen_c(real_c, 4)
    assert gen.argmax(1).tolist() == [2, 2, 2, 2]
    m.label_probs.copy_(torch.tensor([0.5, 0.25, 0.25]))
    torch.manual_seed(0)
    draws = torch.cat([m.gen_c(real_c, 4000).argmax(1) for _ in range(2)])
    freq = torch.bincount(draws, minlength=3).float() / draws.numel()
    torch.testing.assert_close(freq, torch.tensor([0.5, 0.25, 0.25]), atol=0.02, rtol=0)
    a, b = m.gen_c(real_c, 64), m.gen_c(real_c, 64)
    assert not torch.equal(a, b)  # each phase draws its own


# The official train.py cfg_specs (ref_gpus, mb, mbstd, fmaps, lrate, gamma, ema, ramp, map) and
# what every preset gets from its defaults: ADA on (target 0.6, 'bgc'), mirror off, fp16 in 4.
OFFICIAL_PRESETS = {
    "stylegan2": dict(batch_size=32, mbstd_group_size=4, channel_base=32768, lr=0.002, r1_gamma=10.0, ema_kimg=10.0,
                      ema_rampup=None, mapping_layers=8),
    "paper256": dict(batch_size=64, mbstd_group_size=8, channel_base=16384, lr=0.0025, r1_gamma=1.0, ema_kimg=20.0,
                     ema_rampup=None, mapping_layers=8),
    "paper512": dict(batch_size=64, mbstd_group_size=8, channel_base=32768, lr=0.0025, r1_gamma=0.5, ema_kimg=20.0,
                     ema_rampup=None, mapping_layers=8),
    "paper1024": dict(batch_size=32, mbstd_group_size=4, channel_base=32768, lr=0.002, r1_gamma=2.0, ema_kimg=10.0,
                      ema_rampup=None, mapping_layers=8),
    "cifar": dict(batch_size=64, mbstd_group_size=32, channel_base=32768, lr=0.0025, r1_gamma=0.01, ema_kimg=500.0,
                  ema_rampup=0.05, mapping_layers=2, pl_weight=0.0, style_mixing_prob=0.0, resolution=32,
                  d_architecture="orig"),
    # auto at 256 px on one GPU: mb = max(min(1 * min(4096 // 256, 32), 64), 1) = 16
    "auto": dict(batch_size=16, mbstd_group_size=4, channel_base=16384, lr=0.0025, r1_gamma=0.0002 * 256**2 / 16,
                 ema_kimg=16 * 10 / 32, ema_rampup=0.05, mapping_layers=2),
}


@pytest.mark.parametrize("preset", sorted(OFFICIAL_PRESETS))
def test_presets_are_the_official_ones(preset, tmp_path):
    from helpers.train_utils import compose_train
    from omegaconf import OmegaConf

    cfg = compose_train(tmp_path, f"model={preset}", "data=shards", "data.shards=unused")
    model = OmegaConf.to_container(cfg.model, resolve=True)
    for key, value in OFFICIAL_PRESETS[preset].items():
        assert model[key] == pytest.approx(value) if value is not None else model[key] is None, (preset, key)
    assert model["ada_target"] == 0.6 and model["augment_kwargs"] is None  # --aug=ada, --augpipe=bgc
    assert (model["r1_interval"], model["pl_interval"], model["channel_max"], model["conv_clamp"]) == (16, 4, 512, 256)
    assert model["num_fp16_res"] == 4 and model["betas"] == [0.0, 0.99] and model["eps"] == 1e-8
    assert cfg.data.xflip is False  # --mirror off
    off = compose_train(tmp_path, f"model={preset}", "model.ada_target=null")
    assert off.model.ada_target is None


def test_summary_paper1024_prints_the_official_counts(capsys):
    from lightning_gans.cli import main

    assert main(["summary", "model=paper1024"]) == 0
    last = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert (last["G"], last["D"], last["resolution"]) == (30_370_060, 29_012_513, 1024)
