"""Feature extractors by name: ``feature_extractor="dinov2-vit-l-14"`` / ``--extractor dinov2-vit-l-14``.

A small registry maps a name to a factory ``factory(weights, download) -> FeatureExtractor``: ``weights`` is a file
the user named (or ``None`` to look it up: argument, environment variable, cache, download) and ``download`` says
whether looking it up may use the network. The factory returns a
:class:`~lightning_gen.metrics.features.FeatureExtractor` that carries its protocol facts (name, full weights
sha256, whether those are the official weights, resize, numerics). Built-in entries are stored as
``"module:function"`` strings and imported on first use, so naming an extractor never imports the others' code.

Other modules add theirs with :func:`register_extractor` (the shapes evaluator registers ``"shapes"``). This
module does not compute metrics.

Example:
    >>> from lightning_gen.metrics.extractors import available_extractors
    >>> [name for name in available_extractors() if name.startswith("dinov2")][:2]
    ['dinov2-vit-b-14', 'dinov2-vit-l-14']
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Callable
from typing import Any, Union

from torch import nn

from lightning_gen.metrics.features import FeatureExtractor
from lightning_gen.metrics.inception import INCEPTION_NAME

__all__ = ["ExtractorFactory", "available_extractors", "build_extractor", "register_extractor"]

#: ``factory(weights, download) -> FeatureExtractor``; see the module docstring.
ExtractorFactory = Callable[[Union[str, os.PathLike, None], bool], FeatureExtractor]

_REGISTRY: dict[str, ExtractorFactory | str] = {
    INCEPTION_NAME: "lightning_gen.metrics.extractors:_inception",
    "dinov2-vit-s-14": "lightning_gen.metrics.dinov2:dinov2_vit_s_14",
    "dinov2-vit-b-14": "lightning_gen.metrics.dinov2:dinov2_vit_b_14",
    "dinov2-vit-l-14": "lightning_gen.metrics.dinov2:dinov2_vit_l_14",
    # Helper H5's shapes classifier registers itself as "shapes" from lightning_gen.metrics.shapes; this entry
    # imports that module on first use so "--extractor shapes" works without importing it elsewhere.
    "shapes": "lightning_gen.metrics.shapes:shapes_feature_extractor",
    # The digits classifier (digits.py): FID with it is the digits FD.
    "digits": "lightning_gen.metrics.digits:digits_feature_extractor",
}
# Short names people type; each resolves to a registered name.
_ALIASES = {"inception": INCEPTION_NAME, "inception-v3": INCEPTION_NAME, "fid-inception": INCEPTION_NAME}


def _inception(weights: str | os.PathLike | None, download: bool) -> FeatureExtractor:
    return FeatureExtractor.inception(weights, download=download)


def register_extractor(name: str, factory: ExtractorFactory | str, *, overwrite: bool = False) -> None:
    """Make ``name`` usable as ``feature_extractor=name`` and ``--extractor name``.

    Args:
        name: The extractor's name, recorded in every protocol it produces.
        factory: ``factory(weights, download) -> FeatureExtractor``, or a ``"module:function"`` string naming one
            (imported on first use).
        overwrite: Replace an existing entry instead of refusing.

    Raises:
        ValueError: ``name`` is taken (and ``overwrite`` is false) or empty.
    """
    if not name or not isinstance(name, str):
        raise ValueError(f"An extractor name must be a non-empty string, got {name!r}.")
    existing = _REGISTRY.get(name)
    if existing is not None and existing != factory and not overwrite:
        raise ValueError(f"An extractor named {name!r} is already registered; pass overwrite=True to replace it.")
    _REGISTRY[name] = factory


def available_extractors() -> list[str]:
    """Registered extractor names, sorted."""
    return sorted(_REGISTRY)


def build_extractor(
    spec: str | nn.Module | FeatureExtractor | None = None,
    *,
    weights: str | os.PathLike | None = None,
    download: bool = True,
) -> FeatureExtractor:
    """The extractor ``spec`` names.

    Args:
        spec: A registered name (``None``: the standard FID Inception), a
            :class:`~lightning_gen.metrics.features.FeatureExtractor`, or any ``nn.Module`` mapping uint8
            (N, 3, H, W) to (N, d) (wrapped with :meth:`FeatureExtractor.custom`, non-standard).
        weights: Weights file for a named extractor.
        download: Whether a named extractor may download missing weights.

    Raises:
        ValueError: Unknown name (the message lists the known ones).
        TypeError: ``spec`` is neither a name nor a module.
    """
    if spec is None:
        spec = INCEPTION_NAME
    if isinstance(spec, str):
        name = _ALIASES.get(spec, spec)
        if name not in _REGISTRY:
            raise ValueError(
                f"Unknown feature extractor {spec!r}; registered: {', '.join(available_extractors())}. Pass an "
                f"nn.Module for your own, or register it with lightning_gen.metrics.extractors.register_extractor."
            )
        factory = _resolve(name)
        extractor = factory(weights, download)
        if not isinstance(extractor, FeatureExtractor):
            raise TypeError(
                f"The factory of extractor {name!r} returned {type(extractor).__name__}; it must return a "
                f"lightning_gen.metrics.FeatureExtractor."
            )
        return extractor
    if weights is not None:
        raise ValueError(f"weights={str(weights)!r} applies to a named extractor, not to a module you pass yourself.")
    return FeatureExtractor.custom(spec)


def _resolve(name: str) -> ExtractorFactory:
    factory: Any = _REGISTRY[name]
    if isinstance(factory, str):
        module_name, _, attribute = factory.partition(":")
        try:
            factory = getattr(importlib.import_module(module_name), attribute)
        except (ImportError, AttributeError) as error:
            raise ValueError(f"Extractor {name!r} is registered as {_REGISTRY[name]!r}, which cannot be loaded ({error}).") from error
        _REGISTRY[name] = factory
    return factory
