"""`python -m lightning_gans` is the `lightning-gans` command."""

import sys

from .cli import main

sys.exit(main())
