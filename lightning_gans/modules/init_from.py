"""`init_from=PATH`: start a new run from pretrained weights (ours or any official format).

Unlike `ckpt_path=` (continue a run exactly: optimizers, step, RNG), this copies only the
network weights (G, D, G_ema and running statistics such as w_avg) into a freshly built module;
optimizers, the step counter and ADA's p start anew -- the transfer-learning setup of the ADA
paper's fine-tuning experiments. As the official train.py does for `--resume`, the module then
gets the resume settings (StyleGAN2: ada_kimg 100, no EMA ramp-up; `apply_resume_settings`).
"""

from __future__ import annotations

import logging
import os

from torch import nn

from ..errors import CheckpointError

# Training-state buffers that describe the old run, not the networks: a new run starts them fresh.
RUN_STATE_KEYS = ("nimg", "pl_mean", "augment_pipe.", "ada.")
log = logging.getLogger(__name__)


def load_initial_weights(module: nn.Module, path: str | os.PathLike) -> list[str]:
    """Copy the networks of checkpoint `path` into `module`; returns the keys left at their init.

    The architecture must match: a key whose shape differs (another resolution, width or
    label count) is an error naming it and both shapes.
    """
    from ..model_file import describe, forget  # ours and every official format, safely; cached per process

    kind = getattr(module, "kind", None)
    resolution = module.hparams.get("resolution") if hasattr(module, "hparams") else None
    # another kind or resolution is describe's one line: "init_from=PATH holds a ... model"
    ckpt = describe(path, kind=kind, resolution=resolution, what="init_from=").ckpt
    source = ckpt.get("state_dict", {})
    target = module.state_dict()
    for key, value in source.items():
        if key in target and tuple(value.shape) != tuple(target[key].shape):
            raise CheckpointError(
                f"init_from={path}: {key} has shape {tuple(value.shape)} there but {tuple(target[key].shape)} "
                f"in this model; make model.* (resolution, channel_base, channel_max, z_dim, w_dim, "
                f"mapping_layers, c_dim) match the checkpoint's {ckpt.get('hyper_parameters', {})}"
            )
    weights = {k: v for k, v in source.items() if k in target and not k.startswith(RUN_STATE_KEYS)}
    if not any(k.startswith("G.") for k in weights):
        raise CheckpointError(f"init_from={path} has no generator weights this model can use")
    module.load_state_dict(weights, strict=False)
    resume_settings = getattr(module, "apply_resume_settings", None)
    changed = resume_settings() if resume_settings is not None else []
    if changed:
        log.info("init_from=%s: %s (the official --resume settings)", path, ", ".join(changed))
    forget()  # the run keeps its own copy: the checkpoint's tensors need not stay in memory
    return sorted(k for k in target if k not in weights)
