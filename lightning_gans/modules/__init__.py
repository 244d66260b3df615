"""LightningModules: one per GAN; they own the training schedule, EMA and what gets logged."""
