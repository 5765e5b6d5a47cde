"""What a sweep runs: the configs, the grid or search space and the seeds (the settings they share: :mod:`.settings`).

Everything here is plain data and parsing; nothing trains and nothing touches a study. :mod:`.study` turns a
:class:`SweepSpec` into an Optuna study, :mod:`.trial` trains one of its trials.

Example:
    >>> grid = parse_grid(["model.loss=bce,hinge", "model.n_critic=1,2"])
    >>> grid
    {'model.init_args.loss': ['bce', 'hinge'], 'model.init_args.n_critic': ['1', '2']}
    >>> parse_search(["model.lr_g=1e-4:1e-3:log", "model.loss=bce,hinge"])["model.init_args.lr_g"]
    FloatDistribution(high=0.001, log=True, low=0.0001, step=None)
"""

from __future__ import annotations

import hashlib
import importlib
import inspect
import itertools
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lightning_gen.sweep.settings import SweepSettings

__all__ = [
    "Configuration",
    "SweepSpec",
    "config_label",
    "normalize_key",
    "parse_grid",
    "parse_search",
    "parse_seeds",
    "short_key",
]

# Stems that say nothing about a config, so its folder names it instead (zoo/<name>/recipe.yaml).
_GENERIC_STEMS = ("recipe", "config", "configs")


# ------------------------------------------------------------------------------------------------------- keys


def normalize_key(key: str) -> str:
    """Turn a grid or search key into the LightningCLI key it overrides.

    ``model.loss`` and ``data.image_size`` are short for ``model.init_args.loss`` and ``data.init_args.image_size``
    (the configs select their classes with ``class_path``); other keys are kept.

    Example:
        >>> normalize_key("model.loss"), normalize_key("model.init_args.loss"), normalize_key("trainer.precision")
        ('model.init_args.loss', 'model.init_args.loss', 'trainer.precision')
    """
    key = key.strip().lstrip("-")
    parts = key.split(".")
    if not key or any(not part for part in parts):
        raise ValueError(f"Key {key!r} is not a dotted config key such as 'model.loss' or 'trainer.precision'.")
    if parts[0] == "seed_everything":
        raise ValueError("Set seeds with --seeds 0,1 (seeds=[0, 1] in Python), not with a grid over seed_everything.")
    if parts[0] in ("model", "data") and len(parts) > 1 and parts[1] not in ("class_path", "init_args", "dict_kwargs"):
        parts.insert(1, "init_args")
    return ".".join(parts)


def short_key(key: str) -> str:
    """The name a full key goes by in tables, plots and Optuna parameters (``model.init_args.loss`` -> ``loss``).

    Example:
        >>> short_key("model.init_args.loss"), short_key("data.init_args.batch_size"), short_key("trainer.precision")
        ('loss', 'data.batch_size', 'trainer.precision')
    """
    parts = key.split(".")
    if parts[:2] == ["model", "init_args"]:
        return ".".join(parts[2:])
    if len(parts) > 1 and parts[1] == "init_args":
        return ".".join([parts[0], *parts[2:]])
    return key


def _split_values(text: str) -> list[str]:
    """Split ``a,b,c`` on commas outside brackets and quotes, so ``[0.5,0.9]`` stays one value."""
    values, current, depth, quote = [], [], 0, None
    for char in text:
        if quote:
            quote = None if char == quote else quote
        elif char in "'\"":
            quote = char
        elif char in "[({":
            depth += 1
        elif char in "])}":
            depth -= 1
        elif char == "," and depth == 0:
            values.append("".join(current).strip())
            current = []
            continue
        current.append(char)
    values.append("".join(current).strip())
    return values


def _entries(entries: Sequence[str], option: str) -> list[tuple[str, str, str]]:
    seen: dict[str, str] = {}
    parsed = []
    for entry in entries:
        key, sep, text = entry.partition("=")
        if not sep:
            raise ValueError(f"{option} entry {entry!r} has no '='; write it as KEY=..., e.g. model.loss=bce,hinge.")
        full = normalize_key(key)
        if full in seen:
            raise ValueError(f"Key {key!r} is given twice ({seen[full]!r} and {entry!r}); give all its values once.")
        seen[full] = entry
        parsed.append((entry, full, text))
    return parsed


def parse_grid(entries: Sequence[str]) -> dict[str, list[str]]:
    """Parse ``--grid KEY=V1,V2,...`` entries into ``{full key: [values]}``, in the order given.

    Values stay strings: LightningCLI parses them against the argument's type (``null`` is ``None``, ``[0.5,0.9]``
    a list). A key with one value is a fixed override for every run whose model or data class accepts it.

    Raises:
        ValueError: An entry without ``=``, an empty value, or a key given twice.
    """
    grid: dict[str, list[str]] = {}
    for entry, full, text in _entries(entries, "--grid"):
        values = _split_values(text)
        if any(value == "" for value in values):
            raise ValueError(f"Grid entry {entry!r} has an empty value; separate values with single commas.")
        grid[full] = list(dict.fromkeys(values))  # duplicates would only repeat runs
    return grid


def _number(text: str, entry: str) -> int | float:
    try:
        return int(text)
    except ValueError:
        pass
    try:
        return float(text)
    except ValueError:
        raise ValueError(f"Search entry {entry!r}: {text!r} is not a number; write KEY=LOW:HIGH[:log].") from None


def parse_search(entries: Sequence[str]) -> dict[str, Any]:
    """Parse ``--search`` entries into Optuna distributions: ``KEY=LOW:HIGH[:log]`` or ``KEY=A,B,C``.

    ``LOW:HIGH`` with two integers is an integer range, otherwise a float range; ``:log`` samples on a log scale.
    ``A,B,C`` is a categorical choice (values stay strings, as in a grid).

    Raises:
        ValueError: A malformed entry, ``LOW >= HIGH``, or a log range that is not positive.
    """
    from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

    space: dict[str, Any] = {}
    for entry, full, text in _entries(entries, "--search"):
        parts = text.split(":")
        if len(parts) in (2, 3) and "," not in text:
            log = len(parts) == 3
            if log and parts[2] != "log":
                raise ValueError(f"Search entry {entry!r}: the third field may only be 'log', got {parts[2]!r}.")
            low, high = _number(parts[0], entry), _number(parts[1], entry)
            if not low < high:
                raise ValueError(f"Search entry {entry!r}: LOW ({low}) must be below HIGH ({high}).")
            if log and low <= 0:
                raise ValueError(f"Search entry {entry!r}: a log range needs LOW > 0, got {low}.")
            if isinstance(low, int) and isinstance(high, int):
                space[full] = IntDistribution(low, high, log=log)
            else:
                space[full] = FloatDistribution(float(low), float(high), log=log)
        else:
            values = _split_values(text)
            if len(values) < 2 or any(value == "" for value in values):
                raise ValueError(
                    f"Search entry {entry!r} is neither a range LOW:HIGH[:log] nor a choice of values A,B,C."
                )
            space[full] = CategoricalDistribution(list(dict.fromkeys(values)))
    return space


def parse_seeds(text: str) -> list[int]:
    """``"0,1,2"`` or ``"0-2"`` -> ``[0, 1, 2]``.

    Example:
        >>> parse_seeds("0-2,7")
        [0, 1, 2, 7]
    """
    seeds: list[int] = []
    for part in text.split(","):
        part = part.strip()
        match = re.fullmatch(r"(\d+)-(\d+)", part)
        try:
            seeds.extend(range(int(match[1]), int(match[2]) + 1) if match else [int(part)])
        except ValueError:
            raise ValueError(f"Seeds must be non-negative integers like 0,1,2 or 0-4, got {text!r}.") from None
    return list(dict.fromkeys(seeds))


def config_label(config: str | os.PathLike) -> str:
    """Name a config by its file stem, or by its folder when the stem is generic (``zoo/dcgan-shapes32/recipe.yaml``).

    Example:
        >>> config_label("zoo/dcgan-shapes32/recipe.yaml"), config_label("configs/hinge.yaml")
        ('dcgan-shapes32', 'hinge')
    """
    path = Path(config)
    if path.stem.lower() in _GENERIC_STEMS and path.parent.name:
        return path.parent.name
    return path.stem


# ------------------------------------------------------------------------------------------------ configs


def _resolve_class(class_path: Any) -> type | None:
    if not isinstance(class_path, str):
        return None
    candidates = (
        [class_path] if "." in class_path else [f"lightning_gen.{class_path}", f"lightning_gen.data.{class_path}"]
    )
    for candidate in candidates:
        module_name, _, attribute = candidate.rpartition(".")
        try:
            return getattr(importlib.import_module(module_name), attribute)
        except (ImportError, AttributeError):
            continue
    return None


def _config_classes(config: str) -> dict[str, type | None]:
    import yaml

    path = Path(config)
    if not path.is_file():
        raise FileNotFoundError(f"Config {config!r} does not exist; pass LightningCLI configs with --config PATH.")
    content = yaml.safe_load(path.read_text()) or {}
    if not isinstance(content, dict):
        raise ValueError(f"Config {config!r} is not a LightningCLI config (a YAML mapping with model/data/trainer).")
    classes = {}
    for section in ("model", "data"):
        entry = content.get(section)
        classes[section] = _resolve_class(entry.get("class_path")) if isinstance(entry, dict) else None
    return classes


def _accepts(classes: Mapping[str, type | None], key: str) -> bool:
    """Whether a config's model or data class takes the argument a key sets (unknown classes take anything)."""
    parts = key.split(".")
    if parts[0] not in classes or len(parts) < 3 or parts[1] != "init_args":
        return True
    cls = classes[parts[0]]
    if cls is None:
        return True
    parameters = inspect.signature(cls.__init__).parameters
    return parts[2] in parameters or any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values())


def _sha256(path: str) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


@dataclass(frozen=True)
class Configuration:
    """One configuration of a grid: a config file with overrides. Its seeds are separate trials.

    Attributes:
        label: Short name of the config file (see :func:`config_label`).
        params: ``{short key: value}`` of the overrides, as recorded in the Optuna trial.
    """

    label: str
    params: tuple[tuple[str, str], ...] = ()

    def describe(self, varied: Sequence[str]) -> str:
        """The changed settings, e.g. ``"loss=hinge, n_critic=2"`` (``"-"`` when none)."""
        shown = [f"{key}={value}" for key, value in self.params if key in varied]
        return ", ".join(shown) if shown else "-"


# ------------------------------------------------------------------------------------------------ the sweep


@dataclass(frozen=True)
class SweepSpec:
    """A whole sweep: configs crossed with a grid, or a search over a space, each configuration run once per seed.

    Args:
        configs: LightningCLI config files; each is an alternative, not a layer.
        grid: ``{key: values}`` from :func:`parse_grid`. With ``search``, only keys with one value (fixed overrides).
        search: ``{key: distribution}`` from :func:`parse_search`.
        trials: Configurations a search samples (each then runs once per seed).
        seeds: ``seed_everything`` values; ``None`` keeps each config's own seed.
        settings: Shared budget, schedule, protocol and objective.
    """

    configs: tuple[str, ...]
    settings: SweepSettings
    grid: Mapping[str, Sequence[str]] = field(default_factory=dict)
    search: Mapping[str, Any] = field(default_factory=dict)
    trials: int | None = None
    seeds: tuple[int, ...] | None = None

    def __post_init__(self) -> None:
        if not self.configs:
            raise ValueError("A sweep needs at least one LightningCLI config (--config PATH).")
        object.__setattr__(self, "configs", tuple(str(c) for c in self.configs))
        object.__setattr__(self, "grid", {normalize_key(k): [str(v) for v in vs] for k, vs in self.grid.items()})
        object.__setattr__(self, "search", {normalize_key(k): v for k, v in self.search.items()})
        if self.seeds is not None:
            object.__setattr__(self, "seeds", tuple(int(s) for s in self.seeds))
        crossed = [key for key, values in self.grid.items() if len(values) > 1]
        if self.search and crossed:
            raise ValueError(
                f"A search samples its keys; it cannot also cross grid values ({', '.join(crossed)}). Give those "
                f"keys as --search KEY=A,B, or a single value --grid KEY=V to fix them for every trial."
            )
        if self.search and (self.trials is None or self.trials < 1):
            raise ValueError(f"A search needs the number of configurations to sample: --trials N (got {self.trials}).")
        if not self.search and self.trials is not None:
            raise ValueError("--trials sets the size of a search; a grid runs every configuration (drop --trials).")
        for key, values in self.grid.items():
            if not values:
                raise ValueError(f"Grid key {key!r} has no values.")
        labels = [config_label(c) for c in self.configs]
        if len(set(labels)) != len(labels):
            raise ValueError(f"Configs must have distinct names, got {labels}; rename the files or their folders.")
        classes = {config: _config_classes(config) for config in self.configs}
        for key in [*self.grid, *self.search]:
            accepted = [_accepts(found, key) for found in classes.values()]
            if not any(accepted) or (key in self.search and not all(accepted)):
                names = sorted({cls.__name__ for found in classes.values() for cls in found.values() if cls})
                raise ValueError(
                    f"{'Not every' if any(accepted) else 'No'} config's model or data class takes the key {key!r} "
                    f"(classes: {', '.join(names)}). Check the spelling against `lightning-gen fit --config CONFIG "
                    f"--print_config`."
                )
        keys = [short_key(key) for key in [*self.grid, *self.search]]
        if "config" in keys or len(set(keys)) != len(keys):
            raise ValueError(f"Keys must have distinct short names other than 'config', got {keys}.")
        object.__setattr__(self, "_classes", classes)

    @property
    def kind(self) -> str:
        """``"search"`` or ``"grid"`` (a sweep without ``grid`` is a grid of its configs)."""
        return "search" if self.search else "grid"

    @property
    def seed_list(self) -> list[int | None]:
        """The seeds each configuration runs with (``[None]``: the config's own)."""
        return list(self.seeds) if self.seeds else [None]

    @property
    def full_keys(self) -> dict[str, str]:
        """``{short key: full LightningCLI key}`` of every grid or search key."""
        return {short_key(key): key for key in [*self.grid, *self.search]}

    @property
    def varied(self) -> list[str]:
        """Short keys that take several values (the "changed settings"), plus ``config`` for several configs."""
        keys = ["config"] if len(self.configs) > 1 else []
        keys += [short_key(k) for k, values in self.grid.items() if len(values) > 1]
        return keys + [short_key(k) for k in self.search]

    def config_paths(self) -> dict[str, str]:
        """``{label: absolute path}`` of the configs (trial processes may start in another folder)."""
        return {config_label(c): str(Path(c).resolve()) for c in self.configs}

    def keys_for(self, label: str) -> list[str]:
        """Full keys that apply to the config called ``label`` (a VAE does not take a GAN's ``n_critic``)."""
        config = next(c for c in self.configs if config_label(c) == label)
        classes = self._classes[config]  # type: ignore[attr-defined]
        return [key for key in [*self.grid, *self.search] if _accepts(classes, key)]

    def configurations(self) -> list[Configuration]:
        """Every configuration of a grid: configs x grid values, in order (keys apply where they fit)."""
        found = []
        for config in self.configs:
            label = config_label(config)
            keys = [key for key in self.keys_for(label) if key in self.grid]
            for values in itertools.product(*(self.grid[key] for key in keys)):
                found.append(Configuration(label, tuple((short_key(k), v) for k, v in zip(keys, values))))
        return list(dict.fromkeys(found))

    def identity(self) -> dict[str, Any]:
        """Everything that makes two runs of the sweep the same sweep; stored in the study and compared on joining.

        Config files are identified by content, so editing one asks for a new study instead of mixing results. The
        number of search trials is left out: raising ``--trials`` extends a search.
        """
        return {
            "kind": self.kind,
            "configs": {config_label(c): _sha256(c) for c in self.configs},
            "grid": {k: list(v) for k, v in self.grid.items()},
            "search": {k: repr(v) for k, v in self.search.items()},
            "seeds": list(self.seeds) if self.seeds else None,
            "settings": self.settings.to_dict(),
        }
