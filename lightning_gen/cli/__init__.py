"""The ``lightning-gen`` command.

``fit``, ``validate`` and ``test`` are LightningCLI sub-commands, so everything a LightningCLI user
knows works: ``--config recipe.yaml``, ``--print_config``, ``--model GANModule --model.loss hinge``,
``--data ShapesDataModule``, ``--trainer.precision bf16-mixed``. The other sub-commands are small
argparse programs that live next to the code they drive and are imported only when used, so
``lightning-gen sample`` does not pay for importing the metrics stack.
"""

from __future__ import annotations

import importlib
import sys
from typing import Sequence

# name -> (module, function, one-line help). Each function takes argv (without the command) and returns an exit code.
COMMANDS = {
    "sample": ("lightning_gen.sampling", "main", "write a grid or individual PNGs from a checkpoint or zoo model"),
    "make-shapes": ("lightning_gen.data.shapes", "make_shapes_main", "write the procedural shapes data as an image folder"),
    "fid": ("lightning_gen.metrics.evaluate", "main", "FID / IS / KID between two image sources, as JSON"),
    "zoo": ("lightning_gen.zoo.cli", "main", "list, show, pull, push and export zoo models"),
    "sweep": ("lightning_gen.sweep", "main", "train and evaluate a grid of configurations, tabulate and plot FID"),
}
LIGHTNING_COMMANDS = ("fit", "validate", "test", "predict")

USAGE = """usage: lightning-gen COMMAND [ARGS]

Training (LightningCLI; `lightning-gen fit --help` lists every option):
  fit          train a model:  lightning-gen fit --config zoo/dcgan-shapes32/recipe.yaml
  validate     run the validation loop on a checkpoint
  test         run the test loop on a checkpoint

Tools:
{tools}
"""


def run_lightning_cli(args: Sequence[str] | None = None, run: bool = True):
    """Build the LightningCLI over every library model and data module (``run=False`` only instantiates)."""
    import lightning.pytorch as pl
    from lightning.pytorch.cli import LightningCLI

    import lightning_gen  # noqa: F401  (registers GANModule and VAE as subclasses for --model)
    import lightning_gen.data  # noqa: F401  (registers the data modules for --data)
    from lightning_gen._base import GenerativeModule

    return LightningCLI(
        GenerativeModule,
        pl.LightningDataModule,
        subclass_mode_model=True,
        subclass_mode_data=True,
        # The modules build their two optimizers themselves (the CLI's single --optimizer can't express
        # two); they are configured through model.lr_g / model.g_optimizer and friends.
        auto_configure_optimizers=False,
        save_config_kwargs={"overwrite": True},
        parser_kwargs={"prog": "lightning-gen"} if run else {"prog": "lightning-gen", "exit_on_error": False},
        args=list(args) if args is not None else None,
        run=run,
    )


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        tools = "\n".join(f"  {name:<13}{help_}" for name, (_, _, help_) in COMMANDS.items())
        print(USAGE.format(tools=tools))
        return 0 if argv else 2
    if argv[0] in COMMANDS:
        module_name, function_name, _ = COMMANDS[argv[0]]
        return int(getattr(importlib.import_module(module_name), function_name)(argv[1:]) or 0)
    if argv[0] not in LIGHTNING_COMMANDS:
        print(f"lightning-gen: unknown command {argv[0]!r}; choose from {', '.join(LIGHTNING_COMMANDS + tuple(COMMANDS))}.", file=sys.stderr)
        return 2
    run_lightning_cli(argv)
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
