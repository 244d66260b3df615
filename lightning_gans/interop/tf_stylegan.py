"""Official TensorFlow StyleGAN (v1) networks (NVlabs/stylegan `G_style` / `D_basic`, state version 3:
`karras2019stylegan-*.pkl`, v1 `network-snapshot-*.pkl`) to our StyleGAN v1 (models/stylegan.py).

Variable by variable:
  mapping/Dense{i}/weight [in, out], bias   -> mapping.fc{i} (bias / sqrt 2: ours applies the lrelu
                                               gain after the bias, TF folds it into the weight)
  dlatent_avg                               -> mapping.w_avg
  synthesis/4x4/Const/const [1, C, 4, 4]    -> synthesis.b4.const
  synthesis/{r}x{r}/{Const|Conv|Conv0_up|Conv1}/{weight [kh,kw,in,out], Noise/weight, bias,
      StyleMod/weight, StyleMod/bias}       -> synthesis.b{r}.layer{0|1}.{conv.weight, noise.weight, bias, adain.affine}
  synthesis/noise{i} [1, 1, r, r]           -> the noise_const of layer i (two per resolution)
  synthesis/ToRGB_lod{k}                    -> synthesis.b{R / 2^k}.torgb
  D FromRGB_lod{k}, {r}x{r}/Conv0, Conv1_down, 4x4/Conv, Dense0 -> b{r}.fromrgb/conv0/conv1, b4.conv/fc
      (biases / sqrt 2, as in the mapping), 4x4/Dense1 -> b4.out (linear: as is)
  lod (G, synthesis, D)                     -> not used (0 in a finished network: full resolution)

fused_scale (G_synthesis and D_basic kwarg; default 'auto' = fused at >= 128 px, which no
static_kwargs record): TF's fused up-conv equals nearest-upsample + conv with the spatially
flipped kernel. Our fused layer (a transposed conv, as in TF) takes the TF kernel as it is; it is
built fused exactly where TF fused. The fused D down-conv is conv + 2x2 average, which is what our
D computes at every resolution, so D needs nothing.
"""

from __future__ import annotations

import math

import numpy as np

from ..errors import CheckpointError
from ..models.stylegan import Discriminator, Generator
from .tf_pickle import TFNetwork, check_kwargs, fill_state_dict, in_out, kh_kw_in_out, network_kwargs

SQRT2 = math.sqrt(2)

G_KNOWN = {  # G_style + G_mapping + G_synthesis static_kwargs and their defaults
    "truncation_psi": 0.7, "truncation_cutoff": 8, "truncation_psi_val": None, "truncation_cutoff_val": None,
    "dlatent_avg_beta": 0.995, "style_mixing_prob": 0.9, "is_training": None, "is_validation": None,
    "is_template_graph": None, "components": None, "mapping_func": "G_mapping", "synthesis_func": "G_synthesis",
    "latent_size": 512, "label_size": 0, "dlatent_size": 512, "dlatent_broadcast": None, "mapping_layers": 8,
    "mapping_fmaps": 512, "mapping_lrmul": 0.01, "mapping_nonlinearity": "lrelu", "use_wscale": True,
    "normalize_latents": True, "dtype": "float32", "num_channels": 3, "resolution": 1024, "fmap_base": 8192,
    "fmap_decay": 1.0, "fmap_max": 512, "use_styles": True, "const_input_layer": True, "use_noise": True,
    "randomize_noise": None, "nonlinearity": "lrelu", "use_pixel_norm": False, "use_instance_norm": True,
    "fused_scale": "auto", "blur_filter": [1, 2, 1], "structure": None, "force_clean_graph": None,
}
D_KNOWN = {
    "num_channels": 1, "resolution": 32, "label_size": 0, "fmap_base": 8192, "fmap_decay": 1.0, "fmap_max": 512,
    "nonlinearity": "lrelu", "use_wscale": True, "mbstd_group_size": 4, "mbstd_num_features": 1,
    "dtype": "float32", "fused_scale": "auto", "blur_filter": [1, 2, 1], "structure": None,
    "is_template_graph": None,
}
G_FIXED = {"label_size": 0, "mapping_nonlinearity": "lrelu", "use_wscale": True, "normalize_latents": True,
           "dtype": "float32", "use_styles": True, "const_input_layer": True, "nonlinearity": "lrelu",
           "use_pixel_norm": False, "use_instance_norm": True, "blur_filter": [1, 2, 1],
           "mapping_func": "G_mapping", "synthesis_func": "G_synthesis"}
D_FIXED = {"label_size": 0, "nonlinearity": "lrelu", "use_wscale": True, "dtype": "float32",
           "blur_filter": [1, 2, 1]}


def generator_kwargs(net: TFNetwork, what: str) -> dict:
    kw = check_kwargs(network_kwargs(net), G_KNOWN, what, G_FIXED, "the official StyleGAN")
    if kw["mapping_fmaps"] != kw["dlatent_size"]:
        raise CheckpointError(f"{what}: mapping_fmaps={kw['mapping_fmaps']} differs from dlatent_size="
                              f"{kw['dlatent_size']}; only equal widths are implemented")
    if kw["fused_scale"] not in (True, False, "auto"):
        raise CheckpointError(f"{what}: fused_scale={kw['fused_scale']!r}; expected True, False or 'auto'")
    return kw


def hparams(G: TFNetwork, D: TFNetwork | None, source: str) -> tuple[dict, dict]:
    """(StyleGANModule hyper-parameters, truncation defaults {psi, cutoff}) of a TF G_style / D_basic.

    The progressive schedule starts at the file's resolution (start_resolution = resolution):
    the network is grown, fine-tuning has no lower-resolution phase.
    """
    gk = generator_kwargs(G, f"{source} {G.name}")
    mbstd = (4, 1)
    if D is not None:
        dk = check_kwargs(D.static_kwargs, D_KNOWN, f"{source} D", D_FIXED, "the official StyleGAN")
        for k in ("resolution", "num_channels", "fmap_base", "fmap_decay", "fmap_max"):
            if dk[k] != gk[k]:
                raise CheckpointError(f"{source}: D has {k}={dk[k]} but G {gk[k]}; our StyleGAN shares them")
        group = int(dk["mbstd_group_size"])
        mbstd = (group, int(dk["mbstd_num_features"])) if group > 1 else (4, 0)
    R = int(gk["resolution"])
    if R < 4 or R & (R - 1):
        raise CheckpointError(f"{source}: resolution {R} is not a power of two >= 4")
    hp = dict(
        resolution=R, z_dim=int(gk["latent_size"]), w_dim=int(gk["dlatent_size"]),
        img_channels=int(gk["num_channels"]), mapping_layers=int(gk["mapping_layers"]),
        mapping_lr_multiplier=float(gk["mapping_lrmul"]),
        w_avg_beta=0.995 if gk["dlatent_avg_beta"] in (None, 1) else float(gk["dlatent_avg_beta"]),
        fmap_base=int(gk["fmap_base"]), fmap_decay=float(gk["fmap_decay"]), fmap_max=int(gk["fmap_max"]),
        fused_scale=gk["fused_scale"], use_noise=bool(gk["use_noise"]),
        mbstd_group_size=mbstd[0], mbstd_num_channels=mbstd[1],
        start_resolution=R, style_mixing_prob=float(gk["style_mixing_prob"] or 0.0), name="tf-stylegan-import",
    )
    return hp, {"psi": gk["truncation_psi"], "cutoff": gk["truncation_cutoff"]}


def module_kwargs(hp: dict) -> tuple[dict, dict]:
    """(G_kwargs, D_kwargs) exactly as StyleGANModule builds them from its hyper-parameters."""
    synthesis = dict(fmap_base=hp["fmap_base"], fmap_decay=hp["fmap_decay"], fmap_max=hp["fmap_max"])
    G_kwargs = dict(z_dim=hp["z_dim"], w_dim=hp["w_dim"], img_resolution=hp["resolution"],
                    img_channels=hp["img_channels"], mapping_layers=hp["mapping_layers"],
                    mapping_lr_multiplier=hp["mapping_lr_multiplier"], w_avg_beta=hp["w_avg_beta"],
                    fused_scale=hp["fused_scale"], use_noise=hp["use_noise"], **synthesis)
    D_kwargs = dict(img_resolution=hp["resolution"], img_channels=hp["img_channels"],
                    mbstd_group_size=hp["mbstd_group_size"], mbstd_num_channels=hp["mbstd_num_channels"], **synthesis)
    return G_kwargs, D_kwargs


def _log2(r: str | int) -> int:
    return int(r).bit_length() - 1


def _noise(a: np.ndarray) -> np.ndarray:
    return a.reshape(a.shape[-2:]) if a.ndim == 4 and a.shape[:2] == (1, 1) else a


def generator_rules(resolution: int) -> list:
    ident = lambda a: a  # noqa: E731
    lrelu_bias = lambda a: a / SQRT2  # noqa: E731
    R2 = _log2(resolution)

    def scope(r: str, layer: str) -> str:
        if r == "4":
            return "synthesis/4x4/" + ("Const" if layer == "0" else "Conv")
        return f"synthesis/{r}x{r}/" + ("Conv0_up" if layer == "0" else "Conv1")

    def layer_index(r: str, layer: str) -> int:
        return 2 * _log2(r) - 4 + int(layer)

    L = r"synthesis\.b(\d+)\.layer([01])\."
    return [
        (r"mapping\.w_avg", lambda m: ("dlatent_avg", ident)),
        (r"mapping\.fc(\d+)\.weight", lambda m: (f"mapping/Dense{m[1]}/weight", in_out)),
        (r"mapping\.fc(\d+)\.bias", lambda m: (f"mapping/Dense{m[1]}/bias", lrelu_bias)),
        (r"synthesis\.b4\.const", lambda m: ("synthesis/4x4/Const/const", lambda a: a[0])),
        (L + r"conv\.weight", lambda m: (scope(m[1], m[2]) + "/weight", kh_kw_in_out)),
        (L + r"bias", lambda m: (scope(m[1], m[2]) + "/bias", ident)),
        (L + r"noise\.weight", lambda m: (scope(m[1], m[2]) + "/Noise/weight", ident)),
        (L + r"noise\.noise_const", lambda m: (f"synthesis/noise{layer_index(m[1], m[2])}", _noise)),
        (L + r"adain\.affine\.weight", lambda m: (scope(m[1], m[2]) + "/StyleMod/weight", in_out)),
        (L + r"adain\.affine\.bias", lambda m: (scope(m[1], m[2]) + "/StyleMod/bias", ident)),
        (r"synthesis\.b(\d+)\.torgb\.(weight|bias)",
         lambda m: (f"synthesis/ToRGB_lod{R2 - _log2(m[1])}/{m[2]}", kh_kw_in_out if m[2] == "weight" else ident)),
    ]


def discriminator_rules(resolution: int) -> list:
    R2 = _log2(resolution)
    lrelu_bias = lambda a: a / SQRT2  # noqa: E731

    def wb(name: str, weight, bias_fn=lrelu_bias):
        return lambda m: (f"{name(m)}/{m['p']}", weight if m["p"] == "weight" else bias_fn)

    return [
        (r"b(\d+)\.fromrgb\.(?P<p>weight|bias)", wb(lambda m: f"FromRGB_lod{R2 - _log2(m[1])}", kh_kw_in_out)),
        (r"b(\d+)\.conv0\.(?P<p>weight|bias)", wb(lambda m: f"{m[1]}x{m[1]}/Conv0", kh_kw_in_out)),
        (r"b(\d+)\.conv1\.(?P<p>weight|bias)", wb(lambda m: f"{m[1]}x{m[1]}/Conv1_down", kh_kw_in_out)),
        (r"b4\.conv\.(?P<p>weight|bias)", wb(lambda m: "4x4/Conv", kh_kw_in_out)),
        (r"b4\.fc\.(?P<p>weight|bias)", wb(lambda m: "4x4/Dense0", in_out)),
        (r"b4\.out\.(?P<p>weight|bias)", wb(lambda m: "4x4/Dense1", in_out, lambda a: a)),
    ]


def convert(nets: dict[str, TFNetwork], source: str) -> tuple[dict, dict, dict[str, dict], dict | None]:
    """(hyper-parameters, truncation defaults, {'G', 'G_ema'} state dicts, D state dict or None)."""
    g_nets = {ours: nets[tf] for ours, tf in (("G", "G"), ("G_ema", "Gs")) if tf in nets}
    for n, net in [*g_nets.items(), *([("D", nets["D"])] if "D" in nets else [])]:
        want = "D_basic" if n == "D" else "G_style"
        if net.build_func_name != want:
            raise CheckpointError(f"{source}: network {net.name} is {net.build_func_name} (version {net.version}); "
                                  f"a StyleGAN (v1) file has {want}")
        if n != "D" and set(net.components) != {"mapping", "synthesis"}:
            raise CheckpointError(f"{source}: {net.name} has components {sorted(net.components)}; expected "
                                  "mapping and synthesis")
    G_any = g_nets.get("G_ema") or g_nets["G"]
    hp, trunc = hparams(G_any, nets.get("D"), source)
    G_kwargs, D_kwargs = module_kwargs(hp)
    own_g = Generator(**G_kwargs).state_dict()
    g_sds = {}
    for n, net in g_nets.items():
        if generator_kwargs(net, f"{source} {net.name}") != generator_kwargs(G_any, source):
            raise CheckpointError(f"{source}: {net.name} and {G_any.name} have different static_kwargs")
        g_sds[n] = fill_state_dict(own_g, net.all_variables(), generator_rules(hp["resolution"]),
                                   f"{source} {net.name}", ignore=("lod", "synthesis/lod", "mapping/lod"))
    d_sd = None
    if "D" in nets:
        own_d = Discriminator(**D_kwargs).state_dict()
        d_sd = fill_state_dict(own_d, nets["D"].all_variables(), discriminator_rules(hp["resolution"]),
                               f"{source} D", ignore=("lod",))
    return hp, trunc, g_sds, d_sd


def build_networks(hp: dict, g_sds: dict[str, dict], d_sd: dict | None, seed: int = 0) -> dict:
    """Our v1 G, G_ema, D loaded from converted state dicts (a missing D: freshly initialized from seed)."""
    from .sg2ada import load_networks

    G_kwargs, D_kwargs = module_kwargs(hp)
    return load_networks(lambda: Generator(**G_kwargs), lambda: Discriminator(**D_kwargs), g_sds, d_sd, seed)
