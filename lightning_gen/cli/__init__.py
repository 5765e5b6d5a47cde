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
from typing import Any, Sequence

# name -> (module, function, one-line help). Each function takes argv (without the command) and returns an exit code.
COMMANDS = {
    "sample": ("lightning_gen.cli.sample", "main", "write a grid or individual PNGs from a checkpoint or zoo model"),
    "make-digits": ("lightning_gen.data.digits", "make_digits_main", "write the built-in MNIST digits as a folder per class"),
    "make-shapes": ("lightning_gen.data.shapes", "make_shapes_main", "write the procedural shapes data as an image folder"),
    "fid": ("lightning_gen.cli.fid", "main", "FID / IS / KID / precision-recall between two image sources, as JSON"),
    "fid-stats": ("lightning_gen.cli.fid", "stats_main", "write an image source's FID statistics (mu, sigma) to a .npz"),
    "synthetic": ("lightning_gen.cli.synthetic", "main", "is synthetic data useful? CAS, augmentation gain, intra-class FD, as JSON"),
    "zoo": ("lightning_gen.cli.zoo", "main", "list, show, pull, push, export and import-dcgan zoo models"),
    "project": ("lightning_gen.cli.project", "main", "find the latents that reproduce real images (GAN inversion)"),
    "sweep": ("lightning_gen.cli.sweep", "main", "grids and searches of configurations on an Optuna study, with a report"),
}
LIGHTNING_COMMANDS = ("fit", "validate", "test", "predict")

USAGE = """usage: lightning-gen COMMAND [ARGS]

Training (LightningCLI; `lightning-gen fit --help` lists every option):
  fit          train a model:  lightning-gen fit --config zoo/dcgan-shapes32/recipe.yaml
  validate     run the validation loop on a checkpoint
  test         run the test loop on a checkpoint
  predict      write images for seeds:  lightning-gen predict ... --data SeedDataModule (see lightning_gen.predict)

Tools:
{tools}
"""


def run_lightning_cli(args: Sequence[str] | None = None, run: bool = True):
    """Build the LightningCLI over every library model and data module (``run=False`` only instantiates)."""
    import lightning.pytorch as pl
    from lightning.pytorch.cli import LightningCLI

    import lightning_gen.gan  # noqa: F401  (registers GANModule and VAE as subclasses for --model)
    import lightning_gen.vae  # noqa: F401
    import lightning_gen.data  # noqa: F401  (registers the data modules for --data)
    import lightning_gen.predict  # noqa: F401  (SeedDataModule for `predict --data SeedDataModule`)
    from lightning_gen._base import GenerativeModule

    class GenerativeCLI(LightningCLI):
        def before_instantiate_classes(self) -> None:
            config = self.config[self.subcommand] if self.subcommand else self.config
            _take_image_shape_from_data(config)

    return GenerativeCLI(
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


# The model arguments that must agree with the data module's, taken from it when not set on the model.
SHARED_WITH_DATA = ("image_size", "channels")


def _take_image_shape_from_data(config: Any) -> None:
    """Give the model the data module's ``image_size`` and ``channels`` unless the config sets them on the model.

    So ``--data.image_size 64`` is enough. jsonargparse's ``link_arguments`` would do it too, but it removes
    the model's flags (breaking configs that set both) and needs every data module, a user's own included,
    to expose the attributes. ``num_classes`` is not taken: labeled data may train an unconditional model.
    A model value given explicitly and different from the data's is kept; the first training batch then
    fails with both shapes named.
    """
    import importlib
    import inspect

    model, data = config.get("model"), config.get("data")
    if not (model and data and model.get("class_path") and data.get("init_args")):
        return
    module_name, _, class_name = model["class_path"].rpartition(".")
    try:
        parameters = inspect.signature(getattr(importlib.import_module(module_name), class_name)).parameters
    except (ImportError, AttributeError, ValueError):  # pragma: no cover - LightningCLI reports a bad class itself
        return
    for name in SHARED_WITH_DATA:
        data_value = data["init_args"].get(name)
        if data_value is None or name not in parameters:
            continue
        if model["init_args"].get(name) == parameters[name].default:
            model["init_args"][name] = data_value


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
