"""The Hugging Face Hub format of lightning-gen modules, on ``huggingface_hub``'s own ``ModelHubMixin``.

What this module is for: :class:`HubMixin`, the base that gives ``GANModule`` and ``VAE`` the
standard ``save_pretrained`` / ``from_pretrained`` / ``push_to_hub`` of ``huggingface_hub`` (same
signatures: ``branch``, ``create_pr``, ``token``, ``private=None``, ``cache_dir``,
``local_files_only``, ``force_download``, ``revision``), with lightning-gen's rules for what goes in
the folder and how it is read back. What it is not: a registry (that is :mod:`lightning_gen.zoo`), a
command line (:mod:`lightning_gen.cli`), or a training checkpoint (no optimizer state; resume from
the Lightning ``.ckpt``). The format's names are :mod:`lightning_gen.hub_format`, its errors and checks
:mod:`lightning_gen.hub_checks` (both re-exported here).

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
import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from huggingface_hub import HfApi, ModelCard, ModelHubMixin, snapshot_download

# The folder format's names and its checks live in hub_format and hub_checks; re-exported here, where users have
# always imported them.
from lightning_gen.hub_checks import (  # noqa: F401
    ConfigMismatchError,
    CorruptedWeightsError,
    FormatError,
    HashMismatchError,
    MissingFileError,
    WeightsMismatchError,
    _constructor_parameters,
    _plain,
    compare_shapes,
    read_header_shapes,
    validate_config,
    verify_weights,
)
from lightning_gen.hub_format import (  # noqa: F401
    CARD_NAME,
    CONFIG_NAME,
    DATA_NORMALIZATION,
    DEFAULT_COMMIT_MESSAGE,
    EXPORT_NAMES,
    FOLDER_FILES,
    FORMAT_VERSION,
    LIBRARY_NAME,
    MAX_CONFIG_BYTES,
    META_KEY,
    RECIPE_NAME,
    RUNTIME_ARGUMENTS,
    SAMPLES_NAME,
    SIZE_LIMITS,
    WEIGHTS_NAME,
    library_version,
)
# The card types are re-exported: model_card_kwargs are CardInfo fields.
from lightning_gen.model_card import (  # noqa: F401
    METRIC_NAMES,
    RECIPE_CAUTION,
    TASK_TYPE,
    CardInfo,
    MetricResult,
    build_model_card,
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
        elif "/" not in text:  # a name, not a repository: a registered (zoo) model, resolved at call time
            registered = resolve_registered_name(text)
            if registered is None:
                raise MissingFileError(
                    f"{text!r} is not a registered model name, an existing folder or a Hub repository id (ORG/NAME); "
                    "list the zoo's models with `lightning-gen zoo list` and load one with `lightning_gen.zoo.load(NAME)`."
                )
            if revision is not None:
                raise ValueError(f"{text!r} is a registered model pinned to one commit; do not pass revision={revision!r}.")
            location, pinned = registered
            return cls.from_pretrained(
                location["path"], revision=location.get("revision"), force_download=force_download, token=token,
                cache_dir=cache_dir, local_files_only=local_files_only, expected_sha256=pinned, **model_kwargs,
            )
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
        found = read_header_shapes(weights_path, source)
        stored = config[META_KEY]["weights"]["networks"]
        try:
            # A dry run on the meta device allocates nothing: the shapes config.json implies are compared with the
            # file's before memory is spent on a model the file does not hold.
            with torch.device("meta"):
                probe = target(**init_args)
            expected = _state_shapes(probe, stored)
            compare_shapes(expected, found, source, target.__name__)
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


#: Entry-point group through which packages register model names for ``from_pretrained("NAME")``. Each entry
#: point names a function ``resolve(name) -> (location, sha256) | None``, ``location`` being
#: ``{"path": folder_or_repo_id, "revision": commit_or_None}`` and ``sha256`` the pinned weights' digest.
NAME_REGISTRY_GROUP = "lightning_gen.model_names"
#: lightning-gen's own registry (the zoo), declared in pyproject.toml under that group too. Listed here so that a
#: source checkout on ``PYTHONPATH``, which has no installed metadata, resolves zoo names all the same.
BUILTIN_NAME_REGISTRIES = ("lightning_gen.zoo:resolve_name",)


def resolve_registered_name(name: str) -> tuple[dict[str, Any], str | None] | None:
    """Where a registered model name lives, asking each registry at call time; None when none knows it.

    The Hub layer never imports a registry's code until a name is looked up, so the registries (the zoo) can
    sit above it. Example:

        >>> location, sha256 = resolve_registered_name("dcgan-shapes32")
        >>> (Path(location["path"]) / WEIGHTS_NAME).is_file(), len(sha256)
        (True, 64)
        >>> resolve_registered_name("no-such-model") is None
        True
    """
    import importlib
    from importlib.metadata import entry_points

    values = [*BUILTIN_NAME_REGISTRIES, *(entry.value for entry in entry_points(group=NAME_REGISTRY_GROUP))]
    for value in dict.fromkeys(values):
        module_name, _, function_name = value.partition(":")
        found = getattr(importlib.import_module(module_name), function_name)(name)
        if found is not None:
            return found
    return None


def _state_shapes(module: HubMixin, stored: list[str]) -> dict[str, tuple[int, ...]]:
    """The tensor shapes ``module`` expects in the file, for the networks config.json says are stored."""
    networks = module._networks_to_store("discriminator" in stored)
    return {f"{n}.{k}": tuple(t.shape) for n, net in networks.items() for k, t in net.state_dict().items()}


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
