"""DDP for modules that train several networks in turn: one ``DistributedDataParallel`` per network.

A GAN steps its discriminator and its generator in separate half-steps. Lightning's ``DDPStrategy``
wraps the whole LightningModule in one ``DistributedDataParallel``, so every backward all-reduces
the gradients of *both* networks (the idle one's are zeros) and needs ``find_unused_parameters=True``
(a graph walk and an extra all-reduce per backward). :class:`MultiModelDDPStrategy` instead wraps each
network named by the module's ``ddp_networks()`` in its own ``DistributedDataParallel``, the way
hand-written multi-GPU GAN code does, so a backward all-reduces only the network that is stepping:
|G| + n_critic * |D| elements per generator update instead of (n_critic + 1) * (|G| + |D|) with
one wrapper (2 (|G| + |D|) at the default n_critic=1).

The LightningModule itself stays unwrapped (``strategy.model is lightning_module``): state-dict keys,
checkpoints, the EMA copy and Hub exports are exactly those of single-device training. The wrappers
live in ``module._ddp_wrappers`` (a plain dict, so they are not submodules) and the training steps call
the network being stepped through its wrapper.

Users do not need to name this strategy: ``Trainer(strategy="ddp")`` (or ``DDPStrategy(...)``,
``"ddp_spawn"``, ``"ddp_notebook"``) is adapted to it by :func:`adapt_strategy`, which the library's
modules call from their ``setup`` hook. Everything else (launchers, cluster environments, multi-node,
precision plugins, SyncBatchNorm) is Lightning's ``DDPStrategy``, unchanged.

This module is not a general multi-model strategy for arbitrary LightningModules: the module must
say which networks to wrap, and every trainable parameter must belong to one of them.
"""

from __future__ import annotations

from collections.abc import Generator, Mapping
from contextlib import ExitStack, contextmanager
from typing import Any

import torch
import torch.distributed as dist
from lightning.pytorch.strategies import DDPStrategy, ParallelStrategy, Strategy
from lightning.pytorch.utilities import rank_zero_info, rank_zero_warn
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from lightning_gen import _compat

__all__ = ["MultiModelDDPStrategy", "adapt_strategy"]


class MultiModelDDPStrategy(DDPStrategy):
    """``DDPStrategy`` that wraps each of the module's ``ddp_networks()`` in its own ``DistributedDataParallel``.

    Takes exactly ``DDPStrategy``'s arguments; keyword arguments it does not know go to every
    ``DistributedDataParallel`` wrapper, as with ``DDPStrategy``. What differs:

    * ``find_unused_parameters`` defaults to ``False`` (DDP's default): each wrapper's network is fully
      used in its own half-step. Pass ``True`` only for a custom network that skips parameters.
    * ``static_graph=True`` is ignored with a warning: it saves nothing when every parameter is used, and
      DDP's static-graph mode gives ranks different gradients under a double backward (the gradient
      penalty of ``wgan-gp`` and R1), which we measured on two gloo processes.
    * ``ddp_comm_hook`` is registered on every wrapper, on any device (Lightning's ``DDPStrategy`` only
      does so on CUDA). A hook with state that is per model (PowerSGD's error feedback, for instance) needs
      one state per network: pass ``ddp_comm_state={"generator": ..., "discriminator": ...}`` keyed by the
      names ``ddp_networks()`` returns. Post-local SGD is not supported.
    * Lightning's check for a SIGTERM on rank 0 runs every :attr:`sigterm_check_every_n_batches` batches
      instead of before every batch (see that attribute).

    Example:
        >>> import lightning as L
        >>> from lightning_gen import MultiModelDDPStrategy
        >>> strategy = MultiModelDDPStrategy(broadcast_buffers=False)
        >>> trainer = L.Trainer(strategy=strategy, accelerator="cpu", devices=2, logger=False)
        >>> trainer.strategy is strategy
        True
    """

    # A plain DDPStrategy is turned into this class by swapping its __class__ (adapt_strategy), so this
    # class must not need any state of its own beyond DDPStrategy's: everything below is computed.

    #: Batches between the SIGTERM checks of Lightning's training loop. Lightning 2.6 broadcasts a flag from
    #: rank 0 and reads it on the host before *every* batch under DDP (Lightning-AI/pytorch-lightning#21487):
    #: a collective and a host synchronisation per step, which the modules otherwise avoid. Checking every N
    #: batches is the fix proposed upstream (#21640); a SIGTERM on rank 0 then stops every rank within N
    #: batches instead of one, far inside a scheduler's grace period. Set it on an instance (1 restores
    #: Lightning's behaviour).
    sigterm_check_every_n_batches: int = 50

    def configure_ddp(self) -> None:
        """Wrap each network of ``lightning_module.ddp_networks()`` in ``DistributedDataParallel``.

        Called by ``DDPStrategy.setup`` when fitting, after SyncBatchNorm conversion and the move to the
        device, and before the optimizers are set up.
        """
        module = self.lightning_module
        assert module is not None
        networks = _trainable_networks(module)
        # The DDP constructors broadcast rank 0's copy of each wrapped network. Everything else (the EMA
        # generator, buffers of the module itself) is broadcast here once, so ranks that built their
        # module with different random initialisations still start (and so stay) identical.
        _broadcast_from_rank_zero(_tensors_outside(module, networks.values()))
        if _compat.ddp_kwargs(self).pop("static_graph", False):
            rank_zero_warn(
                f"{type(self).__name__}: ignoring static_graph=True. Each network is wrapped on its own and fully "
                "used in its half-step, so static graphs save nothing, and DDP's static-graph mode gives ranks "
                "different gradients under a double backward (gradient penalty, R1)."
            )
        module._ddp_wrappers = {name: _compat.setup_ddp_model(self, network) for name, network in networks.items()}
        self._register_ddp_hooks()
        _check_sigterm_every(module.trainer, self.sigterm_check_every_n_batches)

    def _register_ddp_hooks(self) -> None:
        wrappers = self._wrappers()
        hook, state, hook_wrapper = _compat.ddp_comm_hook_settings(self)
        states = _comm_states_per_network(state, list(wrappers))
        if hook is None:
            return
        if hook_wrapper is not None:
            hook = hook_wrapper(hook)
        for name, wrapper in wrappers.items():
            wrapper.register_comm_hook(state=states[name], hook=hook)

    @contextmanager
    def block_backward_sync(self) -> Generator[None, None, None]:
        """Skip the gradient all-reduce of every wrapper inside the block (gradient accumulation)."""
        with ExitStack() as stack:
            for wrapper in self._wrappers().values():
                stack.enter_context(wrapper.no_sync())
            yield None

    def teardown(self) -> None:
        # Drop the wrappers: after fit the module calls its networks directly again (validate(), sample(),
        # a later fit builds new wrappers), and it can be deep-copied or pickled without a process group.
        if self.lightning_module is not None:
            self.lightning_module._ddp_wrappers = {}
        super().teardown()

    def _wrappers(self) -> dict[str, DistributedDataParallel]:
        module = self.lightning_module
        return dict(getattr(module, "_ddp_wrappers", None) or {}) if module is not None else {}


def adapt_strategy(strategy: Strategy, module_name: str, stage: str | None = "fit") -> Strategy:
    """Make ``strategy`` train a generative module with one DDP wrapper per network, or fail naming the fix.

    * A plain ``DDPStrategy`` (``"ddp"``, ``"ddp_spawn"``, ``"ddp_notebook"``, ``DDPStrategy(...)``) becomes a
      :class:`MultiModelDDPStrategy` in place, keeping all its settings (launcher, cluster environment,
      DDP keyword arguments, comm hook). Lightning calls the module's ``setup`` hook before the strategy
      wraps the model, so the swap takes effect for this run.
    * A :class:`MultiModelDDPStrategy` (or a subclass) is used as it is.
    * Any other multi-process strategy (a ``DDPStrategy`` subclass, FSDP, DeepSpeed, ...) raises when
      fitting: it would wrap the whole module and all-reduce both networks on every backward, or
      shard them in ways the alternating updates do not expect.
    * Single-device strategies are returned untouched.

    Args:
        strategy: the Trainer's strategy (``trainer.strategy``).
        module_name: the module's class name, for the messages.
        stage: the Trainer stage; strategies are only rejected for ``"fit"`` (evaluation wraps nothing).

    Returns:
        The same strategy object.

    Example:
        >>> from lightning.pytorch.strategies import DDPStrategy
        >>> strategy = adapt_strategy(DDPStrategy(), "GANModule")
        >>> type(strategy).__name__
        'MultiModelDDPStrategy'
    """
    if isinstance(strategy, MultiModelDDPStrategy):
        return strategy
    if type(strategy) is DDPStrategy:
        # Swapping the class keeps every setting the user gave; MultiModelDDPStrategy adds no state.
        strategy.__class__ = MultiModelDDPStrategy
        rank_zero_info(
            f"{module_name}: using MultiModelDDPStrategy, which wraps each network in its own "
            "DistributedDataParallel so that every backward all-reduces only the network being updated."
        )
        return strategy
    if isinstance(strategy, ParallelStrategy) and stage == "fit":
        raise ValueError(
            f"{module_name} cannot train with {type(strategy).__name__}: its alternating updates need each network "
            "in its own DistributedDataParallel, which only lightning_gen.MultiModelDDPStrategy provides. Use "
            "Trainer(strategy='ddp') (adapted automatically) or Trainer(strategy=MultiModelDDPStrategy(...)); to "
            "customise DDP, subclass MultiModelDDPStrategy instead of DDPStrategy. Sharded strategies (FSDP, "
            "DeepSpeed) are not supported."
        )
    return strategy


# --------------------------------------------------------------------------------------------------
# Helpers.
def _check_sigterm_every(trainer: Any, every: int) -> None:
    """Let the training loop's per-batch SIGTERM broadcast run on every ``every``-th batch only.

    Every rank calls the loop's check before each of its batches, and ranks run the same number of batches,
    so counting calls keeps the ranks' broadcasts paired. Does nothing on a Lightning without that check.
    """
    if every < 1:
        raise ValueError(f"sigterm_check_every_n_batches must be >= 1, got {every!r}.")
    _compat.throttle_sigterm_check(trainer, every)


def _trainable_networks(module: nn.Module) -> dict[str, nn.Module]:
    """The module's ``ddp_networks()`` that have trainable parameters, checked to cover them all once."""
    ddp_networks = getattr(module, "ddp_networks", None)
    if not callable(ddp_networks):
        raise TypeError(
            f"MultiModelDDPStrategy needs {type(module).__name__} to define ddp_networks() -> dict[str, nn.Module] "
            "naming the networks to wrap in their own DistributedDataParallel. Define it, or use DDPStrategy."
        )
    networks = dict(ddp_networks())
    submodules = {id(m) for m in module.modules()}
    owner: dict[int, str] = {}
    for name, network in networks.items():
        if not isinstance(network, nn.Module) or id(network) not in submodules:
            raise ValueError(
                f"ddp_networks() of {type(module).__name__} returned {name}={type(network).__name__}, which is not a "
                "submodule of it. Return the module's own networks (e.g. self.generator)."
            )
        for param in network.parameters():
            if id(param) in owner:
                raise ValueError(
                    f"ddp_networks() of {type(module).__name__}: {name} and {owner[id(param)]} share parameters. "
                    "Each parameter must belong to exactly one network so that it is all-reduced once."
                )
            owner[id(param)] = name
    orphans = [n for n, p in module.named_parameters() if p.requires_grad and id(p) not in owner]
    if orphans:
        raise ValueError(
            f"{type(module).__name__} has trainable parameters in no network of ddp_networks(): {orphans[:5]}. Their "
            "gradients would never be averaged across processes. Add their network to ddp_networks(), or freeze them."
        )
    # A network without trainable parameters (a frozen encoder) has no gradients to reduce, and DDP
    # refuses to wrap it; it is broadcast once with the rest of the unwrapped state instead.
    return {name: net for name, net in networks.items() if any(p.requires_grad for p in net.parameters())}


def _tensors_outside(module: nn.Module, networks: Any) -> list[torch.Tensor]:
    """Parameters and buffers of ``module`` that belong to none of ``networks``, in a fixed order."""
    inside = {id(t) for net in networks for t in (*net.parameters(), *net.buffers())}
    return [t for t in (*module.parameters(), *module.buffers()) if id(t) not in inside]


@torch.no_grad()
def _broadcast_from_rank_zero(tensors: list[torch.Tensor]) -> None:
    """Overwrite ``tensors`` with rank 0's values: one broadcast per dtype, any memory layout."""
    if not tensors or not dist.is_available() or not dist.is_initialized():
        return
    by_dtype: dict[tuple[torch.dtype, torch.device], list[torch.Tensor]] = {}
    for tensor in tensors:
        by_dtype.setdefault((tensor.dtype, tensor.device), []).append(tensor)
    for (dtype, _), group in by_dtype.items():
        # reshape copies channels_last tensors into one contiguous buffer; bool is sent as uint8 (gloo).
        flat = torch.cat([t.reshape(-1) for t in group])
        flat = flat.to(torch.uint8) if dtype == torch.bool else flat
        dist.broadcast(flat, src=0)
        offset = 0
        for tensor in group:
            tensor.copy_(flat[offset : offset + tensor.numel()].view(tensor.shape))
            offset += tensor.numel()


def _comm_states_per_network(state: object, names: list[str]) -> dict[str, object]:
    """One comm-hook state per wrapped network: a dict keyed by network name, or one state shared by all."""
    import torch.distributed.algorithms.ddp_comm_hooks.post_localSGD_hook as post_local_sgd
    import torch.distributed.algorithms.ddp_comm_hooks.powerSGD_hook as power_sgd

    if isinstance(state, Mapping) and set(state) == set(names):
        states = dict(state)
    else:
        if isinstance(state, power_sgd.PowerSGDState) and len(names) > 1:
            raise ValueError(
                f"One PowerSGDState cannot serve the {len(names)} DDP wrappers {names}: it keeps error feedback per "
                f"gradient bucket. Pass ddp_comm_state={{{', '.join(repr(n) + ': PowerSGDState(...)' for n in names)}}}."
            )
        states = dict.fromkeys(names, state)
    if any(isinstance(s, post_local_sgd.PostLocalSGDState) for s in states.values()):
        raise ValueError(
            "MultiModelDDPStrategy does not support post-local SGD (PostLocalSGDState): its model averaging assumes a "
            "single DDP wrapper. Use another comm hook (e.g. default_hooks.fp16_compress_hook) or none."
        )
    return states
