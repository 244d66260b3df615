"""`lightning-gans train [overrides]`: train a GAN; the Hydra app (key=value overrides, -m sweeps,
--cfg job, -sc install=bash). `lightning-gans train --help` lists the config groups."""

from __future__ import annotations

import importlib.util
import sys


def run(overrides: list[str]) -> int:
    """Run the Hydra train app on `overrides` (what follows `lightning-gans train`) in this process."""
    import __main__

    from ..rundir import precheck_hydra_run_dir

    precheck_hydra_run_dir(overrides)  # issue 19: an unusable run dir as one line, not Hydra's traceback
    # Hydra reads sys.argv itself. Lightning starts extra local DDP processes as
    # `python -m <__main__.__spec__.name> <sys.argv[1:]>`: point that at the train module, so
    # they run the same job.
    sys.argv = ["lightning-gans", *overrides]
    __main__.__spec__ = importlib.util.find_spec(__name__)
    from ..train import train_app

    train_app()
    return 0


main = run

if __name__ == "__main__":  # the extra local DDP processes: errors through cli.main, as in the first one
    from ..cli import main as cli_main

    sys.exit(cli_main(["train", *sys.argv[1:]]))
