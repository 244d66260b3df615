"""trainer.precision for every GAN (bf16-mixed runs and resumes, 16-mixed is refused in one line)
and the kernels in float16/bfloat16 against float64 (CPU: the reference paths; CUDA: the compiled
kernels, skipped without a GPU)."""

import math

import pytest
import pytorch_lightning as pl
import torch

from lightning_gans.errors import ConfigError
from lightning_gans.ops import bias_act, setup_filter, upfirdn2d
from lightning_gans.ops.scaled_bias_act import scaled_bias_act

N = 10  # checkpoint every N iterations, 2 N in all; the resumed run continues from step N
COMMON = ["logger=csv", "trainer.enable_progress_bar=false", "trainer.log_every_n_steps=1",
          f"callbacks.checkpoint.every_n_train_steps={N}", f"trainer.max_steps={2 * N}"]
GANS = {
    "stylegan2": (["experiment=demo", "callbacks.samples.every_n_steps=0", "model.r1_interval=4", "model.batch_size=4",
                   "model.channel_base=512", "model.channel_max=16",
                   "model.pl_interval=2"], ("loss/G_main", "loss/D_main", "reg/r1_penalty", "reg/pl_penalty")),
    "stylegan": (["experiment=stylegan_demo", "callbacks.samples.every_n_steps=0", "model.fmap_base=64",
                  "model.fmap_max=16", "model.z_dim=32", "model.w_dim=32", "model.stable_kimg=0.032",
                  "model.fade_kimg=0.032", "model.minibatch_dict={8: 8, 16: 4, 32: 4}", "model.minibatch_base=4"],
                 ("loss/G_main", "loss/D_main")),
    "stargan_v2": (["experiment=stargan_v2_demo", "callbacks.stargan_samples=null", "model.max_conv_dim=16",
                    "model.base_dim=8", "model.style_dim=16", "model.latent_dim=8",
                    "model.batch_size=2", "model.ds_iter=20"], ("loss/G_ref", "loss/D_ref", "loss/G_latent")),
}

pytestmark = pytest.mark.usefixtures("one_thread")


class LowPrecisionSeen(pl.Callback):
    """Records the dtypes of the tensors the networks' modules return during training steps."""

    def __init__(self):
        self.dtypes: set[torch.dtype] = set()
        self.handles = []

    def on_train_start(self, trainer, pl_module):
        def hook(mod, args, out):
            if torch.is_tensor(out):
                self.dtypes.add(out.dtype)
        for net in pl_module.networks().values():
            self.handles += [m.register_forward_hook(hook) for m in net.modules()]

    def on_train_end(self, trainer, pl_module):
        for h in self.handles:
            h.remove()


@pytest.mark.slow
@pytest.mark.parametrize("gan", sorted(GANS))
def test_bf16_mixed_trains_finite_and_resumes(gan, tmp_path, caplog):
    from helpers.train_utils import RestoreCheck, read_metrics, series, train  # Hydra: only for these runs

    from lightning_gans.checkpoint import safe_load
    from lightning_gans.nn.precision import cpu_bf16_slow_note

    overrides, keys = GANS[gan]
    args = [*overrides, *COMMON, "trainer.precision=bf16-mixed"]
    seen = LowPrecisionSeen()
    full = tmp_path / "full"
    with caplog.at_level("WARNING", logger="lightning_gans.train"):
        out = train(full, *args, callbacks=[seen])
    assert out["global_step"] == 2 * N
    # a CPU without native bfloat16 (this project's test VM) is told that float32 is faster
    slow = [r.getMessage() for r in caplog.records if "no native bfloat16" in r.getMessage()]
    assert len(slow) == (cpu_bf16_slow_note() is not None), slow
    assert torch.bfloat16 in seen.dtypes and torch.float32 in seen.dtypes  # autocast really ran
    rows = read_metrics(full)
    for key in keys:
        values = series(rows, key)
        assert values and all(math.isfinite(v) for v in values.values()), key
    assert len(series(rows, keys[0])) == 2 * N
    ckpt_path = full / "checkpoints" / f"step{N:07d}.ckpt"
    saved = safe_load(ckpt_path)
    low = (torch.bfloat16, torch.float16)
    for k, v in saved["state_dict"].items():  # weights and buffers (w_avg, pl_mean) keep their dtype
        assert v.dtype not in low and (not k.endswith((".weight", ".bias", "w_avg")) or v.dtype == torch.float32), k
    for opt in saved["optimizer_states"]:
        for st in opt["state"].values():
            assert all(t.dtype == torch.float32 for t in st.values() if torch.is_tensor(t) and t.ndim > 0)

    check = RestoreCheck(saved)
    train(tmp_path / "resumed", *args, f"ckpt_path={ckpt_path}", callbacks=[check])
    assert check.result == {"model": True, "optim": True, "step": N}
    a, b = rows, read_metrics(tmp_path / "resumed")
    for key in keys:
        sa, sb = series(a, key), series(b, key)
        assert sb, key
        for step, value in sb.items():  # the same computation continues where it stopped
            assert value == pytest.approx(sa[step], rel=1e-4, abs=1e-5), (key, step)


def test_16_mixed_is_refused_in_one_line():
    """float16 autocast (what 16-mixed is on a GPU; on the CPU Lightning itself swaps in
    bf16-mixed) stops the first training forward of every GAN with one line."""
    from lightning_gans.models import stargan_v2, stylegan2
    from lightning_gans.models.stylegan import Generator as V1Generator

    G2 = stylegan2.Generator(z_dim=8, w_dim=8, img_resolution=8, channel_base=64, channel_max=8,
                             mapping_kwargs=dict(num_layers=1))
    G1 = V1Generator(z_dim=8, w_dim=8, img_resolution=8, fmap_base=32, fmap_max=8, mapping_layers=1)
    D3 = stargan_v2.Discriminator(img_size=16, num_domains=2, max_conv_dim=8, dim_in=8)
    calls = [(lambda: G2(torch.randn(2, 8)), True), (lambda: G1(torch.randn(2, 8)), False),
             (lambda: D3(torch.randn(2, 3, 16, 16), torch.tensor([0, 1])), True)]
    for call, float32_out in calls:
        with torch.autocast("cpu", dtype=torch.bfloat16):
            out = call()  # bf16: runs (float32 outputs where the model converts them)
        assert torch.isfinite(out).all() and (out.dtype == torch.float32 or not float32_out)
        with pytest.raises(ConfigError) as e, torch.autocast("cpu", dtype=torch.float16):
            call()
        assert "16-mixed" in str(e.value) and "bf16-mixed" in str(e.value) and "\n" not in str(e.value)
    G2.eval()
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.float16):
        assert torch.isfinite(G2(torch.randn(2, 8))).all()  # inference is not training: allowed


# ----------------------------------------------------------------------------- kernels, low precision
LOW = [torch.float16, torch.bfloat16]


@pytest.fixture(params=["cpu", "cuda"])
def device(request):
    if request.param == "cuda" and not torch.cuda.is_available():
        pytest.skip("no GPU visible (the CUDA sources are compiled by test_jit.py)")
    return torch.device(request.param)


def _impl(device):
    return "compiled" if device.type == "cuda" else "ref"  # the CPU kernels take float32/64 only


def _ulps(got, want, dtype):
    """max |got - want| in units of the dtype's spacing at the output's scale."""
    eps = torch.finfo(dtype).eps
    return ((got.double() - want).abs().max() / (eps * max(1.0, want.abs().max().item()))).item()


@pytest.mark.parametrize("dtype", LOW, ids=str)
@pytest.mark.parametrize("kw", [dict(up=2, padding=[2, 1, 2, 1], gain=4), dict(down=2, padding=1),
                                dict(padding=[2, 1, 2, 1]), dict(up=2, down=2, padding=3),
                                dict(up=[1, 2], down=[2, 1], padding=[1, 2, 0, 3])], ids=str)
def test_upfirdn2d_low_precision_vs_float64(device, dtype, kw):
    torch.manual_seed(0)
    x = (torch.randn(2, 5, 16, 17, device=device) * 3).to(dtype).requires_grad_()
    for f in (setup_filter([1, 3, 3, 1]), setup_filter([1, 3, 3, 1], separable=True), torch.randn(3, 4)):
        f = f.to(device)
        got = upfirdn2d(x, f, impl=_impl(device), **kw)
        want = upfirdn2d(x.detach().double(), f.double(), impl="ref", **kw)
        assert got.dtype == dtype and got.shape == want.shape
        # float accumulation, one rounding at the end: within one ulp
        assert _ulps(got, want, dtype) <= 1.0
        g = torch.randn_like(want)
        (gx,) = torch.autograd.grad(got, x, g.to(dtype))
        x64 = x.detach().double().requires_grad_()
        (gx_want,) = torch.autograd.grad(upfirdn2d(x64, f.double(), impl="ref", **kw), x64, g.to(dtype).double())
        assert gx.dtype == dtype and _ulps(gx, gx_want, dtype) <= 1.0


@pytest.mark.parametrize("dtype", LOW, ids=str)
@pytest.mark.parametrize("act", ["linear", "lrelu", "tanh", "swish"])
def test_bias_act_low_precision_vs_float64(device, dtype, act):
    torch.manual_seed(1)
    x = (torch.randn(4, 8, 6, 5, device=device) * 3).to(dtype)
    b = torch.randn(8, device=device).to(dtype)
    for clamp in (None, 0.8):
        got = bias_act(x, b, act=act, clamp=clamp, impl=_impl(device))
        want = bias_act(x.double(), b.double(), act=act, clamp=clamp, impl="ref")
        assert got.dtype == dtype
        assert _ulps(got, want, dtype) <= 4.0, (act, clamp)  # a few roundings on the way
        if clamp is not None:
            assert got.abs().max().item() <= clamp * (1 + torch.finfo(dtype).eps)
    # the default dispatch never fails on low precision (CPU: the reference path)
    assert bias_act(x, b, act=act).dtype == dtype


@pytest.mark.parametrize("dtype", LOW, ids=str)
def test_scaled_bias_act_low_precision_vs_float64(device, dtype):
    torch.manual_seed(2)
    x = torch.randn(3, 6, 5, 5, device=device).to(dtype)
    scale, noise, b = torch.rand(3, 6, device=device) + 0.5, torch.randn(3, 1, 5, 5, device=device), torch.randn(6)
    b = b.to(device)
    got = scaled_bias_act(x, scale, noise, b, act="lrelu", clamp=1.5)
    want = scaled_bias_act(x.double(), scale.double(), noise.double(), b.double(), act="lrelu", clamp=1.5,
                           impl="ref")
    assert got.dtype == dtype and _ulps(got, want, dtype) <= 6.0


def test_v1_outputs_stay_float32_under_bf16_autocast():
    """StyleGAN v1 under bf16-mixed: images and logits float32 (the losses reduce float32)."""
    from lightning_gans.models.stylegan import Discriminator as V1D
    from lightning_gans.models.stylegan import Generator as V1G

    torch.manual_seed(0)
    G = V1G(z_dim=16, w_dim=16, img_resolution=16, mapping_layers=2, fmap_base=64, fmap_max=16)
    D = V1D(img_resolution=16, fmap_base=64, fmap_max=16)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        img = G(torch.randn(2, 16), None)
        logits = D(img)
    assert img.dtype == torch.float32 and logits.dtype == torch.float32
    assert torch.isfinite(logits).all()
