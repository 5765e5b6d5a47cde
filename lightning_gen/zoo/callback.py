"""``HubExportCallback``: at the end of fit, export the best checkpoint as a Hub folder and push it.

What it is for: closing a training run with a publishable model folder (config.json,
model.safetensors, README.md with its card, samples.png), and optionally uploading it, without a
separate export step. What it is not: a periodic uploader (it runs once, after fit), nor an
evaluator (metrics come from what the run logged, or from ``card``).
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
from lightning.pytorch.callbacks import Callback, ModelCheckpoint
from lightning.pytorch.utilities import rank_zero_info, rank_zero_warn

from lightning_gen.hub import CardInfo, MetricResult, push_folder
from lightning_gen.model_card import CARD_METRIC_NAMES
from lightning_gen.sampling import load_checkpoint


class HubExportCallback(Callback):
    """Export (and optionally push) the trained model on global rank 0 when ``fit`` ends.

    The exported weights are those of the trainer's ``ModelCheckpoint`` best checkpoint
    (``best_model_path``); without a saved checkpoint, the final in-memory weights.

    Args:
        output_dir: folder to write; default ``<trainer.default_root_dir>/hub_export``.
        repo_id: when given (``ORG/NAME``), push the folder there after exporting.
        private: visibility of a repository the push creates (None: the account's default).
        branch: branch to push to (created if missing; default main).
        commit_message: the commit's summary line.
        card: model card content (dataset, licence, recipe, metrics...).
        metric_keys: card metric -> logged key, e.g. ``{"fid": "val/fid"}`` or, with a
            ``ShapesMetricsCallback``, ``{"fsd": "val/fsd", "shape_tv": "val/shape_tv"}`` (names:
            ``lightning_gen.model_card.CARD_METRIC_NAMES``). A logged value goes on the
            card only when it describes the exported weights: the monitored value of the best
            checkpoint, or the last logged value when the final weights are exported. Otherwise the
            card says "not measured" and why. Metrics given in ``card`` take precedence.

    A failed push does not fail the run (training is over and the folder is on disk): it warns with
    the command that retries it. After fit, ``export_dir`` and ``commit`` (huggingface_hub's
    ``CommitInfo``, or None) hold the outcome.

    Example:
        >>> from lightning.pytorch import Trainer
        >>> callback = HubExportCallback(repo_id="my-org/dcgan-faces", metric_keys={"fid": "val/fid"})
        >>> trainer = Trainer(callbacks=[callback], logger=False)  # doctest: +SKIP
    """

    def __init__(
        self,
        output_dir: str | os.PathLike | None = None,
        repo_id: str | None = None,
        *,
        private: bool | None = None,
        branch: str | None = None,
        commit_message: str = "Upload lightning-gen model (end of training)",
        card: CardInfo | None = None,
        metric_keys: Mapping[str, str] | None = None,
    ) -> None:
        self.output_dir = Path(output_dir) if output_dir is not None else None
        self.repo_id = repo_id
        self.private = private
        self.branch = branch
        self.commit_message = commit_message
        self.card = card if card is not None else CardInfo()
        self.metric_keys = dict(metric_keys or {})
        unknown = sorted(set(self.metric_keys) - set(CARD_METRIC_NAMES))
        if unknown:  # checked now rather than after hours of training
            raise ValueError(
                f"metric_keys names unknown metrics {unknown}; expected some of {list(CARD_METRIC_NAMES)}."
            )
        self.export_dir: Path | None = None
        self.commit: Any = None

    def _best_checkpoint(self, trainer: pl.Trainer) -> tuple[str | None, ModelCheckpoint | None]:
        checkpoint = trainer.checkpoint_callback
        # best_model_path can name a file that was never written (save_top_k=0) or was deleted since.
        if not isinstance(checkpoint, ModelCheckpoint) or not checkpoint.best_model_path:
            return None, None
        if Path(checkpoint.best_model_path).is_file():
            return checkpoint.best_model_path, checkpoint
        return None, None

    def _logged_metrics(self, trainer: pl.Trainer, checkpoint: ModelCheckpoint | None) -> list[MetricResult]:
        given = {m.name for m in self.card.metrics}
        results = []
        for name, key in self.metric_keys.items():
            if name in given:
                continue
            protocol = {"source": f"logged as '{key}' during training"}
            if checkpoint is not None and checkpoint.monitor == key and checkpoint.best_model_score is not None:
                results.append(MetricResult(name, float(checkpoint.best_model_score), protocol=protocol))
            elif key not in trainer.callback_metrics:
                results.append(MetricResult(name, reason=f"'{key}' was not logged during training"))
            elif checkpoint is not None:
                results.append(
                    MetricResult(
                        name,
                        reason=(
                            f"'{key}' was logged, but its last value belongs to the final weights, not to the exported "
                            f"checkpoint (selected by {checkpoint.monitor or 'recency'!r})"
                        ),
                    )
                )
            else:
                results.append(MetricResult(name, float(trainer.callback_metrics[key]), protocol=protocol))
        return results

    def on_fit_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not trainer.is_global_zero:
            return
        out = self.output_dir or Path(trainer.default_root_dir) / "hub_export"
        best, checkpoint = self._best_checkpoint(trainer)
        card = dataclasses.replace(
            self.card,
            metrics=(*self.card.metrics, *self._logged_metrics(trainer, checkpoint)),
            repo_id=self.card.repo_id or self.repo_id,
        )
        module = load_checkpoint(best, cls=type(pl_module)) if best is not None else pl_module
        module.save_pretrained(out, model_card_kwargs=card.as_kwargs())
        self.export_dir = out
        what = f"best checkpoint {best}" if best is not None else "the final weights (no saved checkpoint)"
        rank_zero_info(f"HubExportCallback: exported {what} to {out}")
        if self.repo_id is None:
            return
        try:
            self.commit = push_folder(
                out, self.repo_id, commit_message=self.commit_message, private=self.private, branch=self.branch
            )
        except Exception as err:  # any failure (network, auth, server): training is over and the folder is safe
            rank_zero_warn(
                f"HubExportCallback: pushing to {self.repo_id} failed: {err}\n"
                f"The model folder is at {self.export_dir}; "
                f"retry with `lightning-gen zoo push {self.export_dir} --repo-id {self.repo_id}`."
            )
            return
        rank_zero_info(f"HubExportCallback: pushed to {self.repo_id} at commit {self.commit.oid}")
