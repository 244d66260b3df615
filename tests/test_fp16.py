"""num_fp16_res: the official mixed precision of StyleGAN2 (float16 in the highest resolutions of G
and D, conv_clamp on every conv activation and toRGB), checked on the CPU with the float16 path
forced (fp16_on_cpu=True) against the float32 computation of the same converted official weights."""

import json
import math

import numpy as np
import pytest
import torch
from helpers.parity_utils import parity_dir

from lightning_gans.interop import sg2ada
from lightning_gans.models.stylegan2 import Generator
from lightning_gans.models.stylegan2_discriminator import Discriminator
from lightning_gans.nn import Conv2dLayer, SynthesisLayer, ToRGBLayer
from lightning_gans.nn.precision import block_dtype, fp16_resolutions

PARITY = parity_dir()
needs_parity = pytest.mark.skipif(PARITY is None, reason="parity fixtures not found (set LG_PARITY_DIR)")
FP16_EPS = float(torch.finfo(torch.float16).eps)  # 2**-10


def test_fp16_resolutions_follow_the_official_rule():
    # max(2 ** (log2(R) + 1 - N), 8): the N highest resolutions, never 4x4
    assert fp16_resolutions(1024, 4) == [128, 256, 512, 1024]
    assert fp16_resolutions(256, 4) == [32, 64, 128, 256]
    assert fp16_resolutions(32, 4) == [8, 16, 32]
    assert fp16_resolutions(32, 1) == [32]
    assert fp16_resolutions(32, 0) == []
    with pytest.raises(ValueError, match="num_fp16_res"):
        fp16_resolutions(32, -1)
    cpu, gpu = torch.device("cpu"), torch.device("cuda")  # no GPU needed: only the rule
    assert block_dtype(True, cpu) == torch.float32  # CPU: float32 unless asked
    assert block_dtype(True, cpu, fp16_on_cpu=True) == torch.float16
    assert block_dtype(True, cpu, force_fp32=True, fp16_on_cpu=True) == torch.float32
    assert block_dtype(True, gpu) == torch.float16 and block_dtype(False, gpu) == torch.float32


def _fixture():
    """(hp, G_ema state dict, D state dict, ref, num_fp16_res) of the sg2ada fixture; the
    precision settings come from its recorded kwargs, num_fp16_res raised to cover every block
    that can run in float16 (the official keeps the same weights; only the compute dtype differs)."""
    p = PARITY / "sg2ada"
    kw = json.loads((p / "kwargs.json").read_text())
    hp = sg2ada.hparams_from_official(kw["G"]["init_kwargs"], kw["D"]["init_kwargs"])
    assert hp["conv_clamp"] == kw["G"]["init_kwargs"]["synthesis_kwargs"]["conv_clamp"]
    G_sd = {k: torch.from_numpy(v) for k, v in np.load(p / "G_ema.npz").items()}
    D_sd = {k: torch.from_numpy(v) for k, v in np.load(p / "D.npz").items()}
    ref = {k: torch.from_numpy(v) for k, v in np.load(p / "ref.npz").items()}
    n = len([r for r in kw["derived"]["block_resolutions"] if r >= 8])
    return hp, G_sd, D_sd, ref, n


def _networks(hp, G_sd, D_sd, **precision):
    G_kwargs, D_kwargs = sg2ada.module_kwargs({**hp, **precision})
    G = Generator(**G_kwargs)
    sg2ada.load_strict(G, G_sd, "G_ema")
    D = Discriminator(**D_kwargs)
    sg2ada.load_strict(D, {k: v for k, v in D_sd.items() if not sg2ada.is_official_block_filter(k)}, "D")
    return G.eval().requires_grad_(False), D.eval().requires_grad_(False)


def _record_dtypes(net, types):
    seen = []
    for m in net.modules():
        if isinstance(m, types):
            m.register_forward_hook(lambda mod, args, out: seen.append(out.dtype))
    return seen


@needs_parity
def test_converted_fixture_fp16_blocks_within_float16_tolerance_and_exact_when_off():
    hp, G_sd, D_sd, ref, n = _fixture()
    assert n > 0
    G32, D32 = _networks(hp, G_sd, D_sd, num_fp16_res=0)
    Goff, Doff = _networks(hp, G_sd, D_sd, num_fp16_res=n)  # on the CPU: float32 unless asked
    G16, D16 = _networks(hp, G_sd, D_sd, num_fp16_res=n, fp16_on_cpu=True)
    assert G16.synthesis.fp16_resolutions == fp16_resolutions(hp["resolution"], n) != []
    z = ref["z"]
    with torch.no_grad():
        img32 = G32(z, None, noise_mode="const")
        torch.testing.assert_close(img32, ref["img_psi1"], rtol=0, atol=1e-4)  # the official fp32 output
        img_off = Goff(z, None, noise_mode="const")
        seen = _record_dtypes(G16, (SynthesisLayer, ToRGBLayer))
        img16 = G16(z, None, noise_mode="const")
        img_forced = G16(z, None, noise_mode="const", force_fp32=True)
        logits32, logits_off = D32(ref["img_psi1"]), Doff(ref["img_psi1"])
        seen_d = _record_dtypes(D16, (Conv2dLayer,))
        logits16 = D16(ref["img_psi1"])
    # off: bit for bit the float32 computation
    assert torch.equal(img_off, img32) and torch.equal(img_forced, img32) and torch.equal(logits_off, logits32)
    # on: the fp16 blocks really ran in float16 and the outputs are float32 ...
    assert torch.float16 in seen and torch.float32 in seen  # b4 stays float32
    assert torch.float16 in seen_d and torch.float32 in seen_d  # D's epilogue stays float32
    assert img16.dtype == torch.float32 and logits16.dtype == torch.float32
    # ... within what float16 allows: a few float16 ulps of the output range, not bitwise
    scale = ref["img_psi1"].abs().max().item()
    err = (img16 - img32).abs().max().item()
    assert 0 < err < 8 * FP16_EPS * scale, (err, scale)  # measured: ~2 ulps
    assert (img16 - img32).abs().mean().item() < 0.5 * FP16_EPS * scale  # measured: ~0.2
    d_err = (logits16 - logits32).abs().max().item()
    assert 0 < d_err < 4 * FP16_EPS * max(1.0, logits32.abs().max().item()), d_err


def _clamp_hooks(net, bounds):
    """Record (max |output|, conv_clamp * gain) of every clamped layer call."""
    def hook(mod, args, kwargs, out):
        gain = kwargs.get("gain", 1)  # every caller passes a gain by keyword
        bounds.append((out.abs().max().item(), mod.conv_clamp * gain, out.dtype))
    for m in net.modules():
        if isinstance(m, (SynthesisLayer, ToRGBLayer, Conv2dLayer)) and m.conv_clamp is not None:
            m.register_forward_hook(hook, with_kwargs=True)


@pytest.mark.parametrize("fp16_on_cpu", [False, True])
def test_clamping_holds_every_conv_activation(fp16_on_cpu):
    torch.manual_seed(0)
    clamp = 0.25  # small enough that it binds on every kind of layer (checked below)
    kw = dict(img_resolution=16, channel_base=256, channel_max=16, conv_clamp=clamp, num_fp16_res=2,
              fp16_on_cpu=fp16_on_cpu)
    G = Generator(z_dim=16, w_dim=16, mapping_kwargs=dict(num_layers=2), **kw).eval()
    D = Discriminator(**kw)
    bounds = []
    _clamp_hooks(G, bounds)
    _clamp_hooks(D, bounds)
    with torch.no_grad():
        img = G(torch.randn(4, 16), noise_mode="random")
        D(img)
    n_layers = sum(1 for m in [*G.modules(), *D.modules()]
                   if isinstance(m, (SynthesisLayer, ToRGBLayer, Conv2dLayer)) and m.conv_clamp is not None)
    assert len(bounds) == n_layers > 10
    for got, bound, _ in bounds:
        assert got <= bound * (1 + FP16_EPS), (got, bound)
    # the clamp binds: most layers reach their bound, including D's sqrt(1/2)-gain convs
    reached = [b for got, b, _ in bounds if got >= b * (1 - 2 * FP16_EPS)]
    assert len(reached) >= n_layers // 2
    assert any(math.isclose(b, clamp * math.sqrt(0.5)) for b in reached)
    assert (torch.float16 in {d for *_, d in bounds}) == fp16_on_cpu


def test_training_step_in_fp16_blocks_keeps_params_and_optimizer_state_float32():
    from lightning_gans.modules.common import set_requires_grad
    from lightning_gans.modules.stylegan2 import StyleGAN2Module

    torch.manual_seed(0)
    m = StyleGAN2Module(resolution=16, z_dim=32, w_dim=32, mapping_layers=2, channel_base=256, channel_max=16,
                        num_fp16_res=2, fp16_on_cpu=True, batch_size=4, style_mixing_prob=0.9)
    assert m.G.synthesis.fp16_resolutions == [8, 16] and m.D.fp16_resolutions == [8, 16]
    assert m.model_config()["G_kwargs"]["num_fp16_res"] == 2 and m.model_config()["D_kwargs"]["fp16_on_cpu"]
    opt_g, opt_d = m.configure_optimizers()
    real = torch.rand(4, 3, 16, 16) * 2 - 1
    seen_g, seen_d = _record_dtypes(m.G, (SynthesisLayer,)), _record_dtypes(m.D, (Conv2dLayer,))
    before = {k: v.clone() for k, v in m.state_dict().items()}

    def step(opt, net, loss):
        assert loss.dtype == torch.float32 and torch.isfinite(loss)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        for p in net.parameters():
            if p.grad is not None:
                assert p.grad.dtype == torch.float32 and torch.isfinite(p.grad).all()
        opt.step()

    set_requires_grad(m.G, True), set_requires_grad(m.D, False)
    step(opt_g, m.G, m.loss.g_main(torch.randn(4, 32), None)[0])
    step(opt_g, m.G, m.loss.g_pl(torch.randn(4, 32), None, gain=4)[0])
    set_requires_grad(m.G, False), set_requires_grad(m.D, True)
    step(opt_d, m.D, m.loss.d_main(real, None, torch.randn(4, 32), None)[0])
    step(opt_d, m.D, m.loss.d_r1(real, None, gain=16)[0])
    assert torch.float16 in seen_g and torch.float16 in seen_d
    for name, t in m.state_dict().items():
        if t.is_floating_point():
            assert t.dtype == torch.float32, name
    for opt in (opt_g, opt_d):
        states = list(opt.state.values())
        assert states
        for st in states:
            for k, v in st.items():
                if torch.is_tensor(v) and v.is_floating_point():
                    assert v.dtype == torch.float32, k
    for net in ("G.synthesis.b16.conv1.weight", "D.b16.conv0.weight", "G.mapping.fc0.weight"):
        assert not torch.equal(before[net], m.state_dict()[net]), net  # the steps trained them
    assert m.loss.pl_mean.dtype == torch.float32 and m.loss.pl_mean.item() > 0
    assert m.G.mapping.w_avg.dtype == torch.float32 and m.G.mapping.w_avg.abs().sum() > 0


def test_official_kwargs_round_trip_keeps_precision():
    hp = dict(resolution=64, z_dim=32, w_dim=32, c_dim=0, img_channels=3, mapping_layers=2,
              mapping_lr_multiplier=0.01, w_avg_beta=0.995, channel_base=512, channel_max=64, conv_clamp=256,
              num_fp16_res=3, mbstd_group_size=8, mbstd_num_channels=1, name="x")
    kw = sg2ada.official_kwargs(hp)
    assert kw["G"]["synthesis_kwargs"]["num_fp16_res"] == 3 and kw["D"]["conv_clamp"] == 256
    assert sg2ada.hparams_from_official(kw["G"], kw["D"], name="x") == hp
    # state dicts alone: the official training defaults, paired as train.py pairs them
    G = Generator(**sg2ada.module_kwargs(hp)[0])
    assert sg2ada.hparams_from_state_dicts(G.state_dict(), None)["num_fp16_res"] == 4
    assert sg2ada.hparams_from_state_dicts(G.state_dict(), None, conv_clamp=None)["num_fp16_res"] == 0
