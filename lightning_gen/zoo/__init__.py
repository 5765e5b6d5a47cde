"""The lightning-gen model zoo: pretrained generators registered by name, on top of :mod:`lightning_gen.hub`.

What this package is for: ``lightning_gen.zoo.load("dcgan-shapes32")`` in one line, the registry
behind it (``index.json``, shipped with the package), and :func:`load_pretrained`, which
``lightning-gen sample --model`` uses for zoo names, Hub ids and folders alike. The folder format
and its errors are :mod:`lightning_gen.hub`; the ``lightning-gen zoo`` command is
:mod:`lightning_gen.cli.zoo`. What it is not: a recipe store (recipes live in the repository's
``zoo/<name>/recipe.yaml``).

Every entry pins the sha256 of its ``model.safetensors`` and, once published, the Hub commit.
:func:`load` looks for the weights in this order:

1. ``$LIGHTNING_GEN_ZOO_DIR/<name>/`` for each folder listed in that variable (if set);
2. ``lightning_gen/zoo/models/<name>/``: the small zoo models are package data, so they load offline
   from an installed wheel, an editable install or a source checkout alike;
3. the Hub repository at the pinned commit, through the Hugging Face cache.

Either way the weights must have the pinned sha256, or loading fails with ``HashMismatchError``.

Example:
    >>> import lightning_gen.zoo as zoo
    >>> "dcgan-shapes32" in zoo.list()
    True
    >>> zoo.info("dcgan-shapes32").class_name
    'GANModule'
    >>> model = zoo.load("dcgan-shapes32")
    >>> tuple(model.sample(2, seed=0).shape)
    (2, 3, 32, 32)
"""

from __future__ import annotations

import builtins
import difflib
import importlib
import json
import os
import re
from dataclasses import dataclass, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from lightning_gen._files import sha256_file
from lightning_gen.hub_format import CONFIG_NAME, FOLDER_FILES, LIBRARY_NAME, MAX_CONFIG_BYTES, WEIGHTS_NAME, library_version
from lightning_gen.model_card import CardInfo, MetricResult

if TYPE_CHECKING:
    from lightning_gen._base import GenerativeModule

__all__ = [
    "CardInfo",
    "ConfigMismatchError",
    "CorruptedWeightsError",
    "FormatError",
    "HashMismatchError",
    "MetricResult",
    "MissingFileError",
    "UnknownModelError",
    "WeightsMismatchError",
    "ZooEntry",
    "ZooError",
    "info",
    "list",
    "load",
    "load_pretrained",
    "local_dir",
    "model_class",
    "pull",
    "resolve_name",
    "sha256_file",
]

INDEX_PATH = Path(__file__).with_name("index.json")  # the registry; package data
PACKAGE_MODELS_DIR = Path(__file__).with_name("models")  # shipped Hub folders; package data
ZOO_DIR_ENV = "LIGHTNING_GEN_ZOO_DIR"
# The classes a zoo entry may name. The registry is read without importing them (``zoo list`` needs no torch);
# model_class() imports one when a model is built.
CLASS_MODULES = {"GANModule": "lightning_gen.gan", "VAE": "lightning_gen.vae"}

_COMMIT_RE = re.compile(r"[0-9a-f]{40}")
_SHA256_RE = re.compile(r"[0-9a-f]{64}")


class ZooError(ValueError):
    """The registry itself is wrong (a bad pin, an unknown class) or a zoo name is misused."""


class UnknownModelError(ZooError, LookupError):
    """A zoo name that is not registered (the message lists close matches)."""


@dataclass(frozen=True)
class ZooEntry:
    """One registered model, as stored in ``index.json``."""

    name: str  # what load() takes, e.g. "dcgan-shapes32"
    class_name: str  # "GANModule" or "VAE": the class its config.json must name
    description: str  # one line for `lightning-gen zoo list`
    dataset: str  # training data, as named on the card
    license: str  # Hub licence id of the weights
    repo_id: str | None = None  # Hub repository of the published weights; None until published
    revision: str | None = None  # full commit hash pinned at publication; None until published
    sha256: str | None = None  # sha256 of model.safetensors; None until the weights are exported

    @property
    def published(self) -> bool:
        return self.repo_id is not None and self.revision is not None


def model_class(class_name: str) -> type[GenerativeModule]:
    """The class a zoo entry names (``"GANModule"`` or ``"VAE"``), imported on first use.

    Example:
        >>> model_class("VAE").__name__
        'VAE'
    """
    if class_name not in CLASS_MODULES:
        raise ZooError(f"Unknown zoo class {class_name!r}; expected one of {', '.join(sorted(CLASS_MODULES))}.")
    return getattr(importlib.import_module(CLASS_MODULES[class_name]), class_name)


# The format's errors, re-exported from lightning_gen.hub_checks on first use: importing them means importing
# huggingface_hub's errors (and its HTTP client), which `lightning-gen zoo list` does not need.
_ERRORS = ("ConfigMismatchError", "CorruptedWeightsError", "FormatError", "HashMismatchError", "MissingFileError")
_ERRORS += ("WeightsMismatchError",)


def _checks() -> Any:
    return importlib.import_module("lightning_gen.hub_checks")


def __getattr__(name: str) -> Any:
    if name in _ERRORS:
        return getattr(_checks(), name)
    # CLASSES (name -> class) predates the lazy registry; it is built on first use so that reading the index
    # never imports torch.
    if name == "CLASSES":
        return {class_name: model_class(class_name) for class_name in CLASS_MODULES}
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _read_index() -> dict[str, ZooEntry]:
    try:
        raw = json.loads(INDEX_PATH.read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise ZooError(f"Cannot read the zoo index {INDEX_PATH} ({err}); reinstall lightning-gen.") from err
    known = {f.name for f in fields(ZooEntry)}
    entries: dict[str, ZooEntry] = {}
    for item in raw.get("models", []):
        entry = ZooEntry(**{k: v for k, v in item.items() if k in known})
        # Pins must be immutable: a branch name or short hash would let the bytes change under the name.
        if entry.revision is not None and not _COMMIT_RE.fullmatch(entry.revision):
            raise ZooError(f"Zoo entry {entry.name!r} pins revision {entry.revision!r}; it must be a full commit hash.")
        if entry.sha256 is not None and not _SHA256_RE.fullmatch(entry.sha256):
            raise ZooError(f"Zoo entry {entry.name!r} has sha256 {entry.sha256!r}; expected 64 lowercase hex digits.")
        if entry.class_name not in CLASS_MODULES:
            expected = ", ".join(sorted(CLASS_MODULES))
            raise ZooError(f"Zoo entry {entry.name!r} has class {entry.class_name!r}; expected one of {expected}.")
        entries[entry.name] = entry
    return entries


def list() -> builtins.list[str]:  # noqa: A001 - the public name the issue asks for
    """Names of the registered zoo models, sorted.

    Example:
        >>> import lightning_gen.zoo
        >>> "vae-shapes32" in lightning_gen.zoo.list()
        True
    """
    return sorted(_read_index())


def _unknown(name: str, names: builtins.list[str]) -> UnknownModelError:
    # Near spellings first, then names containing what was typed ("dcgan" -> "dcgan-shapes32").
    close = difflib.get_close_matches(name, names, n=3, cutoff=0.75)
    close = (close + [n for n in names if name and name.lower() in n.lower() and n not in close])[:3]
    suggestion = f" Did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
    return UnknownModelError(
        f"{name!r} is not a lightning-gen zoo model.{suggestion} Registered: {', '.join(names) or 'none'} "
        "(`lightning-gen zoo list`). A Hub model is addressed as ORG/NAME and a local one by its folder path."
    )


def info(name: str) -> ZooEntry:
    """The registry entry of ``name``; raises :class:`UnknownModelError` with the closest names."""
    entries = _read_index()
    if name not in entries:
        raise _unknown(name, sorted(entries))
    return entries[name]


def _local_roots() -> builtins.list[Path]:
    return [Path(p) for p in os.environ.get(ZOO_DIR_ENV, "").split(os.pathsep) if p] + [PACKAGE_MODELS_DIR]


def local_dir(name: str) -> Path | None:
    """The first local copy of zoo model ``name`` (a folder with config.json and model.safetensors)."""
    for root in _local_roots():
        folder = root / name
        if (folder / CONFIG_NAME).is_file() and (folder / WEIGHTS_NAME).is_file():
            return folder
    return None


def _require_sha256(entry: ZooEntry) -> str:
    if entry.sha256 is None:
        raise _checks().MissingFileError(
            f"Zoo model {entry.name!r} has no exported weights yet (no sha256 in {INDEX_PATH.name}). After training, "
            f"run `lightning-gen zoo export CKPT lightning_gen/zoo/models/{entry.name} --zoo-name {entry.name}`."
        )
    return entry.sha256


def load(
    name: str, *, source: Literal["auto", "local", "hub"] = "auto", device: str = "cpu", force_download: bool = False
) -> GenerativeModule:
    """Load a registered zoo model, its weights verified against the pinned sha256.

    Args:
        name: a name from :func:`list`.
        source: ``"auto"`` uses a local copy when there is one, else the Hub (see the module
            docstring); ``"local"`` and ``"hub"`` force one of them.
        device: where the returned module lives.
        force_download: download from the Hub again even if cached (implies ``source="hub"``).

    Raises:
        UnknownModelError: ``name`` is not registered (the message lists close matches).
        HashMismatchError: the weights found are not the pinned ones.
        MissingFileError: not exported yet, or not available from the requested source.
    """
    if source not in ("auto", "local", "hub"):
        raise ValueError(f"source must be 'auto', 'local' or 'hub', got {source!r}.")
    entry = info(name)
    sha256 = _require_sha256(entry)
    cls = model_class(entry.class_name)
    folder = local_dir(name)
    if folder is not None and source != "hub" and not force_download:
        return cls.from_pretrained(folder, expected_sha256=sha256, map_location=device)
    if source == "local":
        roots = ", ".join(str(r) for r in _local_roots())
        raise _checks().MissingFileError(f"No local copy of zoo model {name!r} (searched {roots}; ${ZOO_DIR_ENV} adds folders).")
    if not entry.published:
        raise _checks().MissingFileError(
            f"Zoo model {name!r} is not published on the Hub and has no local copy; reinstall lightning-gen, or "
            f"publish it with `lightning-gen zoo push {name} --repo-id ORG/NAME`."
        )
    return cls.from_pretrained(
        entry.repo_id,
        revision=entry.revision,
        expected_sha256=sha256,
        map_location=device,
        force_download=force_download,
    )


def resolve_name(name: str) -> tuple[dict[str, Any], str] | None:
    """Where ``GANModule.from_pretrained(name)`` finds zoo model ``name``: (location, pinned sha256), or None.

    The registry hook of :func:`lightning_gen.hub.resolve_registered_name` (entry-point group
    ``lightning_gen.model_names``): the Hub layer calls it at call time and never imports the zoo itself.
    The location is the local copy when there is one, else the Hub repository at the pinned commit.

    Raises:
        MissingFileError: ``name`` is registered but has neither exported weights nor a copy to load.

    Example:
        >>> location, sha256 = resolve_name("vae-shapes32")
        >>> Path(location["path"]).name, sha256 == info("vae-shapes32").sha256
        ('vae-shapes32', True)
        >>> resolve_name("not-a-zoo-model") is None
        True
    """
    entry = _read_index().get(name)
    if entry is None:
        return None
    sha256 = _require_sha256(entry)
    folder = local_dir(name)
    if folder is not None:
        return {"path": str(folder), "revision": None}, sha256
    if not entry.published:
        raise _checks().MissingFileError(
            f"Zoo model {name!r} has no local copy and is not published on the Hub; reinstall lightning-gen, or "
            f"load it with `lightning_gen.zoo.load({name!r})` after exporting it."
        )
    return {"path": entry.repo_id, "revision": entry.revision}, sha256


def pull(name_or_repo: str, revision: str | None = None, *, force_download: bool = False) -> Path:
    """Download a zoo model (at its pinned commit) or a Hub repository into the Hugging Face cache.

    Fetches the config, weights, card, sample grid and recipe, and checks the weights against the
    sha256 in config.json and, for a zoo model, the pinned one. Returns the snapshot folder.
    """
    entries = _read_index()
    pin = None
    if name_or_repo in entries:
        entry = entries[name_or_repo]
        pin = _require_sha256(entry)
        if revision is not None:
            raise ZooError(f"Zoo model {name_or_repo!r} is pinned to {entry.revision}; do not pass a revision.")
        if not entry.published:
            raise _checks().MissingFileError(f"Zoo model {name_or_repo!r} is not published on the Hub yet; nothing to pull.")
        repo_id, revision = entry.repo_id, entry.revision
    elif name_or_repo.count("/") == 1:
        repo_id = name_or_repo
    else:
        raise _unknown(name_or_repo, sorted(entries))
    from huggingface_hub import snapshot_download

    from lightning_gen._base import GenerativeModule

    folder = Path(
        snapshot_download(
            repo_id, revision=revision, allow_patterns=builtins.list(FOLDER_FILES), force_download=force_download,
            library_name=LIBRARY_NAME, library_version=library_version(),
        )
    )
    source = f"Hub repository {repo_id}@{folder.name[:12]}"
    if pin is not None:
        source = f"zoo model {name_or_repo!r} from {repo_id}@{revision}"
    config_path = folder / CONFIG_NAME
    if not config_path.is_file() or config_path.stat().st_size > MAX_CONFIG_BYTES:
        raise _checks().MissingFileError(f"{source} has no usable {CONFIG_NAME}; it is not a lightning-gen model.")
    config = json.loads(config_path.read_text())
    _checks().validate_config(GenerativeModule, config, source)  # a lightning-gen model of a known class, sane values
    _checks().verify_weights(folder / WEIGHTS_NAME, config, source, pin)
    return folder


def load_pretrained(
    name_or_repo_or_dir: str | os.PathLike, *, revision: str | None = None, device: str = "cpu"
) -> GenerativeModule:
    """Load a model from a local folder, a zoo name or a Hub id ``ORG/NAME``; the class comes from config.json.

    Example:
        >>> model = load_pretrained("dcgan-shapes32")
        >>> model = load_pretrained("my-org/my-gan", revision="main")  # doctest: +SKIP
    """
    from lightning_gen._base import GenerativeModule

    text = os.fspath(name_or_repo_or_dir)
    if Path(text).is_dir():
        return GenerativeModule.from_pretrained(text, map_location=device)
    entries = _read_index()
    if text in entries:
        if revision is not None:
            raise ZooError(f"Zoo model {text!r} is pinned to {entries[text].revision}; do not pass a revision.")
        return load(text, device=device)
    if text.count("/") == 1 and not text.startswith((".", "/", "~")):
        return GenerativeModule.from_pretrained(text, revision=revision, map_location=device)
    raise _unknown(text, sorted(entries))


def update_index_entry(name: str, **changes: Any) -> ZooEntry:
    """Change fields of an entry in ``index.json`` (``lightning-gen zoo export/push`` do; commit the file)."""
    raw = json.loads(INDEX_PATH.read_text())
    unknown = set(changes) - {f.name for f in fields(ZooEntry)}
    if unknown:
        raise ValueError(f"Unknown zoo entry fields {sorted(unknown)}.")
    for item in raw.get("models", []):
        if item.get("name") == name:
            item.update(changes)
            break
    else:
        raise _unknown(name, sorted(item.get("name", "") for item in raw.get("models", [])))
    INDEX_PATH.write_text(json.dumps(raw, indent=2) + "\n")
    return info(name)
