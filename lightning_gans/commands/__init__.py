"""One module per `lightning-gans` command, named after it: argument parsing and the call into
the library, nothing else. Checkpoint tools use argparse through `_args` (the same option names
everywhere, defaults and an example in `--help`); the config-driven jobs (train, evaluate,
finetune, summary) take Hydra overrides. Errors are raised (LGError); only `cli.main` prints
them."""
