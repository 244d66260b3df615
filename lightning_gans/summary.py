"""Parameter counts and compute precision of a GAN module's networks (`lightning-gans summary`)."""

from __future__ import annotations

from .nn.layers import count_params


def count_networks(module) -> dict[str, int]:
    """Parameter counts of a GAN module's trained networks and their main parts (no EMA copies)."""
    counts: dict[str, int] = {}
    for name, net in module.networks().items():
        counts[name] = count_params(net)
        for part in ("mapping", "synthesis"):
            if hasattr(net, part):
                counts[f"{name}.{part}"] = count_params(getattr(net, part))
    counts["total"] = sum(count_params(n) for n in module.networks().values())
    return counts


def precision_info(module) -> dict:
    """num_fp16_res, conv_clamp and the float16 block resolutions of each network that has them
    (StyleGAN2's mixed precision; see nn/precision.py); {} for networks without."""
    per_net: dict[str, list[int]] = {}
    for name, net in module.networks().items():
        holder = getattr(net, "synthesis", net)
        if hasattr(holder, "fp16_resolutions"):
            per_net[name] = list(holder.fp16_resolutions)
    if not per_net:
        return {}
    hp = getattr(module, "hparams", {})
    return {"num_fp16_res": hp.get("num_fp16_res", 0), "conv_clamp": hp.get("conv_clamp"),
            "fp16_on_cpu": bool(hp.get("fp16_on_cpu", False)), "fp16_resolutions": per_net}
