"""The lightning-gen model zoo: pretrained generators registered by name, and Hub loading by id or folder.

What this package is for: ``lightning_gen.zoo.load("dcgan-shapes32")`` in one line, the registry
behind it (``lightning_gen/zoo/index.json``, shipped with the package), and
:func:`load_pretrained`, which the ``lightning-gen sample --model`` command uses for zoo names, Hub
ids and local folders alike. The Hub format and the errors live in :mod:`lightning_gen.zoo.hub`,
model cards in :mod:`lightning_gen.zoo.card`, the ``lightning-gen zoo`` command in
:mod:`lightning_gen.zoo.cli`. What it is not: a training recipe store; recipes live in the
repository's ``zoo/<name>/recipe.yaml``.

Every registry entry pins the sha256 of its ``model.safetensors`` and, once published, the Hub
commit it was pushed as. :func:`load` looks for the weights in this order:

1. a local copy ``<root>/<name>/`` (``config.json`` + ``model.safetensors``), for each root in
   ``$LIGHTNING_GEN_ZOO_DIR`` (if set) and then the ``zoo/`` folder of a source checkout. Small zoo
   models are committed there, which is how ``lightning-gen sample --model dcgan-shapes32`` works on
   a fresh clone without network;
2. the Hub repository at the pinned commit, through the Hugging Face cache (so a model downloaded
   once also loads with ``HF_HUB_OFFLINE=1``).

Either way the weights must have the pinned sha256, or loading fails with
:class:`~lightning_gen.zoo.hub.HashMismatchError`.

Example:
    >>> import lightning_gen.zoo as zoo
    >>> "dcgan-shapes32" in zoo.list()
    True
    >>> zoo.info("dcgan-shapes32").class_name
    'GANModule'
    >>> model = zoo.load("dcgan-shapes32")  # doctest: +SKIP
    >>> images = model.sample(16, seed=0)  # doctest: +SKIP
"""

from __future__ import annotations

import builtins
import difflib
import json
import os
import re
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any, Literal

from lightning_gen.zoo.hub import (
    CONFIG_NAME,
    PULL_FILES,
    WEIGHTS_NAME,
    ConfigMismatchError,
    CorruptedWeightsError,
    HashMismatchError,
    HubMixin,
    HubUnreachableError,
    MissingFileError,
    RepoNotFoundError,
    RevisionNotFoundError,
    UnknownModelError,
    UnsafeCheckpointError,
    WeightsMismatchError,
    ZooError,
    download,
    from_pretrained,
    is_repo_id,
    load_folder,
    resolve_class,
    sha256_file,
    verify_weights,
)

__all__ = [
    "ConfigMismatchError",
    "CorruptedWeightsError",
    "HashMismatchError",
    "HubMixin",
    "HubUnreachableError",
    "MissingFileError",
    "RepoNotFoundError",
    "RevisionNotFoundError",
    "UnknownModelError",
    "UnsafeCheckpointError",
    "WeightsMismatchError",
    "ZooEntry",
    "ZooError",
    "info",
    "list",
    "load",
    "load_pretrained",
    "local_dir",
    "pull",
    "sha256_file",
    "verify_weights",
]

# The registry. Package data, so installed wheels and editable installs read the same file.
INDEX_PATH = Path(__file__).with_name("index.json")
# The zoo/ folder of a source checkout (two levels above this package), when there is one. The
# pyproject.toml check keeps an unrelated site-packages/zoo from being mistaken for it.
_ROOT = Path(__file__).resolve().parents[2]
SOURCE_ZOO_DIR: Path | None = _ROOT / "zoo" if (_ROOT / "pyproject.toml").is_file() else None
ZOO_DIR_ENV = "LIGHTNING_GEN_ZOO_DIR"

_COMMIT_RE = re.compile(r"[0-9a-f]{40}")
_SHA256_RE = re.compile(r"[0-9a-f]{64}")


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
    close += [n for n in names if name and name.lower() in n.lower() and n not in close]
    close = close[:3]
    suggestion = f" Did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
    return UnknownModelError(
        f"{name!r} is not a lightning-gen zoo model.{suggestion} Registered: {', '.join(names) or 'none'} "
        "(`lightning-gen zoo list`). A Hub model is addressed as ORG/NAME and a local one by its folder path."
    )


def info(name: str) -> ZooEntry:
    """The registry entry of ``name``.

    Raises:
        UnknownModelError: with the closest registered names.
    """
    entries = _read_index()
    if name not in entries:
        raise _unknown(name, sorted(entries))
    return entries[name]


def _local_roots() -> builtins.list[Path]:
    roots = [Path(p) for p in os.environ.get(ZOO_DIR_ENV, "").split(os.pathsep) if p]
    if SOURCE_ZOO_DIR is not None:
        roots.append(SOURCE_ZOO_DIR)
    return roots


def local_dir(name: str) -> Path | None:
    """The first local copy of zoo model ``name`` (a folder with config.json and model.safetensors)."""
    for root in _local_roots():
        folder = root / name
        if (folder / CONFIG_NAME).is_file() and (folder / WEIGHTS_NAME).is_file():
            return folder
    return None


def _require_sha256(entry: ZooEntry) -> str:
    if entry.sha256 is None:
        raise MissingFileError(
            f"Zoo model {entry.name!r} has no exported weights yet (no sha256 in {INDEX_PATH.name}). After training, "
            f"run `lightning-gen zoo export CKPT zoo/{entry.name} --zoo-name {entry.name}`."
        )
    return entry.sha256


def load(
    name: str,
    *,
    source: Literal["auto", "local", "hub"] = "auto",
    device: str = "cpu",
    force_download: bool = False,
) -> Any:
    """Load a registered zoo model, its weights verified against the pinned sha256.

    Args:
        name: a name from :func:`list`.
        source: ``"auto"`` uses a local copy when there is one, else the Hub (see the module
            docstring); ``"local"`` and ``"hub"`` force one of them.
        device: where the returned module lives.
        force_download: download from the Hub again even if cached (implies ``source="hub"``).

    Returns:
        A ``GANModule`` or ``VAE`` in eval mode.

    Raises:
        UnknownModelError: ``name`` is not registered (the message lists close matches).
        HashMismatchError: the weights found are not the pinned ones.
        MissingFileError: not exported yet, or not available from the requested source.
        HubUnreachableError: only the Hub has it and the Hub cannot be reached.
    """
    if source not in ("auto", "local", "hub"):
        raise ValueError(f"source must be 'auto', 'local' or 'hub', got {source!r}.")
    entry = info(name)
    sha256 = _require_sha256(entry)
    cls = resolve_class(entry.class_name)
    folder = local_dir(name)
    if folder is not None and source != "hub" and not force_download:
        return load_folder(folder, cls, expected_sha256=sha256, device=device, source=f"zoo folder {folder}")
    if source == "local":
        roots = ", ".join(str(r) for r in _local_roots()) or "none"
        raise MissingFileError(
            f"No local copy of zoo model {name!r} (searched {roots}; set ${ZOO_DIR_ENV} to add a folder). "
            "Use source='hub' to download it."
        )
    if not entry.published:
        raise MissingFileError(
            f"Zoo model {name!r} is not published on the Hub yet and has no local copy. In a source checkout its "
            f"weights belong in zoo/{name}/; publish them with `lightning-gen zoo push {name} --repo-id ORG/NAME`."
        )
    return from_pretrained(
        entry.repo_id, cls, entry.revision, expected_sha256=sha256, device=device, force_download=force_download
    )


def pull(name_or_repo: str, revision: str | None = None, *, force_download: bool = False) -> Path:
    """Download a zoo model (at its pinned commit) or a Hub repository into the Hugging Face cache.

    Fetches the weights, config, card, sample grid and recipe, and checks the weights against the
    sha256 in config.json and, for a zoo model, against the pinned one. Returns the snapshot folder.
    """
    entries = _read_index()
    if name_or_repo in entries:
        entry = entries[name_or_repo]
        sha256 = _require_sha256(entry)
        if revision is not None:
            raise ValueError(f"Zoo model {name_or_repo!r} is pinned to {entry.revision}; do not pass a revision.")
        if not entry.published:
            raise MissingFileError(
                f"Zoo model {name_or_repo!r} is not published on the Hub yet; nothing to pull "
                f"(`lightning-gen zoo push {name_or_repo} --repo-id ORG/NAME` publishes it)."
            )
        folder = download(entry.repo_id, entry.revision, files=PULL_FILES, force_download=force_download)
        verify_weights(folder, sha256, source=f"zoo model {name_or_repo!r} from {entry.repo_id}@{entry.revision}")
        return folder
    if is_repo_id(name_or_repo):
        folder = download(name_or_repo, revision, files=PULL_FILES, force_download=force_download)
        verify_weights(folder, source=f"Hub repository {name_or_repo}@{folder.name[:12]}")
        return folder
    raise _unknown(name_or_repo, sorted(entries))


def load_pretrained(name_or_repo_or_dir: str | os.PathLike, *, revision: str | None = None, device: str = "cpu") -> Any:
    """Load a model from a zoo name, a Hub id ``ORG/NAME`` or a local folder; the class comes from config.json.

    This is what ``lightning-gen sample --model`` calls.

    Args:
        name_or_repo_or_dir: an existing folder wins, then a registered zoo name, then a Hub id.
        revision: Hub branch, tag or commit (Hub ids only; zoo names are pinned).
        device: where the returned module lives.

    Example:
        >>> model = load_pretrained("dcgan-shapes32")  # doctest: +SKIP
        >>> model = load_pretrained("my-org/my-gan", revision="main")  # doctest: +SKIP
        >>> model = load_pretrained("exports/my-gan")  # doctest: +SKIP
    """
    text = os.fspath(name_or_repo_or_dir)
    if Path(text).is_dir():
        return from_pretrained(text, None, revision, device=device)
    entries = _read_index()
    if text in entries:
        if revision is not None:
            raise ValueError(f"Zoo model {text!r} is pinned to {entries[text].revision}; do not pass a revision.")
        return load(text, device=device)
    if is_repo_id(text):
        return from_pretrained(text, None, revision, device=device)
    raise _unknown(text, sorted(entries))


def update_index_entry(name: str, **changes: Any) -> ZooEntry:
    """Change fields of a registry entry in ``index.json`` (used by ``lightning-gen zoo export/push``).

    Only meaningful in a source checkout: the edited file is the one to commit.
    """
    raw = json.loads(INDEX_PATH.read_text())
    known = {f.name for f in fields(ZooEntry)}
    unknown = set(changes) - known
    if unknown:
        raise ValueError(f"Unknown zoo entry fields {sorted(unknown)}; known: {sorted(known)}.")
    for item in raw.get("models", []):
        if item.get("name") == name:
            item.update(changes)
            break
    else:
        raise _unknown(name, sorted(item.get("name", "") for item in raw.get("models", [])))
    INDEX_PATH.write_text(json.dumps(raw, indent=2) + "\n")
    return info(name)


def entry_as_dict(entry: ZooEntry) -> dict[str, Any]:
    """A registry entry as a plain dict (for printing and JSON)."""
    return asdict(entry)
