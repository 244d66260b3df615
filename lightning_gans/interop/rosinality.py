"""rosinality/stylegan2-pytorch checkpoints (`train.py`: g, d, g_ema, args; `convert_weight.py`: g_ema,
latent_avg) to our StyleGAN2 networks and back.

It is the same function as config-F StyleGAN2 with other names and layouts: ModulatedConv2d
weights carry a leading batch axis [1, O, I, k, k], the FusedLeakyReLU bias sits in `activate`,
noise strengths are [1] and noise maps [1, 1, r, r] buffers (`noises.noise_i`), the constant input
is [1, C, 4, 4], and toRGB biases are [1, C, 1, 1]. Blur kernels are the fixed [1, 3, 3, 1] filter
(checked, not copied). Widths are read from tensor shapes, never from size/channel_multiplier,
and there is no activation clamping (conv_clamp=None) and no float16 (num_fp16_res=0): rosinality's
code trains in float32. Exporting a model with a conv_clamp keeps the weights; rosinality's code
does not clamp, so its outputs differ where an activation reached the clamp.
"""

from __future__ import annotations

import math
import re

import torch

from ..errors import CheckpointError
from ..ops.upfirdn2d import setup_filter
from .sg2ada import infer_channel_base_max

# (rosinality key, our key, layout): layouts say how a rosinality tensor differs from ours.
Table = list[tuple[str, str, str]]


def is_generator(sd: dict) -> bool:
    return isinstance(sd, dict) and "style.1.weight" in sd and "input.input" in sd


def is_discriminator(sd: dict) -> bool:
    return isinstance(sd, dict) and "final_linear.0.weight" in sd and "convs.0.0.weight" in sd


def _styled(r: str, o: str, noise: str) -> Table:
    return [(f"{r}.conv.weight", f"{o}.weight", "lead1"), (f"{r}.conv.modulation.weight", f"{o}.affine.weight", ""),
            (f"{r}.conv.modulation.bias", f"{o}.affine.bias", ""), (f"{r}.noise.weight", f"{o}.noise_strength", "vec1"),
            (f"{r}.activate.bias", f"{o}.bias", ""), (noise, f"{o}.noise_const", "noise")]


def _torgb(r: str, o: str) -> Table:
    return [(f"{r}.conv.weight", f"{o}.weight", "lead1"), (f"{r}.conv.modulation.weight", f"{o}.affine.weight", ""),
            (f"{r}.conv.modulation.bias", f"{o}.affine.bias", ""), (f"{r}.bias", f"{o}.bias", "bias4d")]


def generator_table(n_mlp: int, resolution: int) -> Table:
    t: Table = []
    for i in range(n_mlp):  # style.0 is PixelNorm
        t += [(f"style.{i + 1}.{p}", f"mapping.fc{i}.{p}", "") for p in ("weight", "bias")]
    t.append(("input.input", "synthesis.b4.const", "lead1"))
    t += _styled("conv1", "synthesis.b4.conv1", "noises.noise_0") + _torgb("to_rgb1", "synthesis.b4.torgb")
    for i in range(int(math.log2(resolution)) - 2):
        res = 2 ** (i + 3)
        t += _styled(f"convs.{2 * i}", f"synthesis.b{res}.conv0", f"noises.noise_{2 * i + 1}")
        t += _styled(f"convs.{2 * i + 1}", f"synthesis.b{res}.conv1", f"noises.noise_{2 * i + 2}")
        t += _torgb(f"to_rgbs.{i}", f"synthesis.b{res}.torgb")
    return t


def discriminator_table(resolution: int) -> Table:
    t: Table = [("convs.0.0.weight", f"b{resolution}.fromrgb.weight", ""),
                ("convs.0.1.bias", f"b{resolution}.fromrgb.bias", "")]
    for j in range(1, int(math.log2(resolution)) - 1):
        r, o = f"convs.{j}", f"b{resolution >> (j - 1)}"
        t += [(f"{r}.conv1.0.weight", f"{o}.conv0.weight", ""), (f"{r}.conv1.1.bias", f"{o}.conv0.bias", ""),
              (f"{r}.conv2.1.weight", f"{o}.conv1.weight", ""), (f"{r}.conv2.2.bias", f"{o}.conv1.bias", ""),
              (f"{r}.skip.1.weight", f"{o}.skip.weight", "")]
    t += [("final_conv.0.weight", "b4.conv.weight", ""), ("final_conv.1.bias", "b4.conv.bias", ""),
          ("final_linear.0.weight", "b4.fc.weight", ""), ("final_linear.0.bias", "b4.fc.bias", ""),
          ("final_linear.1.weight", "b4.out.weight", ""), ("final_linear.1.bias", "b4.out.bias", "")]
    return t


# Blur kernels: upsampling ones are the normalized filter times 4 (the gain of 2x upsampling).
def _g_kernels(resolution: int) -> dict[str, float]:
    n = int(math.log2(resolution)) - 2
    return {k: 4.0 for i in range(n) for k in (f"convs.{2 * i}.conv.blur.kernel", f"to_rgbs.{i}.upsample.kernel")}


def _d_kernels(resolution: int) -> dict[str, float]:
    n = int(math.log2(resolution)) - 2
    return {f"convs.{j}.{p}.0.kernel": 1.0 for j in range(1, n + 1) for p in ("conv2", "skip")}


def generator_shape(sd: dict) -> tuple[int, int]:
    """(n_mlp, resolution) of a rosinality generator state dict."""
    n_mlp = len([k for k in sd if re.fullmatch(r"style\.\d+\.weight", k)])
    n_rgbs = len([k for k in sd if re.fullmatch(r"to_rgbs\.\d+\.conv\.weight", k)])
    return n_mlp, 2 ** (n_rgbs + 2)


def hparams(g_sd: dict, d_sd: dict | None, name: str = "rosinality-import") -> dict:
    """StyleGAN2Module hyper-parameters of a rosinality generator (+ discriminator)."""
    if not is_generator(g_sd):
        raise CheckpointError("not a rosinality StyleGAN2 generator state dict (no style.1.weight / input.input)")
    n_mlp, R = generator_shape(g_sd)
    ch = {4: g_sd["input.input"].shape[1]}
    ch.update({2 ** (i + 3): g_sd[f"convs.{2 * i}.conv.weight"].shape[1] for i in range(int(math.log2(R)) - 2)})
    base, cmax = infer_channel_base_max(ch, "rosinality generator")
    if d_sd is not None:
        d_ch = {R: d_sd["convs.0.0.weight"].shape[0], 4: d_sd["final_conv.0.weight"].shape[0]}
        d_ch.update({R >> (j - 1): d_sd[f"convs.{j}.conv1.0.weight"].shape[0] for j in range(1, int(math.log2(R)) - 1)})
        if d_ch != {r: min(base // r, cmax) for r in d_ch}:
            raise CheckpointError(f"rosinality discriminator widths {d_ch} differ from the generator's {ch}; "
                                  "this project builds both from one channel table")
    w_dim = g_sd["style.1.weight"].shape[0]
    return dict(resolution=R, z_dim=w_dim, w_dim=w_dim, c_dim=0, img_channels=g_sd["to_rgb1.conv.weight"].shape[1],
                mapping_layers=n_mlp, mapping_lr_multiplier=0.01, w_avg_beta=0.995, channel_base=base,
                channel_max=cmax, conv_clamp=None, num_fp16_res=0, mbstd_group_size=4, mbstd_num_channels=1,
                name=name)


def _check_kernels(sd: dict, kernels: dict[str, float], what: str) -> None:
    f = setup_filter([1, 3, 3, 1])
    for key, gain in kernels.items():
        if key in sd and not torch.allclose(sd[key].float(), f * gain, atol=1e-6):
            raise CheckpointError(f"{what}: blur kernel {key} is not the [1,3,3,1] filter this project implements")


def to_ours(sd: dict, table: Table, own: dict[str, torch.Tensor], kernels: dict[str, float], what: str) -> dict:
    """Our state dict: `own` (a freshly built network's, for filters/w_avg) with every table entry from `sd`."""
    _check_kernels(sd, kernels, what)
    out = dict(own)
    missing = [r for r, _, layout in table if r not in sd and layout != "noise"]
    if missing:
        raise CheckpointError(f"{what}: missing {missing[:4]} (not a complete rosinality state dict)")
    known = {r for r, _, _ in table} | set(kernels)
    extra = [k for k in sd if k not in known]
    if extra:
        raise CheckpointError(f"{what}: unexpected keys {extra[:4]}; the layout differs from the one implemented")
    for r, o, _ in table:
        if r in sd:  # noise maps are optional (older files did not register them)
            t = sd[r].detach()
            if t.numel() != own[o].numel():
                raise CheckpointError(f"{what}: {r} has shape {tuple(t.shape)}, expected {tuple(own[o].shape)} values")
            out[o] = t.reshape(own[o].shape).clone().float()
    return out


def from_ours(sd: dict, table: Table, kernels: dict[str, float]) -> dict:
    """Rosinality-named state dict from ours (blur kernels written back)."""
    out = {}
    for r, o, layout in table:
        t = sd[o].detach().cpu()
        if layout == "lead1":
            t = t[None]
        elif layout == "vec1":
            t = t.reshape(1)
        elif layout == "bias4d":
            t = t.reshape(1, -1, 1, 1)
        elif layout == "noise":
            t = t[None, None]
        out[r] = t.clone()
    f = setup_filter([1, 3, 3, 1])
    out.update({k: f * gain for k, gain in kernels.items()})
    return out


def g_to_ours(sd: dict, own: dict, what: str = "rosinality g_ema") -> dict:
    n_mlp, R = generator_shape(sd)
    return to_ours(sd, generator_table(n_mlp, R), own, _g_kernels(R), what)


def d_to_ours(sd: dict, own: dict, resolution: int, what: str = "rosinality d") -> dict:
    return to_ours(sd, discriminator_table(resolution), own, _d_kernels(resolution), what)


def g_from_ours(sd: dict, n_mlp: int, resolution: int) -> dict:
    return from_ours(sd, generator_table(n_mlp, resolution), _g_kernels(resolution))


def d_from_ours(sd: dict, resolution: int) -> dict:
    return from_ours(sd, discriminator_table(resolution), _d_kernels(resolution))


@torch.no_grad()
def mean_latent(mapping: torch.nn.Module, n: int = 4096, seed: int = 0) -> torch.Tensor:
    """Mean w over n seeded z (what rosinality's g.mean_latent computes), for truncation when a
    checkpoint stores no latent average."""
    g = torch.Generator().manual_seed(seed)
    z = torch.randn([n, mapping.z_dim], generator=g)
    return mapping(z, None, update_w_avg=False)[:, 0].mean(0)
