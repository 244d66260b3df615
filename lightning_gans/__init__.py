"""lightning_gans: training and synthesis of style-based face GANs."""

__version__ = "0.1.0"
