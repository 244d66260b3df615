"""GAN objectives and regularizers as plain functions/modules of tensors and networks."""
