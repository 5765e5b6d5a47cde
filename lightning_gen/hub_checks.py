"""The errors of the Hub folder format and the checks that raise them, before anything is built from a folder.

What this module is for: :func:`validate_config` (``config.json``: a known class, typed and bounded values),
:func:`verify_weights` (``model.safetensors`` against the recorded and the pinned sha256), :func:`read_header_shapes`
and :func:`compare_shapes` (the weights' shapes against a dry run of the constructor), and the errors they raise.
The names of the format are :mod:`lightning_gen.hub_format`; the mixin that uses both is :mod:`lightning_gen.hub`.
It imports neither torch nor the training core.

Example:
    >>> from lightning_gen.hub_checks import FormatError, HashMismatchError
    >>> issubclass(HashMismatchError, FormatError) and issubclass(FormatError, ValueError)
    True
"""

from __future__ import annotations

import inspect
import math
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from huggingface_hub.errors import EntryNotFoundError, SafetensorsParsingError

from lightning_gen._files import sha256_file
from lightning_gen.hub_format import (
    CONFIG_NAME,
    FORMAT_VERSION,
    LIBRARY_NAME,
    META_KEY,
    SIZE_LIMITS,
    WEIGHTS_NAME,
    library_version,
)

__all__ = [
    "ConfigMismatchError",
    "CorruptedWeightsError",
    "FormatError",
    "HashMismatchError",
    "MissingFileError",
    "WeightsMismatchError",
    "compare_shapes",
    "read_header_shapes",
    "validate_config",
    "verify_weights",
]


class FormatError(ValueError):
    """A model folder that lightning-gen refuses to load or write; the message says what and how to fix it."""


class ConfigMismatchError(FormatError):
    """config.json is not ours, is a newer format, names an unknown class, or holds bad or unbounded values."""


class WeightsMismatchError(FormatError):
    """The weights' names or shapes do not match the networks config.json describes."""


class HashMismatchError(FormatError):
    """model.safetensors differs from the sha256 pinned by the caller (e.g. the zoo index)."""


class CorruptedWeightsError(FormatError, SafetensorsParsingError):
    """model.safetensors is unreadable, truncated, or differs from the sha256 its config.json records."""


class MissingFileError(EntryNotFoundError, FileNotFoundError):
    """A folder or repository lacks a file of the format (config.json, model.safetensors)."""



# --------------------------------------------------------------------------------------------------
# config.json: writing, and validating before anything is built
# --------------------------------------------------------------------------------------------------


def _constructor_parameters(cls: type) -> dict[str, inspect.Parameter]:
    params = dict(inspect.signature(cls.__init__).parameters)
    params.pop("self", None)
    return {k: p for k, p in params.items() if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)}


def _plain(name: str, value: Any) -> Any:
    """``value`` as JSON (tuples become lists), or raise naming the argument."""
    if value is None or isinstance(value, (bool, int, str)) or (isinstance(value, float) and math.isfinite(value)):
        return value
    if isinstance(value, (list, tuple)):
        return [_plain(f"{name}[{i}]", v) for i, v in enumerate(value)]
    raise ConfigMismatchError(
        f"Constructor argument {name!r} is {value!r}, which config.json cannot hold (it holds finite numbers, "
        "strings, booleans, None and lists). Build the model from plain values to save it in the Hub format."
    )


def _checked_value(name: str, value: Any, default: Any, source: str) -> Any:
    """One constructor argument read from config.json: type-checked against its default and bounded."""

    def refuse(expected: str) -> ConfigMismatchError:
        return ConfigMismatchError(
            f"{CONFIG_NAME} in {source} sets {name}={value!r:.80}; expected {expected}. The file was edited or "
            "not written by lightning-gen: re-export the folder with `save_pretrained`."
        )

    scalar = (bool, int, float, str, type(None))
    if isinstance(default, bool) and not isinstance(value, bool):
        raise refuse("true or false")
    is_int = isinstance(value, int) and not isinstance(value, bool)
    if isinstance(default, int) and not isinstance(default, bool) and not is_int:
        raise refuse("an integer")
    if isinstance(default, float) and (isinstance(value, bool) or not isinstance(value, (int, float))):
        raise refuse("a number")
    if isinstance(default, str) and not isinstance(value, str):
        raise refuse("a string")
    if isinstance(default, tuple):
        if not (isinstance(value, list) and len(value) == len(default) and all(isinstance(v, scalar) for v in value)):
            raise refuse(f"a list of {len(default)} values")
        value = tuple(value)  # JSON has no tuple; the constructors may check for one
    if not isinstance(value, (*scalar, tuple)):
        raise refuse("a number, string, boolean, null or short list")
    for item in value if isinstance(value, tuple) else (value,):
        if isinstance(item, float) and not math.isfinite(item):
            raise refuse("a finite number")
        if isinstance(item, int) and not -(2**31) <= item < 2**31 or isinstance(item, str) and len(item) > 256:
            raise refuse("a value of ordinary size")
    limit = SIZE_LIMITS.get(name)
    if limit is not None and isinstance(value, int) and not 0 <= value <= limit:
        raise refuse(f"an integer from 0 to {limit} (larger networks than this are refused before allocation)")
    return value


def _format_root(base: type) -> type:
    """The topmost class of ``base``'s hierarchy that has the format (``lightning_gen.hub.HubMixin``), by the MRO.

    Found rather than imported, so that this module does not depend on the mixin built on it.
    """
    from huggingface_hub import ModelHubMixin

    ours = [cls for cls in base.__mro__ if issubclass(cls, ModelHubMixin) and cls is not ModelHubMixin]
    return ours[-1] if ours else base


def _hub_class(base: type, name: Any, source: str) -> type:
    """The already-imported subclass of ``base`` (or ``base`` itself) named ``name``; nothing is imported."""

    def family(root: type) -> list[type]:
        found, stack = [], [root]
        while stack:
            found.append(stack.pop())
            stack.extend(found[-1].__subclasses__())
        return found

    if not isinstance(name, str):
        raise ConfigMismatchError(f"{CONFIG_NAME} in {source} has class_name {name!r:.80}; expected a class name.")
    root = _format_root(base)
    for cls in family(base):
        if cls.__name__ == name:
            return cls
    if name in {cls.__name__ for cls in family(root)}:
        raise ConfigMismatchError(
            f"{source} holds a {name}, not a {base.__name__}: load it with `{name}.from_pretrained(...)` or "
            "`lightning_gen.zoo.load_pretrained(...)`, which picks the class from config.json."
        )
    known = sorted({cls.__name__ for cls in family(root)} - {root.__name__, "GenerativeModule"})
    raise ConfigMismatchError(
        f"{CONFIG_NAME} in {source} names class {name!r:.80}, which is not a lightning-gen class (known: "
        f"{', '.join(known)}). Classes are never imported by name from a downloaded file; import your own "
        "subclass first and call `YourClass.from_pretrained(...)`."
    )


def validate_config(base: type, config: Any, source: str) -> tuple[type, dict[str, Any]]:
    """Check a parsed config.json before anything is built; return the class and its constructor arguments.

    Raises:
        ConfigMismatchError: naming the bad key or value and what was expected.
    """
    meta = config.get(META_KEY) if isinstance(config, dict) else None
    if not isinstance(meta, dict):
        old = isinstance(config, dict) and config.get("library_name") == LIBRARY_NAME
        raise ConfigMismatchError(
            f"{CONFIG_NAME} in {source} has no {META_KEY!r} section, so it was not written by lightning-gen "
            + ("0.1 (folder format 1); re-export it with this version." if old else "(or was edited).")
        )
    version = meta.get("format_version")
    if not isinstance(version, int) or isinstance(version, bool) or not 2 <= version <= FORMAT_VERSION:
        raise ConfigMismatchError(
            f"{source} uses folder format {version!r:.20}, but lightning-gen {library_version()} reads format "
            f"{FORMAT_VERSION}; upgrade with `pip install -U lightning-gen`."
        )
    weights = meta.get("weights")
    if not (
        isinstance(weights, dict)
        and isinstance(weights.get("networks"), list)
        and all(isinstance(n, str) for n in weights["networks"])
        and isinstance(weights.get("sha256"), (str, type(None)))
    ):
        raise ConfigMismatchError(f"{CONFIG_NAME} in {source} has a malformed 'weights' entry; re-export the folder.")
    cls = _hub_class(base, meta.get("class_name"), source)
    params = _constructor_parameters(cls)
    args = {k: v for k, v in config.items() if k != META_KEY}
    unknown = sorted(set(args) - set(params))
    if unknown:
        raise ConfigMismatchError(
            f"{CONFIG_NAME} in {source} passes {unknown} to {cls.__name__}, which does not take them. The folder "
            f"was probably written by a newer lightning-gen (installed: {library_version()}); upgrade it."
        )
    return cls, {k: _checked_value(k, v, _expected_default(cls, params[k], v), source) for k, v in args.items()}


def _expected_default(cls: type, param: inspect.Parameter, value: Any) -> Any:
    """What ``value`` is checked against: the default, or for a ``None`` default that the constructor resolves
    to a tuple (an annotation like ``tuple[float, float] | None``, e.g. GANModule's ``betas_g``) and a list
    value, a tuple of the annotated length."""
    if param.default is not None or not isinstance(value, list):
        return param.default
    try:
        hint = typing.get_type_hints(cls.__init__).get(param.name)
    except Exception:  # an annotation that does not resolve: check as a plain None default
        return None
    for member in typing.get_args(hint):
        items = typing.get_args(member)
        if typing.get_origin(member) is tuple and items and Ellipsis not in items:
            return (None,) * len(items)
    return None


def read_header_shapes(path: Path, source: str) -> dict[str, tuple[int, ...]]:
    """Tensor names and shapes from the safetensors header (the file is memory-mapped; no tensor is read)."""
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as handle:
            return {key: tuple(handle.get_slice(key).get_shape()) for key in handle.keys()}
    except Exception as err:  # safetensors raises SafetensorError, OSError or ValueError depending on the damage
        raise CorruptedWeightsError(
            f"{WEIGHTS_NAME} in {source} is not a readable safetensors file ({type(err).__name__}: {err}); it is "
            f"truncated or corrupted ({path.stat().st_size} bytes). Download it again (force_download=True) or "
            "re-export the folder."
        ) from err


def _describe(items: list[str], limit: int = 5) -> str:
    return ", ".join(items[:limit]) + (f", ... ({len(items) - limit} more)" if len(items) > limit else "")


def compare_shapes(expected: Mapping[str, tuple], found: Mapping[str, tuple], source: str, what: str) -> None:
    missing, unexpected = sorted(set(expected) - set(found)), sorted(set(found) - set(expected))
    common = sorted(set(expected) & set(found))
    shapes = [f"{k}: file {found[k]} vs model {expected[k]}" for k in common if found[k] != expected[k]]
    labelled = (("missing from the file", missing), ("not in the model", unexpected), ("shape mismatch", shapes))
    problems = [f"{label}: {_describe(items)}" for label, items in labelled if items]
    if problems:
        raise WeightsMismatchError(
            f"The weights in {source} do not fit the {what} its config.json describes ({'; '.join(problems)}). "
            "config.json and model.safetensors must come from the same model: re-export the folder with "
            "`save_pretrained` or `lightning-gen zoo export`."
        )



def verify_weights(path: Path, config: Mapping[str, Any], source: str, expected_sha256: str | None = None) -> None:
    """Check a weights file against a pinned sha256 and the one its config (checked by :func:`validate_config`) records.

    Raises:
        MissingFileError: there is no such file.
        HashMismatchError: the file differs from ``expected_sha256`` (a zoo pin).
        CorruptedWeightsError: the file differs from the sha256 config.json records.
    """
    if not path.is_file():
        raise MissingFileError(f"{source} has a {CONFIG_NAME} but no {WEIGHTS_NAME}: re-export or download it again.")
    actual = sha256_file(path)
    if expected_sha256 is not None and actual != expected_sha256.lower():
        raise HashMismatchError(
            f"{WEIGHTS_NAME} in {source} has sha256 {actual}, but {expected_sha256.lower()} was pinned. It is not the "
            "published file: download it again (force_download=True, `lightning-gen zoo pull NAME --force`) or, for a "
            "zoo model shipped with lightning-gen, reinstall the package."
        )
    recorded = config[META_KEY]["weights"]["sha256"]  # the config was validated first
    if recorded and actual != recorded:
        raise CorruptedWeightsError(
            f"{WEIGHTS_NAME} in {source} has sha256 {actual}, but its {CONFIG_NAME} records {recorded}: the file is "
            f"truncated or corrupted ({path.stat().st_size} bytes) or was replaced without re-exporting. Download it "
            "again (force_download=True) or re-export the folder."
        )
