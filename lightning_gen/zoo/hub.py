"""Hugging Face Hub I/O for lightning-gen models: the folder format, save / load / push, checkpoint export.

What this module is for: turning a trained :class:`~lightning_gen.gan.GANModule` or
:class:`~lightning_gen.vae.VAE` into a small self-describing folder that loads back without the
training code's state, and moving that folder to and from the Hugging Face Hub. What it is not: a
training checkpoint (optimizer state and the discriminator are left out; resume training from the
Lightning ``.ckpt``), nor a general loader: nothing read here is ever unpickled.

Folder format (``format_version`` 1)::

    config.json        library name and version, format version, class name, every constructor
                       argument (``init_args``), the data normalisation, the networks stored in the
                       weights file and the sha256 of that file
    model.safetensors  inference weights only. Tensor names are ``<network>.<state_dict key>`` for
                       each network of ``module.inference_networks()``:
                         GANModule  ``generator_ema.*`` (EMA weights, used by ``sample()``) when the
                                    model has an EMA, and ``generator.*`` (raw weights, the second
                                    variant) always
                         VAE        ``encoder.*`` and ``decoder.*``
                       One file keeps both GAN variants under one sha256 pin.
    README.md          model card (see :mod:`lightning_gen.zoo.card`)
    samples.png        an 8x8 grid from ``module.sample(64, seed=0)``

Any other file in the folder (e.g. the ``recipe.yaml`` of a zoo model) is kept and pushed as is.

Every Hub call goes through ``huggingface_hub`` (downloads are tagged ``library_name="lightning-gen"``
and land in the Hugging Face cache, so ``HF_HUB_OFFLINE=1`` loads whatever is cached). Its
exceptions are translated into the :class:`ZooError` family below, whose messages name what was
asked for and what to do.

Only light modules are imported at the top: ``lightning_gen.gan`` and ``lightning_gen.vae`` import
this module for :class:`HubMixin`, so importing them from here would be circular; they are looked
up lazily by name (see :func:`resolve_class`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import importlib
import inspect
import json
import math
import os
import pathlib
import pickle
import sys
import tempfile
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from lightning_gen._files import sha256_file

if TYPE_CHECKING:  # pragma: no cover
    from lightning_gen.zoo.card import CardInfo

LIBRARY_NAME = "lightning-gen"
FORMAT_VERSION = 1
CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"
CARD_NAME = "README.md"
SAMPLES_NAME = "samples.png"
RECIPE_NAME = "recipe.yaml"
# Files fetched to build a model; `pull` also fetches the card, the sample grid and the recipe.
LOAD_FILES = (CONFIG_NAME, WEIGHTS_NAME)
PULL_FILES = (CONFIG_NAME, WEIGHTS_NAME, CARD_NAME, SAMPLES_NAME, RECIPE_NAME)
DEFAULT_COMMIT_MESSAGE = "Upload lightning-gen model"

# Classes a config.json may name when the caller did not say which class to build. A fixed table
# (not an import path read from the file) so that a downloaded config can never make us import
# arbitrary code.
BUILTIN_CLASSES: dict[str, tuple[str, str]] = {
    "GANModule": ("lightning_gen.gan", "GANModule"),
    "VAE": ("lightning_gen.vae", "VAE"),
}

# How images map to and from the model's float range; written to config.json so that code outside
# lightning-gen can use the weights correctly.
DATA_NORMALIZATION = {
    "model_range": [-1.0, 1.0],
    "from_uint8": "x / 127.5 - 1",
    "to_uint8": "round((clamp(x, -1, 1) + 1) * 127.5)",
    "layout": "NCHW",
}


# --------------------------------------------------------------------------------------------------
# Errors
# --------------------------------------------------------------------------------------------------


class ZooError(Exception):
    """Base class of every error raised by :mod:`lightning_gen.zoo`; catch it to handle them all."""


class UnknownModelError(ZooError, LookupError):
    """A zoo name that is not in the registry (the message lists close matches)."""


class RepoNotFoundError(ZooError, LookupError):
    """The Hub repository does not exist, or is private and the token cannot read it."""


class RevisionNotFoundError(ZooError, LookupError):
    """The repository exists but the branch, tag or commit does not."""


class MissingFileError(ZooError, FileNotFoundError):
    """A model folder or repository lacks a file of the format (config.json, model.safetensors)."""


class CorruptedWeightsError(ZooError, ValueError):
    """model.safetensors cannot be parsed, is truncated, or differs from the sha256 in config.json."""


class HashMismatchError(ZooError, ValueError):
    """model.safetensors differs from the sha256 pinned by the zoo index (or by the caller)."""


class ConfigMismatchError(ZooError, ValueError):
    """config.json describes another class, another format, or arguments the class does not take."""


class WeightsMismatchError(ZooError, ValueError):
    """The weights' keys or shapes do not match the networks built from config.json."""


class HubUnreachableError(ZooError, ConnectionError):
    """The Hub could not be reached (network, offline mode, server error) and nothing usable was cached."""


class UnsafeCheckpointError(ZooError, ValueError):
    """A Lightning checkpoint holds pickled objects that a ``weights_only`` load refuses to rebuild."""


# --------------------------------------------------------------------------------------------------
# Small helpers
# --------------------------------------------------------------------------------------------------


def library_version() -> str:
    """Version of the installed lightning-gen (imported lazily: this module loads during its init)."""
    import lightning_gen

    return getattr(lightning_gen, "__version__", "unknown")


def resolve_class(class_name: str) -> type:
    """Return the built-in lightning-gen class named ``class_name`` ("GANModule" or "VAE").

    Raises:
        ConfigMismatchError: for any other name. Subclasses must be loaded with their own
            ``from_pretrained`` so that no name read from a downloaded file selects code to import.
    """
    if class_name not in BUILTIN_CLASSES:
        raise ConfigMismatchError(
            f"config.json names class {class_name!r}, which is not a built-in lightning-gen class "
            f"({', '.join(sorted(BUILTIN_CLASSES))}). If it is your own subclass, load it with "
            f"`{class_name}.from_pretrained(...)` after importing it."
        )
    module_name, attr = BUILTIN_CLASSES[class_name]
    return getattr(importlib.import_module(module_name), attr)


def _jsonable(name: str, value: Any) -> Any:
    """Convert a hyper-parameter to plain JSON (tuples become lists) or raise naming the argument."""
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ConfigMismatchError(f"Constructor argument {name!r} is {value!r}, which JSON cannot hold.")
        return value
    if isinstance(value, (list, tuple)):
        return [_jsonable(f"{name}[{i}]", v) for i, v in enumerate(value)]
    if isinstance(value, Mapping):
        return {str(k): _jsonable(f"{name}.{k}", v) for k, v in value.items()}
    raise ConfigMismatchError(
        f"Constructor argument {name!r} is a {type(value).__name__}, which config.json cannot hold (it holds "
        "numbers, strings, booleans, None, lists and dicts). Build the model from plain values to save it in "
        "the Hub format."
    )


def _constructor_parameters(cls: type) -> dict[str, inspect.Parameter]:
    params = dict(inspect.signature(cls.__init__).parameters)
    params.pop("self", None)
    return params


def _accepts_var_kwargs(params: Mapping[str, inspect.Parameter]) -> bool:
    return any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())


def init_args_from_hparams(cls: type, hparams: Mapping[str, Any]) -> dict[str, Any]:
    """Keep the hyper-parameters that are constructor arguments of ``cls``, as plain JSON values.

    LightningCLI adds private keys such as ``_class_path`` and ``_instantiator`` to ``hparams``;
    they are not arguments and are dropped.
    """
    params = _constructor_parameters(cls)
    keep_all = _accepts_var_kwargs(params)
    return {
        key: _jsonable(key, value)
        for key, value in hparams.items()
        if not key.startswith("_") and (keep_all or key in params)
    }


def build_module(cls: type, init_args: Mapping[str, Any]) -> Any:
    """Instantiate ``cls(**init_args)``, turning JSON lists back into tuples where the default is one.

    Raises:
        ConfigMismatchError: when an argument is unknown to ``cls`` or the constructor rejects it.
    """
    params = _constructor_parameters(cls)
    if not _accepts_var_kwargs(params):
        unknown = sorted(set(init_args) - set(params))
        if unknown:
            raise ConfigMismatchError(
                f"config.json passes {unknown} to {cls.__name__}, which does not take them (it takes "
                f"{sorted(params)}). The folder was probably written by a newer lightning-gen "
                f"(installed: {library_version()}); upgrade with `pip install -U lightning-gen`."
            )
    kwargs = dict(init_args)
    for key, value in kwargs.items():
        # JSON has no tuple; constructors that default to a tuple (e.g. Adam betas) may check for one.
        if isinstance(value, list) and key in params and isinstance(params[key].default, tuple):
            kwargs[key] = tuple(value)
    try:
        return cls(**kwargs)
    except (TypeError, ValueError) as err:
        raise ConfigMismatchError(f"Could not build {cls.__name__} from the arguments in config.json: {err}") from err


def _inference_state(module: Any) -> dict[str, torch.Tensor]:
    """Flatten ``module.inference_networks()`` into ``{"<network>.<key>": tensor}`` on CPU."""
    state: dict[str, torch.Tensor] = {}
    for net_name, net in module.inference_networks().items():
        for key, tensor in net.state_dict().items():
            state[f"{net_name}.{key}"] = tensor.detach().to("cpu").contiguous()
    return state


def _describe_keys(keys: list[str], limit: int = 5) -> str:
    shown = ", ".join(keys[:limit])
    return shown + (f", ... ({len(keys) - limit} more)" if len(keys) > limit else "")


def load_inference_state(module: Any, state: Mapping[str, torch.Tensor], source: str) -> None:
    """Load ``state`` into ``module.inference_networks()`` strictly: same keys, same shapes.

    Raises:
        WeightsMismatchError: naming the missing and unexpected keys and every shape that differs.
    """
    networks = module.inference_networks()
    expected = {
        f"{net_name}.{key}": tensor for net_name, net in networks.items() for key, tensor in net.state_dict().items()
    }
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    shapes = [
        f"{key}: file {tuple(state[key].shape)} vs model {tuple(expected[key].shape)}"
        for key in sorted(set(expected) & set(state))
        if tuple(state[key].shape) != tuple(expected[key].shape)
    ]
    if missing or unexpected or shapes:
        problems = []
        if missing:
            problems.append(f"missing from the file: {_describe_keys(missing)}")
        if unexpected:
            problems.append(f"not in the model: {_describe_keys(unexpected)}")
        if shapes:
            problems.append(f"shape mismatch: {_describe_keys(shapes)}")
        raise WeightsMismatchError(
            f"The weights in {source} do not fit the {type(module).__name__} built from its config.json "
            f"({'; '.join(problems)}). config.json and model.safetensors must come from the same model: "
            "re-export the folder with `save_pretrained` or `lightning-gen zoo export`."
        )
    for net_name, net in networks.items():
        prefix = f"{net_name}."
        net.load_state_dict({k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}, strict=True)


# --------------------------------------------------------------------------------------------------
# Local folder: save and load
# --------------------------------------------------------------------------------------------------


def _write_atomically(path: Path, write: Any) -> None:
    """Write through a temporary file and rename, so an interrupted save never leaves half a file."""
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def build_config(module: Any, class_names: list[str] | None = None) -> dict:
    """The ``config.json`` dictionary of ``module`` (see the module docstring); the sha256 is filled in later."""
    cls = type(module)
    if module.hparams.get("custom_networks"):
        # The architecture of user-supplied networks is not described by constructor arguments, so
        # a folder could not rebuild it.
        raise ConfigMismatchError(
            f"This {cls.__name__} was built with custom generator/discriminator modules, which config.json cannot "
            "describe. Only models built from constructor arguments can be saved in the Hub format; share a custom "
            "network with its own code, or save its state_dict with safetensors."
        )
    networks = module.inference_networks()
    data = {
        "image_size": int(module.image_size),
        "channels": int(module.channels),
        "num_classes": int(module.num_classes),
        **DATA_NORMALIZATION,
    }
    if class_names:
        data["class_names"] = [str(name) for name in class_names]
    return {
        "library_name": LIBRARY_NAME,
        "library_version": library_version(),
        "format_version": FORMAT_VERSION,
        "class_name": cls.__name__,
        "init_args": init_args_from_hparams(cls, dict(module.hparams)),
        "latent_dim": int(module.latent_dim),
        "data": data,
        "weights": {
            "file": WEIGHTS_NAME,
            "networks": sorted(networks),
            # Which stored network sample() uses; the others are alternative variants.
            "sampling_network": "generator_ema" if "generator_ema" in networks else None,
            "sha256": None,  # filled in once the weights are written
        },
    }


def save_folder(
    module: Any,
    save_directory: str | os.PathLike,
    *,
    card: CardInfo | None = None,
    samples: bool = True,
    class_names: list[str] | None = None,
) -> Path:
    """Write ``module`` as a Hub folder; the implementation of :meth:`HubMixin.save_pretrained`."""
    from safetensors.torch import save

    from lightning_gen.zoo.card import CardInfo, build_model_card

    folder = Path(save_directory)
    folder.mkdir(parents=True, exist_ok=True)
    # Validate the config before writing anything, so a model that cannot be described leaves no
    # half-written folder behind.
    config = build_config(module, class_names=class_names)

    state = _inference_state(module)
    # A single metadata key: safetensors writes the metadata map in hash order, so more keys would make
    # the bytes (and the sha256 pinned by the zoo) differ between two exports of the same weights.
    # Serialised to bytes and written by us, because save_file creates the file readable by its owner only.
    payload = save(state, metadata={"format": "pt"})
    _write_atomically(folder / WEIGHTS_NAME, lambda p: p.write_bytes(payload))
    config["weights"]["sha256"] = sha256_file(folder / WEIGHTS_NAME)
    _write_atomically(
        folder / CONFIG_NAME, lambda p: p.write_text(json.dumps(config, indent=2, sort_keys=False) + "\n")
    )

    if samples:
        from lightning_gen._images import save_grid

        # A fixed seed makes the grid reproducible: `from_pretrained(...).sample(64, seed=0)` redraws it.
        images = module.sample(64, seed=0)
        save_grid(images, folder / SAMPLES_NAME, nrow=8)

    info = card if card is not None else CardInfo()
    recipe_path = folder / RECIPE_NAME
    if info.recipe is None and recipe_path.is_file():
        info = dataclasses.replace(info, recipe=recipe_path.read_text())
    card_text = build_model_card(config, info, samples_file=SAMPLES_NAME if (folder / SAMPLES_NAME).is_file() else None)
    _write_atomically(folder / CARD_NAME, lambda p: p.write_text(card_text))
    return folder


def read_config(folder: str | os.PathLike, source: str | None = None) -> dict:
    """Read and validate ``config.json`` of a model folder.

    Raises:
        MissingFileError: the folder has no config.json.
        ConfigMismatchError: the file is not JSON, not a lightning-gen config, or a newer format.
    """
    source = source or str(folder)
    path = Path(folder) / CONFIG_NAME
    if not path.is_file():
        raise MissingFileError(
            f"{source} has no {CONFIG_NAME}, so it is not a lightning-gen model folder. Create one with "
            "`module.save_pretrained(DIR)` or `lightning-gen zoo export CKPT DIR`."
        )
    try:
        config = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ConfigMismatchError(
            f"{CONFIG_NAME} in {source} is not valid JSON ({err}); re-export the folder."
        ) from err
    if not isinstance(config, dict) or config.get("library_name") != LIBRARY_NAME:
        raise ConfigMismatchError(
            f"{CONFIG_NAME} in {source} was not written by lightning-gen (library_name is "
            f"{config.get('library_name') if isinstance(config, dict) else None!r}, expected {LIBRARY_NAME!r})."
        )
    version = config.get("format_version")
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise ConfigMismatchError(
            f"{source} uses folder format {version!r}, but lightning-gen {library_version()} reads format "
            f"{FORMAT_VERSION} at most; upgrade with `pip install -U lightning-gen`."
        )
    for key in ("class_name", "init_args"):
        if key not in config:
            raise ConfigMismatchError(f"{CONFIG_NAME} in {source} has no {key!r} field; re-export the folder.")
    return config


def _read_weights(path: Path, source: str) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    try:
        return load_file(str(path), device="cpu")
    except Exception as err:  # safetensors raises its own SafetensorError and also OSError/ValueError
        raise CorruptedWeightsError(
            f"{WEIGHTS_NAME} in {source} is not a readable safetensors file ({type(err).__name__}: {err}); it is "
            f"truncated or corrupted ({path.stat().st_size} bytes). Download it again (`force_download=True`, "
            "or `lightning-gen zoo pull NAME --force`) or re-export the folder."
        ) from err


def verify_weights(
    folder: str | os.PathLike,
    expected_sha256: str | None = None,
    source: str | None = None,
    config: Mapping[str, Any] | None = None,
) -> None:
    """Check model.safetensors of a folder against a pinned sha256 and the one config.json records.

    Raises:
        MissingFileError: there is no model.safetensors.
        HashMismatchError: the file differs from ``expected_sha256`` (a zoo pin).
        CorruptedWeightsError: the file differs from the sha256 in config.json.
    """
    folder = Path(folder)
    source = source or str(folder)
    config = config if config is not None else read_config(folder, source)
    weights_path = folder / WEIGHTS_NAME
    if not weights_path.is_file():
        raise MissingFileError(
            f"{source} has a {CONFIG_NAME} but no {WEIGHTS_NAME}. The folder is incomplete: re-export it with "
            "`save_pretrained`, or download it again."
        )
    actual = None
    if expected_sha256 is not None:
        actual = sha256_file(weights_path)
        if actual != expected_sha256.lower():
            raise HashMismatchError(
                f"{WEIGHTS_NAME} in {source} has sha256 {actual}, but {expected_sha256.lower()} was pinned. "
                "The file is not the published one: if it came from the Hub cache, download it again with "
                "`force_download=True` (or `lightning-gen zoo pull NAME --force`); if it is a zoo folder in "
                "this checkout, restore it (`git checkout -- zoo/`) or update the index with "
                "`lightning-gen zoo export ... --zoo-name NAME` if the new weights are intended."
            )
    recorded = (config.get("weights") or {}).get("sha256")
    if recorded:
        actual = actual or sha256_file(weights_path)
        if actual != recorded:
            raise CorruptedWeightsError(
                f"{WEIGHTS_NAME} in {source} has sha256 {actual}, but its {CONFIG_NAME} records {recorded}: the file "
                f"is truncated or corrupted ({weights_path.stat().st_size} bytes) or was replaced without "
                "re-exporting. Download it again (`force_download=True`) or re-export the folder."
            )


def load_folder(
    folder: str | os.PathLike,
    cls: type | None = None,
    *,
    expected_sha256: str | None = None,
    device: str | torch.device = "cpu",
    source: str | None = None,
) -> Any:
    """Build the model stored in a local Hub folder; the core of every ``from_pretrained``.

    Args:
        folder: a folder with ``config.json`` and ``model.safetensors``.
        cls: class to build; ``None`` picks the built-in class named in config.json.
        expected_sha256: if given, the weights file must have exactly this sha256 (zoo pins).
        device: where the returned module lives.
        source: how to name the folder in error messages (e.g. ``"org/name@abc123"``).

    Returns:
        The module in eval mode, with strict-loaded inference weights.
    """
    folder = Path(folder)
    source = source or str(folder)
    config = read_config(folder, source)
    if cls is None:
        cls = resolve_class(config["class_name"])
    elif config["class_name"] != cls.__name__:
        hint = (
            f"use `{config['class_name']}.from_pretrained(...)`"
            if config["class_name"] in BUILTIN_CLASSES
            else f"load it with the class that wrote it ({config['class_name']})"
        )
        raise ConfigMismatchError(
            f"{source} holds a {config['class_name']}, not a {cls.__name__}: {hint}, or "
            "`lightning_gen.zoo.load_pretrained(...)`, which picks the class from config.json."
        )

    verify_weights(folder, expected_sha256, source, config)
    state = _read_weights(folder / WEIGHTS_NAME, source)

    module = build_module(cls, config["init_args"])
    load_inference_state(module, state, source)
    return module.to(device).eval()


# --------------------------------------------------------------------------------------------------
# Hub: download and push
# --------------------------------------------------------------------------------------------------


def _transport_errors() -> tuple[type[BaseException], ...]:
    """Network exception types of the HTTP stack huggingface_hub uses.

    Read from ``sys.modules`` rather than imported: only the stack that is actually loaded can raise,
    and this stays right across huggingface_hub versions (requests in 0.x, httpx in 1.x and later).
    """
    found: list[type[BaseException]] = [ConnectionError, TimeoutError]
    candidates = (("httpx2", "TransportError"), ("httpx", "TransportError"), ("requests", "ConnectionError"))
    for module_name, attr in candidates:
        module = sys.modules.get(module_name)
        if module is not None and isinstance(getattr(module, attr, None), type):
            found.append(getattr(module, attr))
    return tuple(found)


def _offline_hint() -> str:
    from huggingface_hub import constants

    if constants.HF_HUB_OFFLINE:
        return " Offline mode is on (HF_HUB_OFFLINE=1): unset it to reach the Hub."
    return (
        f" Check your network and the endpoint ({constants.ENDPOINT}); files downloaded once load offline "
        "afterwards (HF_HUB_OFFLINE=1)."
    )


@contextlib.contextmanager
def hub_errors(what: str, repo_id: str, revision: str | None) -> Iterator[None]:
    """Translate huggingface_hub exceptions raised inside the block into :class:`ZooError` subclasses.

    Args:
        what: the action, for messages ("download", "push").
        repo_id: the repository asked for.
        revision: the revision asked for (``None`` = default branch).
    """
    from huggingface_hub import errors as hf_errors

    at = f"{repo_id}@{revision}" if revision else repo_id
    try:
        yield
    except ZooError:
        raise
    except hf_errors.HFValidationError as err:
        raise RepoNotFoundError(f"{repo_id!r} is not a valid Hub repository id ({err}); use ORG/NAME.") from err
    except hf_errors.RevisionNotFoundError as err:
        raise RevisionNotFoundError(
            f"Revision {revision!r} does not exist in Hub repository {repo_id!r} (asked to {what} {at}). Use a "
            "branch, tag or full commit hash listed on the repository's 'Files and versions' page."
        ) from err
    except hf_errors.RepositoryNotFoundError as err:  # includes GatedRepoError
        raise RepoNotFoundError(
            f"Hub repository {repo_id!r} was not found (asked to {what} {at}). Check the spelling (ORG/NAME); if "
            "it is private or gated, log in with `hf auth login` or set HF_TOKEN to a token that can read it."
        ) from err
    except hf_errors.EntryNotFoundError as err:  # remote missing file; LocalEntryNotFoundError handled below
        if isinstance(err, hf_errors.LocalEntryNotFoundError):
            raise HubUnreachableError(
                f"Could not {what} {at}: the Hub is unreachable and the files are not (fully) in the local "
                f"Hugging Face cache.{_offline_hint()}"
            ) from err
        raise MissingFileError(
            f"Hub repository {at} lacks a file needed to {what} it ({err}). Is it a lightning-gen model? "
            "Publish one with `module.push_to_hub(...)` or `lightning-gen zoo push`."
        ) from err
    except hf_errors.HfHubHTTPError as err:
        status = err.response.status_code if getattr(err, "response", None) is not None else None
        if status in (401, 403):
            raise ZooError(
                f"The Hub refused to {what} {at} (HTTP {status}). Log in with `hf auth login` or set HF_TOKEN to "
                "a token with the needed (write) permission."
            ) from err
        raise HubUnreachableError(
            f"The Hub answered HTTP {status} when asked to {what} {at}.{_offline_hint()}"
        ) from err
    except _transport_errors() as err:  # includes huggingface_hub's OfflineModeIsEnabled
        raise HubUnreachableError(f"Could not {what} {at}: {type(err).__name__}: {err}.{_offline_hint()}") from err


def download(
    repo_id: str,
    revision: str | None = None,
    *,
    files: tuple[str, ...] = LOAD_FILES,
    force_download: bool = False,
    local_files_only: bool = False,
    token: str | bool | None = None,
    cache_dir: str | os.PathLike | None = None,
) -> Path:
    """Download ``files`` of a Hub model repository into the Hugging Face cache and return the folder.

    All files come from one commit (``snapshot_download`` resolves the revision once). Missing files
    are not an error here; :func:`load_folder` reports them by name.

    Example:
        >>> folder = download("lightning-gen/dcgan-shapes32")  # doctest: +SKIP
    """
    from huggingface_hub import snapshot_download

    with hub_errors("download", repo_id, revision):
        path = snapshot_download(
            repo_id,
            revision=revision,
            allow_patterns=list(files),
            library_name=LIBRARY_NAME,
            library_version=library_version(),
            force_download=force_download,
            local_files_only=local_files_only,
            token=token,
            cache_dir=cache_dir,
        )
    return Path(path)


def is_repo_id(text: str) -> bool:
    """Whether ``text`` has the shape of a Hub model id ``ORG/NAME`` (no scheme, one slash)."""
    parts = text.split("/")
    return len(parts) == 2 and all(parts) and not text.startswith((".", "~")) and "\\" not in text


def from_pretrained(
    repo_id_or_dir: str | os.PathLike,
    cls: type | None = None,
    revision: str | None = None,
    *,
    expected_sha256: str | None = None,
    device: str | torch.device = "cpu",
    force_download: bool = False,
    local_files_only: bool = False,
    token: str | bool | None = None,
    cache_dir: str | os.PathLike | None = None,
) -> Any:
    """Load a model from a local folder or a Hub repository; see :meth:`HubMixin.from_pretrained`."""
    text = os.fspath(repo_id_or_dir)
    if Path(text).is_dir():
        if revision is not None:
            raise ValueError(f"revision={revision!r} only applies to Hub repositories, but {text!r} is a local folder.")
        return load_folder(text, cls, expected_sha256=expected_sha256, device=device)
    if not is_repo_id(text):
        raise MissingFileError(f"{text!r} is neither an existing folder nor a Hub repository id of the form ORG/NAME.")
    folder = download(
        text,
        revision,
        force_download=force_download,
        local_files_only=local_files_only,
        token=token,
        cache_dir=cache_dir,
    )
    source = f"Hub repository {text}@{folder.name[:12]}"
    return load_folder(folder, cls, expected_sha256=expected_sha256, device=device, source=source)


def push_folder(
    folder: str | os.PathLike,
    repo_id: str,
    *,
    private: bool = False,
    revision: str | None = None,
    commit_message: str = DEFAULT_COMMIT_MESSAGE,
    token: str | bool | None = None,
    validate: bool = True,
) -> Any:
    """Upload a model folder to ``repo_id`` in one commit.

    Only the files of the format are uploaded (config.json, model.safetensors, README.md,
    samples.png, recipe.yaml); anything else in the folder, such as a stray ``.ckpt`` pickle, stays
    local. The repository is created if needed, and so is the branch ``revision``. With
    ``validate`` the folder is first loaded strictly, so a broken folder is never published.

    Returns:
        huggingface_hub's ``CommitInfo`` (a ``str``: the commit URL; ``.oid`` is the commit hash).
    """
    from huggingface_hub import CommitOperationAdd, HfApi

    folder = Path(folder)
    if validate:
        load_folder(folder)
    files = [folder / name for name in PULL_FILES if (folder / name).is_file()]
    if not files:
        raise MissingFileError(f"{folder} holds none of {', '.join(PULL_FILES)}; nothing to push.")
    api = HfApi(library_name=LIBRARY_NAME, library_version=library_version(), token=token)
    with hub_errors("push", repo_id, revision):
        api.create_repo(repo_id, private=private, exist_ok=True, repo_type="model")
        if revision is not None and revision != "main":
            api.create_branch(repo_id, branch=revision, exist_ok=True)
        return api.create_commit(
            repo_id,
            operations=[CommitOperationAdd(path_in_repo=p.name, path_or_fileobj=str(p)) for p in files],
            commit_message=commit_message,
            revision=revision,
        )


# --------------------------------------------------------------------------------------------------
# Lightning checkpoints
# --------------------------------------------------------------------------------------------------

# Types allowed on top of torch's weights_only allowlist: path objects appear in hyper-parameters and
# callback states, and they only rebuild a path from strings.
SAFE_CHECKPOINT_GLOBALS = [pathlib.PosixPath, pathlib.WindowsPath, pathlib.PurePosixPath, pathlib.PureWindowsPath]


def load_checkpoint(path: str | os.PathLike) -> dict:
    """``torch.load`` a Lightning checkpoint with ``weights_only=True`` (never falls back to pickle).

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
        listed = ", ".join(unsafe) if unsafe else "see the error above"
        raise UnsafeCheckpointError(
            f"Checkpoint {str(path)!r} holds pickled Python objects ({listed}) that lightning-gen will not "
            "unpickle, because unpickling can run arbitrary code. They usually come from hyper-parameters that "
            "are not plain values; train with plain constructor arguments. If you trust this file and those "
            "types only hold data, allow them explicitly with `torch.serialization.add_safe_globals([...])` "
            "before exporting."
        ) from err


def _infer_class_name(checkpoint: Mapping[str, Any]) -> str:
    recorded = (checkpoint.get("lightning_gen") or {}).get("class")  # written by GenerativeModule.on_save_checkpoint
    if isinstance(recorded, str):
        return recorded
    hparams = checkpoint.get("hyper_parameters") or {}
    class_path = hparams.get("_class_path")  # added by LightningCLI
    if isinstance(class_path, str) and class_path.rsplit(".", 1)[-1] in BUILTIN_CLASSES:
        return class_path.rsplit(".", 1)[-1]
    keys = checkpoint.get("state_dict") or {}
    if any(k.startswith("generator.") for k in keys):
        return "GANModule"
    if any(k.startswith("encoder.") for k in keys) and any(k.startswith("decoder.") for k in keys):
        return "VAE"
    raise ConfigMismatchError(
        "Cannot tell which lightning-gen class wrote this checkpoint (no `_class_path` hyper-parameter and "
        "no generator.* or encoder.*/decoder.* weights); pass it explicitly (`--class GANModule` or `--class VAE`)."
    )


def export_checkpoint(
    checkpoint_path: str | os.PathLike,
    save_directory: str | os.PathLike,
    *,
    cls: type | str | None = None,
    card: CardInfo | None = None,
    samples: bool = True,
    class_names: list[str] | None = None,
) -> Path:
    """Convert a Lightning checkpoint of a GANModule or VAE into a Hub folder.

    The module is rebuilt from the checkpoint's hyper-parameters, its full state dict is loaded
    strictly, then :func:`save_folder` writes the inference weights only.

    Args:
        checkpoint_path: the ``.ckpt`` file; read with ``weights_only=True``.
        save_directory: the Hub folder to write (other files in it are kept).
        cls: the class (or built-in class name) that wrote the checkpoint; default: the class
            recorded in the checkpoint, else guessed from its weights.
        card, samples, class_names: as for :meth:`HubMixin.save_pretrained`.

    Example:
        >>> export_checkpoint("runs/dcgan/best.ckpt", "zoo/dcgan-shapes32")  # doctest: +SKIP
    """
    checkpoint = load_checkpoint(checkpoint_path)
    hparams = checkpoint.get("hyper_parameters")
    if not isinstance(hparams, Mapping) or "state_dict" not in checkpoint:
        raise ConfigMismatchError(
            f"Checkpoint {os.fspath(checkpoint_path)!r} has no hyper_parameters or state_dict; it must come from "
            "a lightning-gen module (which calls save_hyperparameters())."
        )
    if not isinstance(cls, type):
        cls = resolve_class(cls or _infer_class_name(checkpoint))
    if hparams.get("custom_networks"):
        raise ConfigMismatchError(
            f"Checkpoint {os.fspath(checkpoint_path)!r} was trained with custom generator/discriminator modules, "
            "which the Hub format cannot describe (config.json rebuilds networks from constructor arguments)."
        )
    module = build_module(cls, init_args_from_hparams(cls, hparams))
    try:
        module.load_state_dict(checkpoint["state_dict"], strict=True)
    except RuntimeError as err:
        raise WeightsMismatchError(
            f"The weights in {os.fspath(checkpoint_path)!r} do not fit a {cls.__name__} built from its "
            f"hyper-parameters: {err}"
        ) from err
    return save_folder(module, save_directory, card=card, samples=samples, class_names=class_names)


# --------------------------------------------------------------------------------------------------
# Mixin
# --------------------------------------------------------------------------------------------------


class HubMixin:
    """Adds ``save_pretrained``, ``from_pretrained`` and ``push_to_hub`` to a lightning-gen module.

    The class must follow the generative-module contract: ``hparams`` holds every constructor
    argument, and ``inference_networks()``, ``sample()``, ``image_size``, ``channels``,
    ``latent_dim`` and ``num_classes`` exist. Put the mixin first among the bases:
    ``class GANModule(HubMixin, pl.LightningModule)``.

    Example:
        >>> from lightning_gen import GANModule  # doctest: +SKIP
        >>> model = GANModule(image_size=16, width=8)  # doctest: +SKIP
        >>> model.save_pretrained("my-gan")  # doctest: +SKIP
        >>> same = GANModule.from_pretrained("my-gan")  # doctest: +SKIP
        >>> bool((same.sample(4, seed=0) == model.sample(4, seed=0)).all())  # doctest: +SKIP
        True
    """

    def save_pretrained(
        self,
        save_directory: str | os.PathLike,
        *,
        card: CardInfo | None = None,
        samples: bool = True,
        class_names: list[str] | None = None,
    ) -> Path:
        """Write the model as a Hub folder (config.json, model.safetensors, README.md, samples.png).

        Args:
            save_directory: created if needed; other files in it (e.g. recipe.yaml) are kept.
            card: what the model card says beyond the config (dataset, license, metrics, recipe).
                Metrics not given are reported as "not measured".
            samples: draw ``samples.png`` with ``self.sample(64, seed=0)``.
            class_names: names of the labels of a class-conditional model, stored in config.json.

        Returns:
            The folder.
        """
        return save_folder(self, save_directory, card=card, samples=samples, class_names=class_names)

    @classmethod
    def from_pretrained(
        cls,
        repo_id_or_dir: str | os.PathLike,
        revision: str | None = None,
        *,
        expected_sha256: str | None = None,
        device: str | torch.device = "cpu",
        force_download: bool = False,
        local_files_only: bool = False,
        token: str | bool | None = None,
        cache_dir: str | os.PathLike | None = None,
    ) -> Any:
        """Load a model saved by :meth:`save_pretrained`, from a folder or a Hub repository.

        Args:
            repo_id_or_dir: an existing local folder, or a Hub model id ``ORG/NAME``.
            revision: branch, tag or commit of the Hub repository (default: its main branch).
                Pin a full commit hash for reproducible downloads.
            expected_sha256: refuse weights whose sha256 differs (the zoo passes its pins here).
            device: where the returned module lives.
            force_download: download again even if the files are cached.
            local_files_only: use the Hugging Face cache only (as with ``HF_HUB_OFFLINE=1``).
            token: Hub token; default is the logged-in one / ``HF_TOKEN``.
            cache_dir: Hugging Face cache folder (default ``HF_HUB_CACHE``).

        Returns:
            The module, in eval mode, with the stored weights loaded strictly.

        Raises:
            ConfigMismatchError: the folder holds another class or unknown arguments.
            WeightsMismatchError: keys or shapes of the weights do not match the config.
            RepoNotFoundError, RevisionNotFoundError, MissingFileError, CorruptedWeightsError,
            HashMismatchError, HubUnreachableError: see their docstrings.
        """
        return from_pretrained(
            repo_id_or_dir,
            cls,
            revision,
            expected_sha256=expected_sha256,
            device=device,
            force_download=force_download,
            local_files_only=local_files_only,
            token=token,
            cache_dir=cache_dir,
        )

    def push_to_hub(
        self,
        repo_id: str,
        private: bool = False,
        revision: str | None = None,
        commit_message: str = DEFAULT_COMMIT_MESSAGE,
        *,
        card: CardInfo | None = None,
        token: str | bool | None = None,
        class_names: list[str] | None = None,
    ) -> Any:
        """Save the model to a temporary folder and upload it to ``repo_id`` in one commit.

        Call it from one process only (in DDP, guard with ``trainer.is_global_zero``).

        Args:
            repo_id: ``ORG/NAME``; created (private if ``private``) when it does not exist.
            private: visibility of a newly created repository (an existing one keeps its own).
            revision: branch to commit to, created from main if missing (default: main).
            commit_message: the commit's summary line.
            card: model card content, as for :meth:`save_pretrained`.
            token: Hub token with write access; default is the logged-in one / ``HF_TOKEN``.
            class_names: as for :meth:`save_pretrained`.

        Returns:
            huggingface_hub's ``CommitInfo``; ``.oid`` is the commit hash to pin.
        """
        from lightning_gen.zoo.card import CardInfo

        card = card if card is not None else CardInfo()
        if card.repo_id is None:  # the card's usage snippet should name the repository it lives in
            card = dataclasses.replace(card, repo_id=repo_id)
        with tempfile.TemporaryDirectory(prefix="lightning-gen-push-") as tmp:
            save_folder(self, tmp, card=card, class_names=class_names)
            return push_folder(
                tmp,
                repo_id,
                private=private,
                revision=revision,
                commit_message=commit_message,
                token=token,
                validate=False,  # written just above from this very module
            )
