"""Kernel front-ends: each op has a reference PyTorch path and a dispatch point."""

from .bias_act import bias_act
from .scaled_bias_act import scaled_bias_act
from .upfirdn2d import downsample2d, filter2d, setup_filter, upfirdn2d, upsample2d

__all__ = ["bias_act", "scaled_bias_act", "upfirdn2d", "upsample2d", "downsample2d", "filter2d", "setup_filter"]
