"""ADA (Karras et al., NeurIPS 2020): the differentiable augmentation pipeline, the p controller, freeze-D."""

from .controller import AdaController
from .freeze import discriminator_layers, freeze_discriminator
from .pipeline import AugmentPipe

__all__ = ["AdaController", "AugmentPipe", "discriminator_layers", "freeze_discriminator"]
