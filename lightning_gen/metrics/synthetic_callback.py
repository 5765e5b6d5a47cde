"""``CASCallback``: the Classification Accuracy Score of a class-conditional model, at the end of training.

At the end of fit (and every ``every_n_epochs`` epochs if asked) it trains the protocol's classifier on N images of
the module's ``sample(n, seed, labels)`` and scores it on the data module's held-out split (``"test"`` when the data
module has one, else ``"val"``), beside the same classifier trained on N real training images (computed once per
run: the real side does not change). Logged as ``val/cas``, ``val/cas_std`` and ``val/cas_real_reference``,
appended with the protocol to ``synthetic_metrics.jsonl`` in ``trainer.log_dir``, and printed as one line.

Why not a :class:`~lightning_gen.metrics.callbacks.GenerativeMetricsCallback`: that base is built around one
feature extractor whose streamed statistics are sharded and reduced across processes and cached by data
fingerprint; CAS needs labelled images in memory and whole classifier trainings, none of which fits its states.
What carries over is its reading of a split (in order, no random flips), its log names and its protocol file.

Under DDP process 0 computes and broadcasts the values, so every process logs the same numbers.
Not here: the metric itself (:func:`~lightning_gen.metrics.synthetic.classification_accuracy_score`).
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import lightning.pytorch as pl
import torch
from lightning.pytorch.callbacks import Callback

from lightning_gen.metrics.synthetic import CASResult, classification_accuracy_score
from lightning_gen.metrics.synthetic_classifier import ClassifierFactory, ClassifierProtocol
from lightning_gen.metrics.synthetic_sources import LabelledImages, datamodule_split, held_out_split

__all__ = ["CASCallback"]

PROTOCOL_FILE = "synthetic_metrics.jsonl"


class CASCallback(Callback):
    """Log the Classification Accuracy Score of a class-conditional ``GANModule`` / ``VAE`` (``val/cas``).

    Evaluates at the end of training (whatever stopped it: epochs, steps, time, early stopping) and, with
    ``every_n_epochs``, at the end of every N-th training epoch (logged through ``pl_module.log`` then, so
    ``ModelCheckpoint(monitor="val/cas", mode="max")`` works). The end-of-training value is written to the loggers
    and ``trainer.callback_metrics`` directly (Lightning allows no ``self.log`` there) and printed on process 0.

    Args:
        num_samples: N generated training images; default as many as the real training split has.
        seeds: Classifier seeds (overrides ``protocol.seeds``).
        protocol: The classifier protocol (default :class:`ClassifierProtocol`).
        classifier_factory: ``factory(num_classes, channels, image_size) -> nn.Module`` instead of ``SmallCNN``.
        every_n_epochs: Also evaluate every N epochs (default: only at the end).
        test_split: Held-out split the classifiers are scored on; default ``"test"`` when the data module has a
            test loader, else ``"val"``. Never a split the model trained on.
        train_split: Split the reference classifier trains on.
        reference: Train the real-data reference (once per run).
        prefix: Prefix of the logged names.
        protocol_file: File in ``trainer.log_dir`` receiving one JSON line per evaluation; ``None`` disables it.
        verbose: Print the end-of-training line.

    Attributes:
        last_result: :class:`~lightning_gen.metrics.synthetic.CASResult` of the latest evaluation.

    Example:
        >>> from lightning_gen.metrics import ClassifierProtocol
        >>> callback = CASCallback(protocol=ClassifierProtocol(steps=300), seeds=(0, 1))
    """

    def __init__(
        self,
        *,
        num_samples: int | None = None,
        seeds: tuple[int, ...] | None = None,
        protocol: ClassifierProtocol | None = None,
        classifier_factory: ClassifierFactory | None = None,
        every_n_epochs: int | None = None,
        test_split: str | None = None,
        train_split: str = "train",
        reference: bool = True,
        prefix: str = "val/",
        protocol_file: str | None = PROTOCOL_FILE,
        verbose: bool = True,
    ) -> None:
        super().__init__()
        if every_n_epochs is not None and (isinstance(every_n_epochs, bool) or not isinstance(every_n_epochs, int) or every_n_epochs < 1):
            raise ValueError(f"every_n_epochs must be a positive integer or None (only at the end), got {every_n_epochs!r}.")
        protocol = protocol or ClassifierProtocol()
        overrides = {k: v for k, v in {"num_samples": num_samples, "seeds": seeds}.items() if v is not None}
        self.protocol = replace(protocol, **overrides) if overrides else protocol
        self.classifier_factory = classifier_factory
        self.every_n_epochs = every_n_epochs
        self.test_split = test_split
        self.train_split = train_split
        self.reference = reference
        self.prefix = prefix
        self.protocol_file = protocol_file
        self.verbose = verbose
        self.last_result: CASResult | None = None
        self._real: tuple[LabelledImages, LabelledImages | None, str] | None = None
        self._reference: CASResult | None = None
        self._evaluated_step = -1

    # ------------------------------------------------------------------------------------ Lightning hooks

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        if stage != "fit":
            return
        if not callable(getattr(pl_module, "sample", None)) or not int(getattr(pl_module, "num_classes", 0) or 0):
            raise TypeError(
                f"CASCallback needs a class-conditional module (num_classes > 0) with sample(n, seed, labels); "
                f"{type(pl_module).__name__} has num_classes={getattr(pl_module, 'num_classes', None)!r}. Train e.g. "
                f"GANModule(num_classes=10) on a labelled data module."
            )
        self._real = None  # the real splits belong to this run's data module
        self._reference = None

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self.every_n_epochs is None or (trainer.current_epoch + 1) % self.every_n_epochs:
            return
        values = self._evaluate(trainer, pl_module)
        for name, value in values.items():
            # Every process holds the broadcast value; sync_dist keeps Lightning's bookkeeping consistent.
            pl_module.log(name, value, prog_bar=name.endswith("cas"), sync_dist=True, batch_size=1)

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self._evaluated_step != trainer.global_step:  # not already evaluated on these weights
            values = self._evaluate(trainer, pl_module)
            for logger in trainer.loggers:
                logger.log_metrics(values, step=trainer.global_step)
            trainer.callback_metrics.update({name: torch.tensor(value) for name, value in values.items()})
        if self.verbose and trainer.is_global_zero and self.last_result is not None:
            print(_summary(self.last_result), flush=True)

    # ---------------------------------------------------------------------------------------- internals

    def _real_sides(self, trainer: pl.Trainer) -> tuple[LabelledImages, LabelledImages | None, str]:
        if self._real is None:
            datamodule = trainer.datamodule
            if datamodule is None:
                raise RuntimeError("CASCallback reads the real held-out images from a data module: call trainer.fit(model, datamodule=...).")
            split = self.test_split or held_out_split(datamodule)
            test = datamodule_split(datamodule, split)
            # The training split gives the reference and, by default, N (as many generated images as it has).
            needed = self.reference or self.protocol.num_samples is None
            train = datamodule_split(datamodule, self.train_split) if needed else None
            self._real = (test, train, split)
        return self._real

    def _evaluate(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> dict[str, float]:
        self._evaluated_step = trainer.global_step
        log_dir = trainer.log_dir  # a collective: every process must ask
        outcome: CASResult | BaseException | None = None
        if trainer.is_global_zero:
            try:
                outcome = self._compute(trainer, pl_module, log_dir)
            except Exception as error:  # noqa: BLE001 - shared below, so no process waits for a value that never comes
                outcome = error
        shared = trainer.strategy.broadcast(outcome if not isinstance(outcome, BaseException) else repr(outcome), src=0)
        if isinstance(outcome, BaseException):
            raise outcome
        if isinstance(shared, str):
            raise RuntimeError(f"CASCallback failed on process 0: {shared}")
        result = shared
        self.last_result = result
        values = {f"{self.prefix}cas": result.cas}
        if result.cas_std is not None:
            values[f"{self.prefix}cas_std"] = result.cas_std
        if result.real_reference is not None:
            values[f"{self.prefix}cas_real_reference"] = result.real_reference
        return values

    def _compute(self, trainer: pl.Trainer, pl_module: pl.LightningModule, log_dir: str | None) -> CASResult:
        test, train, _ = self._real_sides(trainer)
        protocol = self.protocol
        if protocol.num_samples is None and train is not None:
            protocol = replace(protocol, num_samples=len(train))
        modes = [(module, module.training) for module in pl_module.modules()]
        try:
            # The reference does not depend on the model: trained with the first evaluation, then reused.
            result = classification_accuracy_score(
                pl_module, test, train if self.reference and self._reference is None else None, protocol=protocol,
                classifier_factory=self.classifier_factory,
            )
        finally:
            for module, mode in modes:
                module.training = mode
        if self._reference is None and result.real_reference is not None:
            self._reference = result
        elif self._reference is not None:
            ref = self._reference
            result = replace(
                result, real_reference=ref.real_reference, real_reference_std=ref.real_reference_std,
                real_reference_per_seed=ref.real_reference_per_seed, num_real_reference=ref.num_real_reference,
                real_train_source=ref.real_train_source, notes=result.notes + ref.notes,
            )
        self._write_protocol(trainer, pl_module, result, log_dir)
        return result

    def _write_protocol(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, result: CASResult, log_dir: str | None
    ) -> None:
        if self.protocol_file is None or log_dir is None:
            return
        record = {
            "callback": type(self).__name__,
            "epoch": trainer.current_epoch,
            "global_step": trainer.global_step,
            "generator_step": getattr(pl_module, "generator_step", None),
            "split": self._real[2] if self._real else None,
            **result.to_dict(),
        }
        path = Path(log_dir) / self.protocol_file
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "a") as handle:
            handle.write(json.dumps(record) + "\n")


def _summary(result: CASResult) -> str:
    """One line: CAS and its reference over seeds, on what."""
    def value(mean: float, std: float | None) -> str:
        return f"{mean:.4f}" + (f" ± {std:.4f}" if std is not None else "")

    text = f"CAS {value(result.cas, result.cas_std)} over {len(result.cas_per_seed)} seed(s), N = {result.num_generated}"
    if result.real_reference is not None:
        text += f"; real-trained reference {value(result.real_reference, result.real_reference_std)}"
    return f"{text} (on {result.num_real_test} held-out images of {result.real_test_source})"
