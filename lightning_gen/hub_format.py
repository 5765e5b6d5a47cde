"""The lightning-gen Hub folder format: its file names, its ``config.json`` section and its bounds.

What this module is for: the names every layer shares (the mixin in :mod:`lightning_gen.hub`, the model card in
:mod:`lightning_gen.model_card`, the zoo in :mod:`lightning_gen.zoo`) without importing one another. It imports
nothing, so the zoo's listing and the command line stay fast. The format's errors and the checks that raise them
(:func:`~lightning_gen.hub_checks.validate_config`, :func:`~lightning_gen.hub_checks.verify_weights`) are
:mod:`lightning_gen.hub_checks`; saving, loading and pushing are :mod:`lightning_gen.hub`, which re-exports both.

Example:
    >>> from lightning_gen.hub_format import CONFIG_NAME, FOLDER_FILES
    >>> CONFIG_NAME in FOLDER_FILES
    True
"""

from lightning_gen._version import __version__

__all__ = [
    "CARD_NAME",
    "CONFIG_NAME",
    "DATA_NORMALIZATION",
    "DEFAULT_COMMIT_MESSAGE",
    "EXPORT_NAMES",
    "FOLDER_FILES",
    "FORMAT_VERSION",
    "LIBRARY_NAME",
    "MAX_CONFIG_BYTES",
    "META_KEY",
    "RECIPE_NAME",
    "RUNTIME_ARGUMENTS",
    "SAMPLES_NAME",
    "SIZE_LIMITS",
    "WEIGHTS_NAME",
    "library_version",
]

LIBRARY_NAME = "lightning-gen"
FORMAT_VERSION = 2
# Constructor arguments that say how to run, not what the model is: never written to config.json.
RUNTIME_ARGUMENTS = ("compile", "channels_last")
META_KEY = "lightning_gen"  # the config.json section that is ours; every other key is a constructor argument
CONFIG_NAME, WEIGHTS_NAME, CARD_NAME = "config.json", "model.safetensors", "README.md"
SAMPLES_NAME, RECIPE_NAME = "samples.png", "recipe.yaml"
EXPORT_NAMES = ("generator.onnx", "generator.torchscript.pt")  # deployment files (lightning_gen.export)
FOLDER_FILES = (CONFIG_NAME, WEIGHTS_NAME, CARD_NAME, SAMPLES_NAME, RECIPE_NAME, *EXPORT_NAMES)  # what a push uploads
DEFAULT_COMMIT_MESSAGE = "Upload lightning-gen model"
MAX_CONFIG_BYTES = 1 << 20  # a real config.json is ~1 KB; anything near this is not one
# Upper bounds on the constructor arguments that size a network, checked before anything is built. They
# sit far above any model this library trains (DCGAN at 256 px, width 64) and far below what exhausts memory.
SIZE_LIMITS = {"image_size": 1024, "channels": 64, "latent_dim": 16384, "width": 4096}
SIZE_LIMITS.update(num_classes=100_000, num_sample_images=4096)
# How images map to and from the model's range; recorded so that code outside lightning-gen uses the weights right.
DATA_NORMALIZATION = {
    "model_range": [-1.0, 1.0],
    "from_uint8": "x / 127.5 - 1",
    "to_uint8": "round((clamp(x, -1, 1) + 1) * 127.5)",
    "layout": "NCHW",
}



def library_version() -> str:
    """The installed lightning-gen version, as recorded in ``config.json`` and sent with Hub requests."""
    return __version__
