"""Making images with trained models: latents from seeds, grids, provenance metadata."""
