"""Convolution fused with FIR up/down-sampling (StyleGAN2, Karras et al. 2020, appendix B).

Up-sampling convolutions run as a strided transposed convolution followed by the FIR filter;
down-sampling ones as the FIR filter followed by a strided convolution. This costs a fraction
of "resample, then convolve" and gives the same result.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..ops.upfirdn2d import IntOrPair, filter_size, parse_padding, upfirdn2d


def _conv(x, w, stride=1, padding=0, groups=1, transpose=False, flip_weight=True):
    """conv2d / conv_transpose2d; flip_weight=False makes it a true convolution."""
    if not flip_weight and (w.shape[2] > 1 or w.shape[3] > 1):
        w = w.flip([2, 3])
    if not x.is_contiguous() and x.is_contiguous(memory_format=torch.channels_last):
        # oneDNN reorders an NCHW weight for an NHWC input in forward and again in backward;
        # one explicit reorder here is saved for backward and serves both.
        w = w.contiguous(memory_format=torch.channels_last)
    op = F.conv_transpose2d if transpose else F.conv2d
    return op(x, w, stride=stride, padding=padding, groups=groups)


def conv2d_resample(
    x: torch.Tensor,
    w: torch.Tensor,
    f: torch.Tensor | None = None,
    up: int = 1,
    down: int = 1,
    padding: IntOrPair = 0,
    groups: int = 1,
    flip_weight: bool = True,
    flip_filter: bool = False,
) -> torch.Tensor:
    """x: [N, C_in, H, W], w: [C_out, C_in // groups, kh, kw] -> [N, C_out, H*up/down, W*up/down].

    padding is applied at the input resolution (like conv2d's); f is the FIR filter used for
    the resampling (ops.setup_filter). flip_weight=True is correlation (PyTorch's conv2d).
    """
    if x.ndim != 4 or w.ndim != 4:
        raise ValueError(f"conv2d_resample: x {tuple(x.shape)} and w {tuple(w.shape)} must be 4-D")
    out_channels, in_per_group, kh, kw = w.shape
    fw, fh = filter_size(f)
    px0, px1, py0, py1 = parse_padding(padding)

    # Extra padding so the FIR filter keeps the image centred.
    if up > 1:
        px0 += (fw + up - 1) // 2
        px1 += (fw - up) // 2
        py0 += (fh + up - 1) // 2
        py1 += (fh - up) // 2
    if down > 1:
        px0 += (fw - down + 1) // 2
        px1 += (fw - down) // 2
        py0 += (fh - down + 1) // 2
        py1 += (fh - down) // 2

    if kw == 1 and kh == 1 and down > 1 and up == 1:
        # 1x1 conv commutes with the filter: filter+decimate first, on fewer pixels.
        x = upfirdn2d(x, f, down=down, padding=[px0, px1, py0, py1], flip_filter=flip_filter)
        return _conv(x, w, groups=groups, flip_weight=flip_weight)
    if kw == 1 and kh == 1 and up > 1 and down == 1:
        x = _conv(x, w, groups=groups, flip_weight=flip_weight)
        return upfirdn2d(
            x, f, up=up, padding=[px0, px1, py0, py1], gain=up**2, flip_filter=flip_filter
        )
    if down > 1 and up == 1:
        x = upfirdn2d(x, f, padding=[px0, px1, py0, py1], flip_filter=flip_filter)
        return _conv(x, w, stride=down, groups=groups, flip_weight=flip_weight)
    if up > 1:
        # Transposed conv with stride `up` = zero insertion + conv, without the zeros' cost.
        if groups == 1:
            w = w.transpose(0, 1)
        else:
            w = w.reshape(groups, out_channels // groups, in_per_group, kh, kw)
            w = w.transpose(1, 2).reshape(groups * in_per_group, out_channels // groups, kh, kw)
        px0 -= kw - 1
        px1 -= kw - up
        py0 -= kh - 1
        py1 -= kh - up
        pxt = max(min(-px0, -px1), 0)
        pyt = max(min(-py0, -py1), 0)
        x = _conv(
            x, w, stride=up, padding=[pyt, pxt], groups=groups, transpose=True,
            flip_weight=not flip_weight,
        )
        x = upfirdn2d(
            x, f, padding=[px0 + pxt, px1 + pxt, py0 + pyt, py1 + pyt], gain=up**2,
            flip_filter=flip_filter,
        )
        if down > 1:
            x = upfirdn2d(x, f, down=down, flip_filter=flip_filter)
        return x
    if px0 == px1 and py0 == py1 and px0 >= 0 and py0 >= 0:
        return _conv(x, w, padding=[py0, px0], groups=groups, flip_weight=flip_weight)
    # General case (asymmetric or negative padding).
    x = upfirdn2d(x, None, padding=[px0, px1, py0, py1])
    x = _conv(x, w, groups=groups, flip_weight=flip_weight)
    if down > 1:
        x = upfirdn2d(x, f, down=down, flip_filter=flip_filter)
    return x
