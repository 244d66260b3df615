"""Building blocks of the style-based networks: equalized-lr layers, modulated conv, mbstd."""

from .layers import Conv2dLayer, FullyConnectedLayer, MinibatchStdLayer, normalize_2nd_moment, preferred_layout
from .modulated import SynthesisLayer, ToRGBLayer, modulated_conv2d
from .resample import conv2d_resample

__all__ = [
    "Conv2dLayer",
    "FullyConnectedLayer",
    "MinibatchStdLayer",
    "SynthesisLayer",
    "ToRGBLayer",
    "conv2d_resample",
    "modulated_conv2d",
    "normalize_2nd_moment",
    "preferred_layout",
]
