"""Official TensorFlow StyleGAN2 networks (NVlabs/stylegan2 `G_main` / `D_stylegan2`, state version 4:
`stylegan2-*-config-f.pkl`, TF `network-snapshot-*.pkl`) to our StyleGAN2 networks.

Config F is the function of models/stylegan2.py (skip G, resnet D) with other names and layouts:
conv weights [kh, kw, in, out] (the up-conv's kernel spatially flipped: TF's upsample_conv_2d is a
transposed conv), dense weights [in, out], modulation biases stored without the +1 that TF adds at
run time, noise maps `noiseN` [1, 1, r, r] of the synthesis network, scalar noise strengths,
`dlatent_avg` as w_avg. Gains are the same (equalized lr, bias after the activation gain). The TF
variables are renamed onto the official StyleGAN2-ADA names that our models use and loaded with
sg2ada.build_networks, so G, D and G_ema = Gs share one loading path with the PyTorch pickles.
"""

from __future__ import annotations

import numpy as np

from ..errors import CheckpointError
from ..models.stylegan2 import Generator
from ..models.stylegan2_discriminator import Discriminator
from . import sg2ada
from .tf_pickle import TFNetwork, check_kwargs, fill_state_dict, in_out, kh_kw_in_out, network_kwargs

# static_kwargs of G_main (and what it passes to G_mapping / G_synthesis_stylegan2) with their
# defaults; None marks settings that do not change the function (graph/runtime switches).
G_KNOWN = {
    "num_channels": 3, "resolution": 1024, "label_size": 0, "fmap_base": 16 << 10, "fmap_decay": 1.0,
    "fmap_min": 1, "fmap_max": 512, "latent_size": 512, "dlatent_size": 512, "mapping_layers": 8,
    "mapping_fmaps": 512, "mapping_lrmul": 0.01, "mapping_nonlinearity": "lrelu", "normalize_latents": True,
    "architecture": "skip", "nonlinearity": "lrelu", "resample_kernel": [1, 3, 3, 1],
    "truncation_psi": 0.5, "truncation_cutoff": None, "truncation_psi_val": None, "truncation_cutoff_val": None,
    "dlatent_avg_beta": 0.995, "style_mixing_prob": 0.9, "dlatent_broadcast": None,
    "fused_modconv": None, "randomize_noise": None, "dtype": "float32", "is_template_graph": None,
    "mapping_func": "G_mapping", "synthesis_func": "G_synthesis_stylegan2", "structure": None,
    "return_dlatents": None, "is_training": None, "is_validation": None, "components": None,
}
D_KNOWN = {
    "num_channels": 3, "resolution": 1024, "label_size": 0, "fmap_base": 16 << 10, "fmap_decay": 1.0,
    "fmap_min": 1, "fmap_max": 512, "architecture": "resnet", "nonlinearity": "lrelu", "mbstd_group_size": 4,
    "mbstd_num_features": 1, "resample_kernel": [1, 3, 3, 1], "dtype": "float32", "is_template_graph": None,
    "structure": None,
}
# Settings that must have one value here (our config F); the message names the file's value.
G_FIXED = {"label_size": 0, "fmap_decay": 1.0, "mapping_nonlinearity": "lrelu", "normalize_latents": True,
           "architecture": "skip", "nonlinearity": "lrelu", "resample_kernel": [1, 3, 3, 1], "dtype": "float32",
           "mapping_func": "G_mapping", "synthesis_func": "G_synthesis_stylegan2"}
D_FIXED = {"label_size": 0, "fmap_decay": 1.0, "architecture": "resnet", "nonlinearity": "lrelu",
           "resample_kernel": [1, 3, 3, 1], "dtype": "float32"}


def generator_kwargs(net: TFNetwork, what: str) -> dict:
    """G_main static_kwargs (with the components') and their defaults, checked."""
    kw = check_kwargs(network_kwargs(net), G_KNOWN, what, G_FIXED, "the official config F")
    if kw["mapping_fmaps"] != kw["dlatent_size"]:
        raise CheckpointError(f"{what}: mapping_fmaps={kw['mapping_fmaps']} differs from dlatent_size="
                              f"{kw['dlatent_size']}; only equal widths are implemented")
    return kw


def channel_table(kw: dict) -> tuple[int, int]:
    """(channel_base, channel_max) of ours for TF nf(stage) = clip(fmap_base / 2^stage, fmap_min, fmap_max)."""
    base = 2 * int(kw["fmap_base"])  # res 2^r has nf(r - 1) = fmap_base / 2^(r-1) = 2 fmap_base / res
    R = int(kw["resolution"])
    for r in range(2, R.bit_length()):
        nf = int(np.clip(int(kw["fmap_base"] / 2.0 ** (r - 1)), kw["fmap_min"], kw["fmap_max"]))
        if nf != min(base // 2**r, kw["fmap_max"]):
            raise CheckpointError(f"fmap_min={kw['fmap_min']} changes the width at {2**r} px; not implemented")
    return base, int(kw["fmap_max"])


def hparams(G: TFNetwork, D: TFNetwork | None, source: str) -> tuple[dict, dict]:
    """(StyleGAN2Module hyper-parameters, truncation defaults {psi, cutoff}) of a TF G_main / D_stylegan2."""
    gk = generator_kwargs(G, f"{source} {G.name}")
    base, cmax = channel_table(gk)
    mbstd = (4, 1)
    if D is not None:
        dk = check_kwargs(D.static_kwargs, D_KNOWN, f"{source} D", D_FIXED, "the official config F")
        for k in ("resolution", "num_channels"):
            if dk[k] != gk[k]:
                raise CheckpointError(f"{source}: D has {k}={dk[k]} but G {gk[k]}")
        if channel_table({**dk, "resolution": gk["resolution"]}) != (base, cmax):
            raise CheckpointError(f"{source}: D's fmap_base/fmap_max ({dk['fmap_base']}, {dk['fmap_max']}) differ "
                                  f"from G's ({gk['fmap_base']}, {gk['fmap_max']}); not implemented here")
        mbstd = (dk["mbstd_group_size"], dk["mbstd_num_features"])
    hp = dict(
        resolution=int(gk["resolution"]), z_dim=int(gk["latent_size"]), w_dim=int(gk["dlatent_size"]), c_dim=0,
        img_channels=int(gk["num_channels"]), mapping_layers=int(gk["mapping_layers"]),
        mapping_lr_multiplier=float(gk["mapping_lrmul"]),
        w_avg_beta=0.995 if gk["dlatent_avg_beta"] in (None, 1) else float(gk["dlatent_avg_beta"]),
        channel_base=base, channel_max=cmax, conv_clamp=None, mbstd_group_size=int(mbstd[0]),
        mbstd_num_channels=int(mbstd[1]), name="tf-stylegan2-import",
    )
    return hp, {"psi": gk["truncation_psi"], "cutoff": gk["truncation_cutoff"]}


def _flipped(a: np.ndarray) -> np.ndarray:
    return kh_kw_in_out(a[::-1, ::-1])


def _noise(a: np.ndarray) -> np.ndarray:
    return a.reshape(a.shape[-2:]) if a.ndim == 4 and a.shape[:2] == (1, 1) else a


def _log2(r: str) -> int:
    return int(r).bit_length() - 1


def generator_rules() -> list:
    ident = lambda a: a  # noqa: E731
    plus1 = lambda a: a + 1  # noqa: E731  TF adds 1 to the modulation at run time; sg2ada's bias holds it
    layer = {"weight": kh_kw_in_out, "bias": ident, "noise_strength": ident, "affine.weight": in_out,
             "affine.bias": plus1}
    tf_name = {"weight": "weight", "bias": "bias", "noise_strength": "noise_strength", "affine.weight": "mod_weight",
               "affine.bias": "mod_bias"}
    rules = [
        (r"mapping\.w_avg", lambda m: ("dlatent_avg", ident)),
        (r"mapping\.fc(\d+)\.weight", lambda m: (f"mapping/Dense{m[1]}/weight", in_out)),
        (r"mapping\.fc(\d+)\.bias", lambda m: (f"mapping/Dense{m[1]}/bias", ident)),
        (r"synthesis\.b4\.const", lambda m: ("synthesis/4x4/Const/const", lambda a: a[0])),
        (r"synthesis\.b4\.conv1\.noise_const", lambda m: ("synthesis/noise0", _noise)),
        (r"synthesis\.b(\d+)\.conv0\.noise_const", lambda m: (f"synthesis/noise{2 * _log2(m[1]) - 5}", _noise)),
        (r"synthesis\.b(\d+)\.conv1\.noise_const", lambda m: (f"synthesis/noise{2 * _log2(m[1]) - 4}", _noise)),
        (r"synthesis\.b(\d+)\.conv0\.weight", lambda m: (f"synthesis/{m[1]}x{m[1]}/Conv0_up/weight", _flipped)),
    ]
    for ours, tf in tf_name.items():
        esc = ours.replace(".", r"\.")
        rules += [
            (rf"synthesis\.b4\.conv1\.{esc}", lambda m, tf=tf, ours=ours: (f"synthesis/4x4/Conv/{tf}", layer[ours])),
            (rf"synthesis\.b(\d+)\.conv0\.{esc}",
             lambda m, tf=tf, ours=ours: (f"synthesis/{m[1]}x{m[1]}/Conv0_up/{tf}", layer[ours])),
            (rf"synthesis\.b(\d+)\.conv1\.{esc}",
             lambda m, tf=tf, ours=ours: (f"synthesis/{m[1]}x{m[1]}/Conv1/{tf}", layer[ours])),
        ]
        if ours != "noise_strength":
            rules.append((rf"synthesis\.b(\d+)\.torgb\.{esc}",
                          lambda m, tf=tf, ours=ours: (f"synthesis/{m[1]}x{m[1]}/ToRGB/{tf}", layer[ours])))
    return rules


def discriminator_rules(resolution: int) -> list:
    ident = lambda a: a  # noqa: E731
    R = str(resolution)
    return [
        (rf"b{R}\.fromrgb\.weight", lambda m: (f"{R}x{R}/FromRGB/weight", kh_kw_in_out)),
        (rf"b{R}\.fromrgb\.bias", lambda m: (f"{R}x{R}/FromRGB/bias", ident)),
        (r"b(\d+)\.conv0\.(weight|bias)",
         lambda m: (f"{m[1]}x{m[1]}/Conv0/{m[2]}", kh_kw_in_out if m[2] == "weight" else ident)),
        (r"b(\d+)\.conv1\.(weight|bias)",
         lambda m: (f"{m[1]}x{m[1]}/Conv1_down/{m[2]}", kh_kw_in_out if m[2] == "weight" else ident)),
        (r"b(\d+)\.skip\.weight", lambda m: (f"{m[1]}x{m[1]}/Skip/weight", kh_kw_in_out)),
        (r"b4\.conv\.(weight|bias)", lambda m: (f"4x4/Conv/{m[1]}", kh_kw_in_out if m[1] == "weight" else ident)),
        (r"b4\.fc\.(weight|bias)", lambda m: (f"4x4/Dense0/{m[1]}", in_out if m[1] == "weight" else ident)),
        (r"b4\.out\.(weight|bias)", lambda m: (f"Output/{m[1]}", in_out if m[1] == "weight" else ident)),
    ]


def convert(nets: dict[str, TFNetwork], source: str) -> tuple[dict, dict, dict[str, dict], dict | None]:
    """(hyper-parameters, truncation defaults, {'G', 'G_ema'} state dicts, D state dict or None)."""
    g_nets = {ours: nets[tf] for ours, tf in (("G", "G"), ("G_ema", "Gs")) if tf in nets}
    for n, net in [*g_nets.items(), *([("D", nets["D"])] if "D" in nets else [])]:
        want = "D_stylegan2" if n == "D" else "G_main"
        if net.build_func_name != want or net.version < 4:
            raise CheckpointError(f"{source}: network {net.name} is {net.build_func_name} (version {net.version}); "
                                  f"a StyleGAN2 file has {want}, version 4")
    G_any = g_nets.get("G_ema") or g_nets["G"]
    for net in g_nets.values():
        if set(net.components) != {"mapping", "synthesis"}:
            raise CheckpointError(f"{source}: {net.name} has components {sorted(net.components)}; expected "
                                  "mapping and synthesis")
    hp, trunc = hparams(G_any, nets.get("D"), source)
    G_kwargs, D_kwargs = sg2ada.module_kwargs(hp)
    own_g = Generator(**G_kwargs).state_dict()
    g_sds = {}
    for n, net in g_nets.items():
        if generator_kwargs(net, f"{source} {net.name}") != generator_kwargs(G_any, source):
            raise CheckpointError(f"{source}: {net.name} and {G_any.name} have different static_kwargs")
        g_sds[n] = fill_state_dict(own_g, net.all_variables(), generator_rules(), f"{source} {net.name}",
                                   ignore=("lod", "synthesis/lod", "mapping/lod"))
    d_sd = None
    if "D" in nets:
        own_d = Discriminator(**D_kwargs).state_dict()
        d_sd = fill_state_dict(own_d, nets["D"].all_variables(), discriminator_rules(hp["resolution"]),
                               f"{source} D")
    return hp, trunc, g_sds, d_sd
