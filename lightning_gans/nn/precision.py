"""Compute precision of the style-based networks.

Two mechanisms, one meaning each:

* `num_fp16_res` (StyleGAN2-ADA's mixed precision): the N highest-resolution blocks of G and D
  compute in float16, float32 elsewhere, with `conv_clamp` holding every conv activation and
  toRGB output within +-conv_clamp (times the layer's gain) so float16 cannot overflow. Weights,
  gradients and optimizer state stay float32: a block casts its weights at use. On the CPU the
  float16 blocks run in float32 unless the model is built with `fp16_on_cpu=True` (CPU float16
  convolutions are slower than float32 ones), and `force_fp32=True` turns them off for a call.
* `trainer.precision=bf16-mixed` (torch.autocast): the convolutions and matmuls of the synthesis
  network and of D's blocks run in bfloat16. What stays float32: the mapping network (so w and
  the running w_avg), the style affines and demodulation coefficients, the skip generator's
  image sum, D's 4x4 epilogue and its logits, hence every loss reduction and the R1 /
  path-length gradients (taken w.r.t. float32 images and ws). While autocast is on, the
  num_fp16_res blocks do not switch to float16 (autocast owns the dtype; bfloat16 has float32's
  range) and conv_clamp still applies.
"""

from __future__ import annotations

import contextlib
import math

import torch


def autocast_on(device: torch.device | str) -> bool:
    """Whether torch.autocast is active for this device type (False for types autocast does not
    know, such as meta)."""
    device_type = device.type if isinstance(device, torch.device) else str(device)
    try:
        return torch.is_autocast_enabled(device_type)
    except RuntimeError:
        return False


def float32_region(x: torch.Tensor):
    """A context in which autocast is off for x's device (a no-op context when it is off already):
    for the parts that must stay float32 under bf16-mixed."""
    device_type = x.device.type
    if autocast_on(device_type):
        return torch.autocast(device_type, enabled=False)
    return contextlib.nullcontext()


def fp16_resolutions(img_resolution: int, num_fp16_res: int) -> list[int]:
    """The block resolutions that compute in float16: the num_fp16_res highest, never below 8
    (as the official networks: max(2 ** (log2(R) + 1 - num_fp16_res), 8))."""
    if not isinstance(num_fp16_res, int) or isinstance(num_fp16_res, bool) or num_fp16_res < 0:
        raise ValueError(f"num_fp16_res must be an integer >= 0, got {num_fp16_res!r}")
    log2 = int(math.log2(img_resolution))
    lowest = max(2 ** (log2 + 1 - num_fp16_res), 8)
    return [2**i for i in range(2, log2 + 1) if 2**i >= lowest]


def block_dtype(use_fp16: bool, device: torch.device, force_fp32: bool = False,
                fp16_on_cpu: bool = False) -> torch.dtype:
    """The dtype a block computes in: float16 for an fp16 block unless force_fp32, autocast is
    on (autocast then picks the dtype of each op), or it runs on the CPU without fp16_on_cpu.
    float32 stands for "not float16": a float64 network keeps computing in float64."""
    if not use_fp16 or force_fp32:
        return torch.float32
    if device.type == "cpu" and not fp16_on_cpu:
        return torch.float32
    if autocast_on(device):
        return torch.float32
    return torch.float16


def float32_output(t: torch.Tensor) -> torch.Tensor:
    """t in float32 if it came out of autocast (or a half model) in float16/bfloat16; float32 and
    float64 tensors unchanged: network outputs that losses reduce stay float32 under bf16-mixed."""
    return t.float() if t.dtype in (torch.float16, torch.bfloat16) else t


FLOAT16_AUTOCAST = (
    "trainer.precision=16-mixed is not supported for training these GANs: float16 autocast needs "
    "loss scaling, which their several optimizer steps per iteration and R1/path-length gradients "
    "do not have; use trainer.precision=bf16-mixed, or for StyleGAN2 model.num_fp16_res=4 (the "
    "official float16 scheme with conv_clamp)"
)


def refuse_float16_autocast(x: torch.Tensor) -> None:
    """One clear line instead of silent gradient underflow: float16 autocast in training."""
    device_type = x.device.type
    if autocast_on(device_type) and torch.get_autocast_dtype(device_type) == torch.float16:
        from ..errors import ConfigError

        raise ConfigError(FLOAT16_AUTOCAST)


def to_block_dtype(t: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """A block's input in the block's dtype (block_dtype): float16 blocks cast to float16, others
    take float16 up to float32 and leave every other dtype alone (float64 networks; bfloat16
    under autocast, which casts per op anyway)."""
    if dtype == torch.float16:
        return t.to(torch.float16)
    return t.float() if t.dtype == torch.float16 else t


def cpu_bf16_slow_note() -> str | None:
    """The line to warn with when bf16-mixed runs on a CPU without native bfloat16 (AVX512-BF16 or
    AMX): oneDNN then leaves bfloat16 convolutions to torch's generic fallback, measured 50-130x
    slower than float32 on a 2-core AVX-512 Xeon (conv 64->64 at 64 px: 0.02 s vs 2.6 s). None
    where the CPU has it (or torch cannot tell)."""
    try:
        if torch.ops.mkldnn._is_mkldnn_bf16_supported():
            return None
    except (AttributeError, RuntimeError):
        return None
    return ("trainer.precision=bf16-mixed on this CPU: it has no native bfloat16 (AVX512-BF16 / AMX), so "
            "bfloat16 convolutions take a generic fallback, 50-130x slower than float32; train with "
            "trainer.precision=32-true on this CPU (bf16-mixed is for GPUs and bfloat16 CPUs)")
