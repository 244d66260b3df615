"""`lightning-gans train [overrides]`: train a GAN; the Hydra app (key=value overrides, -m sweeps,
--cfg job, -sc install=bash). `lightning-gans train --help` lists the config groups."""

from __future__ import annotations

import importlib.util
import sys


def run(overrides: list[str]) -> int:
    """Run the Hydra train app on `overrides` (what follows `lightning-gans train`) in this process."""
    import __main__

    # Hydra reads sys.argv itself. Lightning starts extra local DDP processes as
    # `python -m <__main__.__spec__.name> <sys.argv[1:]>`: point that at the train module, so
    # they run the same job.
    sys.argv = ["lightning-gans", *overrides]
    __main__.__spec__ = importlib.util.find_spec(__name__)
    if NO_RUN_FLAGS.intersection(overrides):
        _config_app()()
        return 0
    from ..rundir import precheck_hydra_run_dir

    check_overrides(overrides)
    precheck_hydra_run_dir(overrides)  # issue 19: an unusable run dir as one line, not Hydra's traceback
    from ..train import train_app

    train_app()
    return 0


def check_overrides(overrides: list[str]) -> None:
    """Compose train's config with `overrides` before Hydra does: a key that is not in the
    config, a group option that does not exist or a syntax error is one ConfigError line (Hydra
    prints several lines and exits 1). A sweep (-m) is checked, values too, for each value it
    sweeps before any job starts or is submitted to Slurm, where every job would fail alike.
    Other Hydra flags (--config-name, ...) are left to Hydra."""
    from ..rundir import check_train_config
    from ._hydra import compose, sweep_jobs

    tokens = [a for a in overrides if a not in ("-m", "--multirun")]
    if any(t.startswith("-") for t in tokens):
        return
    if len(tokens) == len(overrides):
        compose("train", tokens, "train")  # its values are checked by the job itself, first thing
        return
    for job in sweep_jobs(tokens):
        check_train_config(compose("train", job, "train"))


# Hydra flags that compose or print and never run the job: shell completion (each TAB press),
# --cfg, --help, --info. They get the Hydra app without Lightning and torch (importing them took
# ~10 s of every completion on a 2-core machine).
NO_RUN_FLAGS = {"-sc", "--shell-completion", "-c", "--cfg", "-h", "--help", "--hydra-help", "-i", "--info"}


def _config_app():
    """The train app's config, flags and help, with a task function that imports the real one
    only if Hydra does run the job after all."""
    from ..config import hydra_train_main, register_resolvers

    register_resolvers()

    @hydra_train_main()
    def train_app(cfg):
        from ..train import train_app as real

        return real.__wrapped__(cfg)

    return train_app


main = run

if __name__ == "__main__":  # the extra local DDP processes: errors through cli.main, as in the first one
    from ..cli import main as cli_main

    sys.exit(cli_main(["train", *sys.argv[1:]]))
