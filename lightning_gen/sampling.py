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
from collections.abc import Sequence
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


def parse_labels(spec: str, num_classes: int) -> list[int]:
    """Class labels from a command-line spec: ``"0-9"``, ``"0,3,7"`` or both (``"0-2,7"``), checked against the model.

    Args:
        spec: Comma-separated labels and inclusive ranges ``a-b``; ``"all"`` means every class.
        num_classes: The model's number of classes (0: unconditional).

    Raises:
        ValueError: The model is unconditional, the spec does not parse, or a label is out of range.

    Example:
        >>> parse_labels("0-2,7", 10), parse_labels("all", 3)
        ([0, 1, 2, 7], [0, 1, 2])
    """
    if not num_classes:
        raise ValueError(
            f"labels={spec!r} given, but the model is unconditional (num_classes=0): it cannot draw a chosen class. "
            "Drop the labels, or train a class-conditional model (e.g. GANModule(num_classes=10) on DigitsDataModule)."
        )
    if spec.strip().lower() == "all":
        return list(range(num_classes))
    labels: list[int] = []
    for part in (p.strip() for p in spec.split(",")):
        first, dash, last = part.partition("-")
        if not (first.isdigit() and (last.isdigit() if dash else True)) or (dash and int(last) < int(first)):
            raise ValueError(
                f"Cannot read labels {spec!r} (at {part!r}): expected comma-separated labels and increasing ranges "
                "such as '0-9' or '0,3,7'."
            )
        labels += list(range(int(first), int(last) + 1)) if dash else [int(first)]
    bad = [label for label in labels if not 0 <= label < num_classes]
    if bad or not labels:
        raise ValueError(
            f"Label(s) {bad or spec!r} out of range: the model has {num_classes} classes, labels 0-{num_classes - 1}. "
            f"Pass e.g. '0-{num_classes - 1}' or a subset."
        )
    return labels


def class_folder_names(num_classes: int, class_names: Sequence[str] | None = None) -> list[str]:
    """Folder name of each label, so ``ImageFolderDataModule`` (which sorts class folders) reads the labels back.

    The data's class names when known and already in sorted order (e.g. ``"0"`` ... ``"9"``); otherwise the label
    index, zero-padded so that names sort as numbers (``"00"`` ... ``"11"`` for 12 classes).

    Example:
        >>> class_folder_names(3, ["cat", "dog", "emu"]), class_folder_names(12)[:2], class_folder_names(2, ["b", "a"])
        (['cat', 'dog', 'emu'], ['00', '01'], ['0', '1'])
    """
    names = [str(name) for name in class_names] if class_names else None
    if names and len(names) == num_classes and names == sorted(names) and len(set(names)) == num_classes:
        return names
    width = len(str(max(num_classes - 1, 0)))
    return [f"{label:0{width}d}" for label in range(num_classes)]


def write_class_samples(
    module: GenerativeModule,
    out_dir: str | os.PathLike,
    labels: Sequence[int],
    per_class: int,
    seed: int | None = None,
    batch_size: int = 256,
    class_names: Sequence[str] | None = None,
    progress: bool = True,
    truncation: float | None = None,
) -> dict[str, int]:
    """Write ``per_class`` samples of each label into ``out_dir/<class>/000000.png, ...``.

    The folders read back with :class:`~lightning_gen.data.ImageFolderDataModule` with the same labels (see
    :func:`class_folder_names`; ``class_names`` default to the module's ``class_names`` attribute, if any). The
    images are those of ``module.sample(len(labels) * per_class, seed, labels=<each label per_class times>,
    truncation=truncation)``.

    Returns:
        Images written per class folder.

    Example:
        >>> import tempfile
        >>> from lightning_gen import GANModule
        >>> model = GANModule(image_size=16, latent_dim=4, width=4, num_classes=3)
        >>> write_class_samples(model, tempfile.mkdtemp(), [0, 2], per_class=2, seed=0, progress=False)
        {'0': 2, '2': 2}
    """
    from tqdm.auto import tqdm

    if per_class < 1:
        raise ValueError(f"per_class must be >= 1, got {per_class}.")
    names = class_folder_names(module.num_classes, class_names or getattr(module, "class_names", None))
    requested = torch.tensor(list(labels)).repeat_interleave(per_class)
    written: dict[str, int] = {}
    done = 0
    with tqdm(total=len(requested), unit="img", desc="sampling", disable=not progress) as bar:
        for chunk in module.iter_samples(len(requested), seed=seed, labels=requested, batch_size=batch_size, truncation=truncation):
            for image, label in zip(chunk.cpu(), requested[done : done + chunk.shape[0]].tolist()):
                name = names[label]
                save_images(image[None], Path(out_dir) / name, start_index=written.get(name, 0))
                written[name] = written.get(name, 0) + 1
            done += chunk.shape[0]
            bar.update(chunk.shape[0])
    return written
