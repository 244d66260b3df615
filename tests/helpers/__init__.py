"""Helpers shared by the tests (imported as `helpers.<module>`: pytest puts tests/ on sys.path,
tests/ having no __init__.py): train_utils (Hydra-composed CPU training runs and their metrics),
synth_utils (small checkpoints for the synthesis tools), parity_utils (where the parity fixtures
are), wandb_utils (reading an offline W&B run)."""
