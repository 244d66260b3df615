"""Freeze-D (Mo et al. 2020), as StyleGAN2-ADA applies it when fine-tuning: the first N layers
of the discriminator, counted from the highest resolution, keep their pretrained weights.
"""

from __future__ import annotations

from torch import nn


def discriminator_layers(D: nn.Module) -> list[tuple[str, nn.Module]]:
    """D's layers in the order freeze-D counts them: for each block from the highest resolution
    fromrgb (first block only), conv0, conv1, skip; then the 4x4 epilogue (fromrgb, conv, fc, out).
    The label mapping network is not counted."""
    layers = []
    for res in D.block_resolutions:
        block = getattr(D, f"b{res}")
        for name in ("fromrgb", "conv0", "conv1", "skip"):
            if hasattr(block, name):
                layers.append((f"b{res}.{name}", getattr(block, name)))
    for name in ("fromrgb", "conv", "fc", "out"):
        if hasattr(D.b4, name):
            layers.append((f"b4.{name}", getattr(D.b4, name)))
    return layers


def freeze_discriminator(D: nn.Module, n: int) -> list[str]:
    """Freeze D's first `n` layers in place; returns the names of the frozen tensors.

    Their parameters become persistent buffers of the same name: state_dict keys and checkpoints
    are unchanged (pretrained weights load into them), but D.parameters() -- hence the optimizer,
    requires_grad toggling and gradient averaging -- no longer sees them, so they get neither
    gradients nor updates while gradients still flow through them to the input (R1).
    """
    layers = discriminator_layers(D)
    if not 0 <= n <= len(layers):
        raise ValueError(f"freeze_d={n}: this discriminator has {len(layers)} layers, use 0..{len(layers)}")
    frozen = []
    for layer_name, layer in layers[:n]:
        for name, param in list(layer.named_parameters(recurse=False)):
            delattr(layer, name)
            layer.register_buffer(name, param.detach())
            frozen.append(f"{layer_name}.{name}")
    return frozen
