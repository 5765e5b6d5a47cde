"""Every use of a private attribute of torch, Lightning, torchmetrics or Optuna, behind one small accessor each.

lightning-gen reaches into a few internals where the public API has no equivalent (the GradScaler's current scale,
Lightning's per-batch logging decision, DDPStrategy's stored wrapper arguments, an Optuna trial's storage id). Those
names can change in any release, so every such use goes through this module: one place to read when upgrading, and
a clear :class:`UnsupportedVersionError` naming the tested versions instead of an ``AttributeError`` deep in a
training step. Accessors of pure optimisations (``optional``) fall back to the slower public behaviour instead.

What it is not: a shim for public APIs of old releases; ``pyproject.toml`` sets floors where the code needs newer
public APIs, and CI runs the suite on those floors (``.ci/floors.txt``).

Example:
    >>> import torch
    >>> scaler = torch.amp.GradScaler("cpu", init_scale=8.0)
    >>> _ = scaler.scale(torch.ones(()))  # the scale tensor is created on first use
    >>> float(grad_scale(scaler))
    8.0
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from importlib.metadata import PackageNotFoundError, version
from typing import Any

from lightning_gen._version import __version__

__all__ = [
    "TESTED_VERSIONS",
    "UnsupportedVersionError",
    "unsupported",
    "ddp_comm_hook_settings",
    "ddp_kwargs",
    "compiled_in_place",
    "foreach_copy_",
    "foreach_lerp_",
    "fused_adam_devices",
    "grad_scale",
    "logged_results",
    "non_finite_check_and_unscale_",
    "require",
    "setup_ddp_model",
    "should_update_logs",
    "study_storage",
    "throttle_sigterm_check",
    "trial_id",
]

#: The ranges CI tests (the floors in .ci/floors.txt and the versions of the main job); keep in step with pyproject.toml.
TESTED_VERSIONS = {
    "torch": ">=2.5,<=2.14",
    "lightning": ">=2.6.1,<2.7",
    "torchmetrics": ">=1.4,<=1.9",
    "optuna": ">=4.0,<=5.1",
}


class UnsupportedVersionError(RuntimeError):
    """An installed dependency lacks an internal that lightning-gen relies on; the message names the tested versions."""


def _installed(package: str) -> str:
    try:
        return version(package)
    except PackageNotFoundError:  # pragma: no cover - the package is imported, so it is installed
        return "unknown"


def unsupported(package: str, what: str) -> UnsupportedVersionError:
    """The error for ``package`` lacking ``what``, naming the installed and the tested versions.

    Example:
        >>> print(unsupported("torch", "torch.amp.GradScaler._scale"))  # doctest: +ELLIPSIS
        lightning-gen 0... relies on torch.amp.GradScaler._scale, which torch ... does not have. ...
    """
    tested = TESTED_VERSIONS.get(package, "")
    return UnsupportedVersionError(
        f"lightning-gen {__version__} relies on {what}, which {package} {_installed(package)} does not have. It is "
        f"tested with {package}{tested}: install one of those (pip install '{package}{tested}'), or a lightning-gen "
        "release that supports your version."
    )


def require(owner: Any, name: str, package: str) -> Any:
    """``getattr(owner, name)``, or :class:`UnsupportedVersionError` when the installed ``package`` lacks it."""
    try:
        return getattr(owner, name)
    except AttributeError:
        label = getattr(owner, "__qualname__", None) or getattr(owner, "__name__", None) or type(owner).__qualname__
        raise unsupported(package, f"{label}.{name}") from None


# ----------------------------------------------------------------------------------------------------------------
# torch
def grad_scale(scaler: Any) -> Any:
    """The GradScaler's current scale tensor without a host sync (``get_scale()`` returns a Python float); None before
    its first ``scale()`` call. A disabled scaler has none either."""
    if not getattr(scaler, "is_enabled", lambda: True)():
        return None
    return require(scaler, "_scale", "torch")


def non_finite_check_and_unscale_(grads: Sequence[Any], found_inf: Any, inv_scale: Any) -> None:
    """Multiply ``grads`` by ``inv_scale`` in place and set ``found_inf`` to 1 if any is NaN/inf: one fused kernel, no
    host sync (what ``GradScaler.unscale_`` runs)."""
    import torch

    require(torch, "_amp_foreach_non_finite_check_and_unscale_", "torch")(list(grads), found_inf, inv_scale)


def foreach_lerp_(averages: Sequence[Any], values: Sequence[Any], weight: float) -> None:
    """``a += weight * (v - a)`` for every pair, in one multi-tensor kernel."""
    import torch

    require(torch, "_foreach_lerp_", "torch")(list(averages), list(values), weight)


def foreach_copy_(targets: Sequence[Any], sources: Sequence[Any]) -> None:
    """``t.copy_(s)`` for every pair, in one multi-tensor kernel."""
    import torch

    require(torch, "_foreach_copy_", "torch")(list(targets), list(sources))


def compiled_in_place(module: Any) -> bool:
    """Whether ``module.compile()`` (``nn.Module.compile``) compiled ``module`` in place; False when torch does not say.

    Optional: used to refuse a compiled discriminator under a double-backward penalty up front; without it that
    combination fails at its first step instead (torch raises there).
    """
    return getattr(module, "_compiled_call_impl", None) is not None


def fused_adam_devices() -> list[str]:
    """Device types with a fused Adam kernel; ``["cuda"]`` (always true since torch 2.0) when torch does not say.

    Optional: the answer only picks the faster of two correct optimizer implementations.
    """
    try:
        from torch.utils._foreach_utils import _get_fused_kernels_supported_devices
    except ImportError:
        return ["cuda"]
    return list(_get_fused_kernels_supported_devices())


# ----------------------------------------------------------------------------------------------------------------
# Lightning
def logged_results(trainer: Any) -> dict | None:
    """The trainer's logged values of the current loop (``trainer._results``); None when unavailable.

    Optional: used to drop progress-bar values that Lightning would otherwise sync every batch.
    """
    results = getattr(trainer, "_results", None) if trainer is not None else None
    return results if isinstance(results, dict) else None


def should_update_logs(trainer: Any) -> bool:
    """Whether Lightning writes logs after this batch; True (log every batch, as without this) when unavailable."""
    connector = getattr(trainer, "_logger_connector", None) if trainer is not None else None
    return bool(getattr(connector, "should_update_logs", True))


def ddp_kwargs(strategy: Any) -> dict:
    """The keyword arguments a ``DDPStrategy`` passes to ``DistributedDataParallel`` (mutable: the strategy's own)."""
    return require(strategy, "_ddp_kwargs", "lightning")


def ddp_comm_hook_settings(strategy: Any) -> tuple[Callable | None, object, Callable | None]:
    """``(ddp_comm_hook, ddp_comm_state, ddp_comm_wrapper)`` as given to the ``DDPStrategy``."""
    return tuple(require(strategy, name, "lightning") for name in ("_ddp_comm_hook", "_ddp_comm_state", "_ddp_comm_wrapper"))


def setup_ddp_model(strategy: Any, module: Any) -> Any:
    """Wrap ``module`` in ``DistributedDataParallel`` with the strategy's device ids and DDP arguments."""
    return require(strategy, "_setup_model", "lightning")(module)


def throttle_sigterm_check(trainer: Any, every: int) -> bool:
    """Make the training loop's per-batch SIGTERM broadcast run on every ``every``-th batch; False (nothing changed)
    on a Lightning without that check.

    Every rank calls the check before each of its batches and ranks run the same number of batches, so counting
    calls keeps the ranks' broadcasts paired.
    """
    import itertools

    loop = getattr(getattr(trainer, "fit_loop", None), "epoch_loop", None)
    check = getattr(type(loop), "_broadcast_sigterm_tensor", None)
    if check is None:
        return False
    calls = itertools.count()

    def check_sometimes() -> None:
        if next(calls) % every == 0:
            check(loop)

    loop._broadcast_sigterm_tensor = check_sometimes  # an instance attribute: this trainer's loop only
    return True


# ----------------------------------------------------------------------------------------------------------------
# Optuna
def study_storage(study: Any) -> Any:
    """The storage an ``optuna.Study`` reads and writes (for operations the Study API lacks: failing a dead trial)."""
    return require(study, "_storage", "optuna")


def trial_id(trial: Any) -> int:
    """The storage id of an ``optuna.Trial`` or ``FrozenTrial`` (``number`` counts within a study; storages key by id)."""
    return require(trial, "_trial_id", "optuna")
