"""``python -m lightning_gen.cli``: the same as the ``lightning-gen`` command (used to start worker processes)."""

import sys

from lightning_gen.cli import main

sys.exit(main())
