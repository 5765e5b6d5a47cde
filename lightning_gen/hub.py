"""The Hugging Face Hub format of lightning-gen modules, on ``huggingface_hub``'s own ``ModelHubMixin``.

What this module is for: :class:`HubMixin`, the base that gives ``GANModule`` and ``VAE`` the
standard ``save_pretrained`` / ``from_pretrained`` / ``push_to_hub`` of ``huggingface_hub`` (same
signatures: ``branch``, ``create_pr``, ``token``, ``private=None``, ``cache_dir``,
``local_files_only``, ``force_download``, ``revision``), with lightning-gen's rules for what goes in
the folder and how it is read back. What it is not: a registry (that is :mod:`lightning_gen.zoo`), a
command line (:mod:`lightning_gen.cli`), or a training checkpoint (no optimizer state; resume from
the Lightning ``.ckpt``).

Folder format (``format_version`` 2)::

    config.json        every constructor argument, flat, as ``PyTorchModelHubMixin`` writes them, plus
                       a "lightning_gen" section: format version, library version, class name, data
                       normalisation, the networks stored and the sha256 of the weights file
    model.safetensors  inference weights only, named "<network>.<state_dict key>": GANModule stores
                       "generator_ema" (used by sample()) when it has an EMA and "generator" (the raw
                       weights) always; VAE stores "encoder" and "decoder". "discriminator" only when
                       saved with include_discriminator=True.
    README.md          the model card: metrics in the model-index, the recipe with a caution
    samples.png        an 8x8 grid from module.sample(64, seed=0)

Saving is byte-reproducible (the zoo pins sha256s). Loading never executes code from the folder:
config.json is parsed as JSON and validated (types, bounds, known class) before any module is built;
the weights are safetensors, whose header shapes are compared with a dry run of the constructor on
the ``meta`` device (no memory) before the real module is allocated; loading is strict. Errors of
our own are :class:`FormatError` (a ``ValueError``) and :class:`MissingFileError` (a
``huggingface_hub`` ``EntryNotFoundError``); network errors are ``huggingface_hub``'s own.
"""

from __future__ import annotations

import dataclasses
import hashlib
import inspect
import json
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from huggingface_hub import HfApi, ModelCard, ModelHubMixin, snapshot_download
from huggingface_hub.errors import EntryNotFoundError, SafetensorsParsingError

from lightning_gen._files import sha256_file
# The card types are re-exported: model_card_kwargs are CardInfo fields.
from lightning_gen.model_card import (  # noqa: F401
    METRIC_NAMES,
    RECIPE_CAUTION,
    TASK_TYPE,
    CardInfo,
    MetricResult,
    build_model_card,
)

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


def library_version() -> str:
    import lightning_gen  # lazily: this module is imported while lightning_gen initialises

    return lightning_gen.__version__


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
    for cls in family(base):
        if cls.__name__ == name:
            return cls
    if name in {cls.__name__ for cls in family(HubMixin)}:
        raise ConfigMismatchError(
            f"{source} holds a {name}, not a {base.__name__}: load it with `{name}.from_pretrained(...)` or "
            "`lightning_gen.zoo.load_pretrained(...)`, which picks the class from config.json."
        )
    known = sorted({cls.__name__ for cls in family(HubMixin)} - {"HubMixin", "GenerativeModule"})
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
    return cls, {k: _checked_value(k, v, params[k].default, source) for k, v in args.items()}


def _read_header_shapes(path: Path, source: str) -> dict[str, tuple[int, ...]]:
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


def _compare_shapes(expected: Mapping[str, tuple], found: Mapping[str, tuple], source: str, what: str) -> None:
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


# --------------------------------------------------------------------------------------------------
# The mixin
# --------------------------------------------------------------------------------------------------


class HubMixin(
    ModelHubMixin,
    library_name=LIBRARY_NAME,
    tags=["lightning-gen", "image-generation", "pytorch-lightning"],
    pipeline_tag=TASK_TYPE,
    repo_url=None,  # no public home yet; the card's usage section says how to install and load
    docs_url=None,
):
    """``huggingface_hub.ModelHubMixin`` with lightning-gen's folder format; the base of the generative modules.

    A class using it provides ``hparams`` holding every constructor argument, ``inference_networks()``,
    ``sample()``, ``image_size``, ``channels``, ``latent_dim`` and ``num_classes``.

    Example:
        >>> import tempfile, torch
        >>> from lightning_gen import GANModule
        >>> model = GANModule(image_size=16, channels=1, latent_dim=4, width=4)
        >>> folder = tempfile.mkdtemp()
        >>> model.save_pretrained(folder, samples=False)
        >>> same = GANModule.from_pretrained(folder)
        >>> torch.equal(same.sample(2, seed=0), model.sample(2, seed=0))
        True
    """

    # -- saving -------------------------------------------------------------------------------------

    def _networks_to_store(self, include_discriminator: bool) -> dict[str, torch.nn.Module]:
        networks = dict(self.inference_networks())
        if include_discriminator:
            if getattr(self, "discriminator", None) is None:
                raise ValueError(f"include_discriminator=True, but this {type(self).__name__} has no discriminator.")
            networks["discriminator"] = self.discriminator
        return networks

    def _weights_payload(self, networks: Mapping[str, torch.nn.Module]) -> bytes:
        from safetensors.torch import save

        state = {
            f"{name}.{key}": tensor.detach().to("cpu").contiguous()
            for name, net in networks.items()
            for key, tensor in net.state_dict().items()
        }
        # One metadata key only: safetensors writes the metadata map in hash order, so more keys would make
        # the bytes (and the sha256 the zoo pins) differ between two exports of the same weights.
        return save(state, metadata={"format": "pt"})

    def _hub_config(self, networks: Sequence[str], sha256: str, class_names: Sequence[str] | None) -> dict:
        if getattr(self, "custom_networks", False):
            raise ConfigMismatchError(
                f"This {type(self).__name__} was built with custom generator/discriminator modules, which config.json "
                "cannot describe. Share such a network with its own code, or save its state_dict with safetensors."
            )
        params = _constructor_parameters(type(self))
        # How to run on given hardware (compile, channels_last) is not part of the model: a downloaded model
        # starts plain, and the user opts in again where it helps.
        config = {k: _plain(k, v) for k, v in self.hparams.items() if k in params and k not in RUNTIME_ARGUMENTS}
        data = {"image_size": self.image_size, "channels": self.channels, "num_classes": self.num_classes}
        data.update(DATA_NORMALIZATION, **({"class_names": [str(c) for c in class_names]} if class_names else {}))
        config[META_KEY] = {
            "format_version": FORMAT_VERSION,
            "library_version": library_version(),
            "class_name": type(self).__name__,
            "data": data,
            "weights": {
                "file": WEIGHTS_NAME,
                "networks": sorted(networks),
                "sampling_network": "generator_ema" if "generator_ema" in networks else None,
                "sha256": sha256,
            },
        }
        return config

    def save_pretrained(
        self,
        save_directory: str | Path,
        *,
        config: dict | None = None,
        repo_id: str | None = None,
        push_to_hub: bool = False,
        model_card_kwargs: dict[str, Any] | None = None,
        include_discriminator: bool = False,
        samples: bool = True,
        class_names: Sequence[str] | None = None,
        **push_to_hub_kwargs: Any,
    ) -> str | None:
        """Write config.json, model.safetensors, README.md and samples.png (and push them if asked).

        Args:
            save_directory: created if needed; other files in it (e.g. recipe.yaml) are kept, and a
                recipe.yaml there goes into the card.
            config: not accepted: config.json is built from ``hparams`` (the constructor arguments).
            repo_id, push_to_hub, push_to_hub_kwargs: as for ``ModelHubMixin.save_pretrained``.
            model_card_kwargs: the card's content, the fields of :class:`CardInfo` (dataset, license,
                metrics, recipe, description...). Metrics not given are reported as "not measured".
            include_discriminator: also store the discriminator (e.g. to fine-tune); off by default.
            samples: draw samples.png with ``self.sample(64, seed=0)``.
            class_names: label names of a class-conditional model, recorded in config.json.

        Returns:
            None, or the commit URL when ``push_to_hub=True`` (as the mixin does).
        """
        if config is not None:
            raise ValueError("config.json is built from the module's hparams; save_pretrained does not take `config`.")
        folder = Path(save_directory)
        folder.mkdir(parents=True, exist_ok=True)
        info = CardInfo.from_kwargs(model_card_kwargs)
        networks = self._networks_to_store(include_discriminator)
        payload = self._weights_payload(networks)
        # Validated before writing anything, so a model that cannot be described leaves no half-written folder.
        config_data = self._hub_config(list(networks), hashlib.sha256(payload).hexdigest(), class_names)
        _write_atomically(folder / WEIGHTS_NAME, payload)
        _write_atomically(folder / CONFIG_NAME, (json.dumps(config_data, indent=2, sort_keys=True) + "\n").encode())
        if samples:
            from lightning_gen._images import save_grid

            save_grid(self.sample(64, seed=0), folder / SAMPLES_NAME, nrow=8)
        if info.recipe is None and (folder / RECIPE_NAME).is_file():
            info = dataclasses.replace(info, recipe=(folder / RECIPE_NAME).read_text())
        tags = self._hub_mixin_info.model_card_data.tags or []
        card = build_model_card(config_data, info, tags, samples=(folder / SAMPLES_NAME).is_file())
        _write_atomically(folder / CARD_NAME, card.encode())
        if push_to_hub:
            return self.push_to_hub(repo_id or folder.name, model_card_kwargs=model_card_kwargs, **push_to_hub_kwargs)
        return None

    def _save_pretrained(self, save_directory: Path) -> None:
        """The mixin's hook; :meth:`save_pretrained` writes the whole folder itself."""
        self.save_pretrained(save_directory)

    def generate_model_card(self, *args: Any, **model_card_kwargs: Any) -> ModelCard:
        """The model card :meth:`save_pretrained` would write (fields of :class:`CardInfo`)."""
        networks = self._networks_to_store(False)
        config = self._hub_config(list(networks), hashlib.sha256(self._weights_payload(networks)).hexdigest(), None)
        info = CardInfo.from_kwargs(model_card_kwargs)
        return ModelCard(build_model_card(config, info, self._hub_mixin_info.model_card_data.tags or [], samples=False))

    def push_to_hub(
        self,
        repo_id: str,
        *,
        config: dict | None = None,
        commit_message: str = DEFAULT_COMMIT_MESSAGE,
        private: bool | None = None,
        token: str | None = None,
        branch: str | None = None,
        create_pr: bool | None = None,
        allow_patterns: list[str] | str | None = None,
        ignore_patterns: list[str] | str | None = None,
        delete_patterns: list[str] | str | None = None,
        model_card_kwargs: dict[str, Any] | None = None,
    ) -> Any:
        """``ModelHubMixin.push_to_hub``, with the card naming ``repo_id`` and ``branch`` created when missing.

        Returns:
            huggingface_hub's ``CommitInfo`` (a ``str``, the commit URL; ``.oid`` is the commit to pin).
        """
        ensure_branch(repo_id, branch, private=private, token=token)
        return super().push_to_hub(
            repo_id,
            config=config,
            commit_message=commit_message,
            private=private,
            token=token,
            branch=branch,
            create_pr=create_pr,
            allow_patterns=allow_patterns,
            ignore_patterns=ignore_patterns,
            delete_patterns=delete_patterns,
            model_card_kwargs={"repo_id": repo_id, **(model_card_kwargs or {})},
        )

    # -- loading ------------------------------------------------------------------------------------

    @classmethod
    def from_pretrained(
        cls,
        pretrained_model_name_or_path: str | Path,
        *,
        force_download: bool = False,
        token: str | bool | None = None,
        cache_dir: str | Path | None = None,
        local_files_only: bool = False,
        revision: str | None = None,
        **model_kwargs: Any,
    ) -> Any:
        """Load a model saved by :meth:`save_pretrained` from a folder or a Hub repository.

        The arguments are ``ModelHubMixin.from_pretrained``'s. Both files of a repository come from one
        commit, through the Hugging Face cache (``HF_HUB_OFFLINE=1`` loads what is cached). Called on
        a base class (``GenerativeModule``), it builds the subclass config.json names.

        Args:
            model_kwargs: ``map_location`` (default "cpu"), ``expected_sha256`` (refuse other weights;
                the zoo passes its pins) and constructor arguments that override config.json's.

        Raises:
            ConfigMismatchError, WeightsMismatchError, HashMismatchError, CorruptedWeightsError,
            MissingFileError; huggingface_hub's RepositoryNotFoundError, RevisionNotFoundError,
            LocalEntryNotFoundError (offline and not cached), HFValidationError (a bad repo id).
        """
        text = os.fspath(pretrained_model_name_or_path)
        if os.path.isdir(text):
            folder, source = text, text
        elif os.path.exists(text) or text.startswith((".", "/", "~")) or text.count("/") > 1 or "\\" in text:
            raise MissingFileError(f"{text!r} is neither an existing folder nor a Hub repository id (ORG/NAME).")
        else:
            folder = snapshot_download(
                text, revision=revision, allow_patterns=[CONFIG_NAME, WEIGHTS_NAME], cache_dir=cache_dir,
                force_download=force_download, local_files_only=local_files_only, token=token,
                library_name=LIBRARY_NAME, library_version=library_version(),
            )
            source = f"Hub repository {text}@{Path(folder).name[:12]}"
            if not os.path.isdir(folder):  # the snapshot folder exists only once a file of it was downloaded
                raise MissingFileError(f"{source} has neither {CONFIG_NAME} nor {WEIGHTS_NAME}: not our format.")
        config_path = Path(folder) / CONFIG_NAME
        if config_path.is_file() and config_path.stat().st_size > MAX_CONFIG_BYTES:  # before the mixin parses it
            size = config_path.stat().st_size
            raise ConfigMismatchError(f"{CONFIG_NAME} in {source} is {size} bytes; not a model config.")
        # Every option is passed explicitly, so that no key of a downloaded config.json can stand in for one
        # (the mixin copies config keys into missing keyword arguments of classes that take **kwargs).
        options = {"map_location": model_kwargs.pop("map_location", "cpu")}
        options["expected_sha256"] = model_kwargs.pop("expected_sha256", None)
        return super().from_pretrained(folder, hub_source=source, hub_overrides=model_kwargs, **options)

    @classmethod
    def _from_pretrained(
        cls,
        *,
        model_id: str,
        revision: str | None,
        cache_dir: str | Path | None,
        force_download: bool,
        local_files_only: bool,
        token: str | bool | None,
        config: dict | None = None,
        map_location: str | torch.device = "cpu",
        expected_sha256: str | None = None,
        hub_source: str | None = None,
        hub_overrides: Mapping[str, Any] | None = None,
        **merged_config_values: Any,  # the mixin's copy of config.json values; we use the validated ones
    ) -> Any:
        from safetensors.torch import load_file

        folder, source = Path(model_id), hub_source or model_id
        if config is None:
            raise MissingFileError(
                f"{source} has no {CONFIG_NAME}, so it is not a lightning-gen model folder. Create one with "
                "`module.save_pretrained(DIR)` or `lightning-gen zoo export CKPT DIR`."
            )
        target, init_args = validate_config(cls, config, source)
        init_args.update(hub_overrides or {})
        weights_path = folder / WEIGHTS_NAME
        verify_weights(weights_path, config, source, expected_sha256)
        found = _read_header_shapes(weights_path, source)
        stored = config[META_KEY]["weights"]["networks"]
        try:
            # A dry run on the meta device allocates nothing: the shapes config.json implies are compared with the
            # file's before memory is spent on a model the file does not hold.
            with torch.device("meta"):
                probe = target(**init_args)
            expected = _state_shapes(probe, stored)
            _compare_shapes(expected, found, source, target.__name__)
            module = target(**init_args)
        except (TypeError, ValueError, NotImplementedError) as err:
            if isinstance(err, FormatError):
                raise
            what = f"{target.__name__} from {CONFIG_NAME} in {source}"
            raise ConfigMismatchError(f"Could not build {what}: {err}") from err
        state = load_file(str(weights_path), device="cpu")
        for name, net in module._networks_to_store("discriminator" in stored).items():
            prefix = f"{name}."
            net.load_state_dict({k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}, strict=True)
        return module.to(map_location).eval()


def _state_shapes(module: HubMixin, stored: list[str]) -> dict[str, tuple[int, ...]]:
    """The tensor shapes ``module`` expects in the file, for the networks config.json says are stored."""
    networks = module._networks_to_store("discriminator" in stored)
    return {f"{n}.{k}": tuple(t.shape) for n, net in networks.items() for k, t in net.state_dict().items()}


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


def ensure_branch(repo_id: str, branch: str | None, *, private: bool | None = None, token: str | None = None) -> None:
    """Create ``repo_id`` and its ``branch`` when they do not exist (the Hub refuses commits to missing branches)."""
    if branch in (None, "main"):
        return
    api = HfApi(token=token, library_name=LIBRARY_NAME, library_version=library_version())
    api.create_repo(repo_id, private=private, exist_ok=True)
    api.create_branch(repo_id, branch=branch, exist_ok=True)


def push_folder(
    folder: str | Path,
    repo_id: str,
    *,
    commit_message: str = DEFAULT_COMMIT_MESSAGE,
    private: bool | None = None,
    token: str | None = None,
    branch: str | None = None,
    create_pr: bool | None = None,
) -> Any:
    """Upload the format's files of a saved folder (config, weights, card, samples, recipe) in one commit.

    Anything else in the folder (a stray ``.ckpt`` pickle, notes) stays local. Returns the ``CommitInfo``.
    """
    api = HfApi(token=token, library_name=LIBRARY_NAME, library_version=library_version())
    api.create_repo(repo_id, private=private, exist_ok=True)
    ensure_branch(repo_id, branch, private=private, token=token)
    return api.upload_folder(
        repo_id=repo_id, folder_path=folder, commit_message=commit_message, revision=branch,
        create_pr=create_pr, allow_patterns=list(FOLDER_FILES),
    )


def _write_atomically(path: Path, data: bytes) -> None:
    """Write through a temporary file and rename, so an interrupted save never leaves half a file."""
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        tmp.write_bytes(data)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
