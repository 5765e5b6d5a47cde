"""From a trained model to images: safe checkpoint loading, one loader for every model source, streamed PNGs.

What this module is for: :func:`load_checkpoint` (a Lightning ``.ckpt`` read with ``weights_only=True``),
:func:`load_generative_module` (a ``.ckpt``, a Hub-format folder, a zoo name or a Hub id; what the
sample, fid and sweep commands share) and :func:`write_samples` (any number of PNGs with bounded
memory). What it is not: a command line; ``lightning-gen sample`` is :mod:`lightning_gen.cli.sample`.
"""

from __future__ import annotations

import os
import pathlib
import pickle
from pathlib import Path

import torch

from lightning_gen._base import GenerativeModule
from lightning_gen._images import save_images

# Types allowed on top of torch's weights_only allowlist: path objects appear in hyper-parameters and
# callback states, and they only rebuild a path from strings.
SAFE_CHECKPOINT_GLOBALS = [pathlib.PosixPath, pathlib.WindowsPath, pathlib.PurePosixPath, pathlib.PureWindowsPath]


class UnsafeCheckpointError(pickle.UnpicklingError):
    """A Lightning checkpoint holds pickled objects that a ``weights_only`` load refuses to rebuild."""


def read_checkpoint(path: str | os.PathLike) -> dict:
    """``torch.load`` a checkpoint with ``weights_only=True`` (never falls back to full unpickling).

    Raises:
        FileNotFoundError: no such file.
        UnsafeCheckpointError: the file holds pickled objects of other types; the message lists them
            and how to allow them explicitly if the file is trusted.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"Checkpoint {str(path)!r} does not exist; pass the path of a Lightning .ckpt file.")
    try:
        with torch.serialization.safe_globals(SAFE_CHECKPOINT_GLOBALS):
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        try:
            unsafe = torch.serialization.get_unsafe_globals_in_checkpoint(str(path))
        except Exception:  # the listing is a courtesy; the refusal stands either way
            unsafe = []
        raise UnsafeCheckpointError(
            f"Checkpoint {str(path)!r} holds pickled Python objects ({', '.join(unsafe) or 'see above'}) that "
            "lightning-gen will not unpickle, because unpickling can run arbitrary code. They usually come from "
            "hyper-parameters that are not plain values; train with plain constructor arguments. If you trust this "
            "file and those types only hold data, allow them with `torch.serialization.add_safe_globals([...])`."
        ) from err


def load_checkpoint(
    path: str | os.PathLike, map_location: str | torch.device = "cpu", cls: type[GenerativeModule] | None = None
) -> GenerativeModule:
    """Rebuild a ``GANModule`` or ``VAE`` from a Lightning checkpoint written by this library, in eval mode.

    Args:
        path: the ``.ckpt`` file; nothing in it is unpickled as code.
        map_location: where the returned module lives.
        cls: the class that wrote it; default: the class the checkpoint records.
    """
    from lightning_gen.gan import GANModule
    from lightning_gen.vae import VAE

    checkpoint = read_checkpoint(path)
    if cls is None:
        class_name = (checkpoint.get("lightning_gen") or {}).get("class")
        classes = {"GANModule": GANModule, "VAE": VAE}
        if class_name not in classes:
            raise ValueError(
                f"{str(path)!r} was not written by a lightning-gen module (its class is {class_name!r}; expected one "
                f"of {sorted(classes)}). Pass the class that wrote it."
            )
        cls = classes[class_name]
    if (checkpoint.get("lightning_gen") or {}).get("custom_networks") or (checkpoint.get("hyper_parameters") or {}).get("custom_networks"):
        raise ValueError(
            f"{str(path)!r} was trained with custom generator/discriminator modules, which a checkpoint does not "
            f"record. Load it in Python: {cls.__name__}.load_from_checkpoint(path, generator=..., discriminator=...)."
        )
    with torch.serialization.safe_globals(SAFE_CHECKPOINT_GLOBALS):
        module = cls.load_from_checkpoint(path, map_location=map_location, weights_only=True)
    return module.eval()


def load_generative_module(source: str | os.PathLike, map_location: str | torch.device = "cpu") -> GenerativeModule:
    """Load a module from a ``.ckpt`` file, a Hub-format folder, a zoo name or a Hub repository id."""
    text = os.fspath(source)
    if text.endswith(".ckpt") or Path(text).is_file():
        return load_checkpoint(text, map_location)
    from lightning_gen.zoo import load_pretrained  # the zoo resolves folders, zoo names and repo ids

    return load_pretrained(text, device=map_location)


def write_samples(
    module: GenerativeModule,
    out_dir: str | os.PathLike,
    n: int,
    seed: int | None = None,
    batch_size: int = 256,
    progress: bool = True,
    truncation: float | None = None,
) -> int:
    """Write ``n`` samples as ``000000.png``, ``000001.png``... with memory bounded by ``batch_size``.

    A seed makes the files the images of ``module.sample(n, seed=seed, truncation=truncation)``, whatever the
    batch size.

    Example:
        >>> import tempfile
        >>> from lightning_gen import GANModule
        >>> model = GANModule(image_size=16, latent_dim=4, width=4)
        >>> write_samples(model, tempfile.mkdtemp(), 3, seed=0, progress=False)
        3
    """
    from tqdm.auto import tqdm

    written = 0
    with tqdm(total=n, unit="img", desc="sampling", disable=not progress) as bar:
        for chunk in module.iter_samples(n, seed=seed, batch_size=batch_size, truncation=truncation):
            save_images(chunk.cpu(), out_dir, start_index=written)
            written += chunk.shape[0]
            bar.update(chunk.shape[0])
    return written
