"""FIDCallback / InceptionScoreCallback / KIDCallback inside a Trainer, with a tiny custom feature extractor.

The Inception network is too slow for many CPU training runs; everything the callbacks do besides running it
(schedule, logging, checkpoint monitoring, caching, modes, protocol) is independent of the extractor.
"""

from __future__ import annotations

import json
import math
import warnings

import lightning.pytorch as pl
import pytest
from _metrics_fixtures import TinyDataModule, TinyFeatures, TinyGenerativeModule
from lightning.pytorch.callbacks import EarlyStopping, ModelCheckpoint

from lightning_gen.metrics import (
    FeatureExtractor,
    FIDCallback,
    InceptionScoreCallback,
    KIDCallback,
    MetricEvaluator,
    MissingInceptionWeightsError,
)
from lightning_gen.metrics.evaluate import generate_batches


class Recorder(pl.Callback):
    """Collects what the metric callbacks logged at the end of every epoch."""

    def __init__(self) -> None:
        self.history: list[dict[str, float]] = []

    def on_train_epoch_end(self, trainer, pl_module):
        self.history.append({k: float(v) for k, v in trainer.callback_metrics.items() if k.startswith("val/")})


def make_trainer(tmp_path, callbacks, **kwargs):
    options = dict(
        accelerator="cpu",
        devices=1,
        max_epochs=3,
        limit_train_batches=2,
        limit_val_batches=0,
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=str(tmp_path),
    )
    options.update(kwargs)
    return pl.Trainer(callbacks=callbacks, **options)


def metric_kwargs(tmp_path, **overrides):
    options = dict(feature_extractor=TinyFeatures(), num_samples=40, batch_size=16, cache_dir=tmp_path / "cache")
    options.update(overrides)
    return options


def test_fid_is_logged_every_epoch_and_model_checkpoint_keeps_the_best(tmp_path):
    fid = FIDCallback(kid=True, inception_score=True, **metric_kwargs(tmp_path, kid_subset_size=20, kid_subsets=5))
    recorder = Recorder()
    checkpoint = ModelCheckpoint(dirpath=tmp_path / "ckpt", monitor="val/fid", mode="min", save_top_k=1)
    early = EarlyStopping(monitor="val/fid", mode="min", patience=5)
    # EarlyStopping listed before the metric callback on purpose: Lightning runs monitoring callbacks last.
    trainer = make_trainer(tmp_path, [early, fid, recorder, checkpoint])
    trainer.fit(TinyGenerativeModule(), datamodule=TinyDataModule())

    values = [h["val/fid"] for h in recorder.history]
    assert len(values) == 3 and len(set(values)) == 3  # evaluated every epoch, the model changed in between
    assert {"val/is", "val/is_std", "val/kid", "val/kid_std"} <= set(recorder.history[-1])
    assert checkpoint.best_model_score is not None
    assert checkpoint.best_model_score.item() == pytest.approx(min(values), rel=1e-6)
    assert f"epoch={values.index(min(values))}" in checkpoint.best_model_path
    assert early.best_score.item() == pytest.approx(min(values), rel=1e-6)


def test_value_equals_a_direct_evaluation_of_the_same_samples(tmp_path):
    callback = FIDCallback(**metric_kwargs(tmp_path, num_samples=37, batch_size=8, seed=5))
    model, datamodule = TinyGenerativeModule(), TinyDataModule()
    make_trainer(tmp_path, [callback], max_epochs=1).fit(model, datamodule=datamodule)

    evaluator = MetricEvaluator(FeatureExtractor.custom(TinyFeatures()))
    evaluator.update_real(datamodule.images())
    for images in generate_batches(model, 37, 8, seed=5):
        evaluator.update_fake(images)
    expected = evaluator.compute()
    assert callback.last_result.fid == pytest.approx(expected.fid, rel=1e-9)
    assert callback.last_result.protocol.n_real == 40 and callback.last_result.protocol.n_fake == 37
    assert callback.last_result.protocol.standard is False
    assert callback.last_result.protocol.extractor == "custom:TinyFeatures"


class FrozenNorm(TinyGenerativeModule):
    """Keeps its batch norm in eval mode while training, as fine-tuning code often does."""

    def on_train_epoch_start(self):
        self.norm.eval()


class ModeSpy(pl.Callback):
    """Runs after the metric callback: records the modes it left behind."""

    def __init__(self) -> None:
        self.modes = []

    def on_train_epoch_end(self, trainer, pl_module):
        self.modes.append((pl_module.training, pl_module.norm.training))


@pytest.mark.parametrize(("module_class", "expected"), [(TinyGenerativeModule, (True, True)), (FrozenNorm, (True, False))])
def test_sampling_runs_in_eval_mode_without_grad_and_restores_each_modules_mode(tmp_path, module_class, expected):
    model, spy = module_class(), ModeSpy()
    make_trainer(tmp_path, [FIDCallback(**metric_kwargs(tmp_path)), spy], max_epochs=1).fit(model, datamodule=TinyDataModule())
    assert model.sample_calls and all(call == (False, False) for call in model.sample_calls)  # (training, grad)
    assert spy.modes == [expected]


def test_every_n_steps_counts_generator_steps(tmp_path):
    callback = FIDCallback(every_n_steps=3, **metric_kwargs(tmp_path))
    model = TinyGenerativeModule()
    evaluated_at = []

    class Spy(pl.Callback):
        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            if callback.last_result is not None and (not evaluated_at or evaluated_at[-1][1] is not callback.last_result):
                evaluated_at.append((pl_module.generator_step, callback.last_result))

    trainer = make_trainer(tmp_path, [callback, Spy()], max_epochs=2, limit_train_batches=4)
    trainer.fit(model, datamodule=TinyDataModule())
    assert [step for step, _ in evaluated_at] == [3, 6]
    assert "val/fid" in trainer.callback_metrics


def test_evaluates_after_validation_when_the_trainer_validates(tmp_path):
    # With check_val_every_n_epoch=2 ModelCheckpoint saves after validation, before on_train_epoch_end: the value
    # must already be logged then.
    callback = FIDCallback(every_n_epochs=2, **metric_kwargs(tmp_path))
    checkpoint = ModelCheckpoint(dirpath=tmp_path / "ckpt", monitor="val/fid", mode="min")
    trainer = make_trainer(tmp_path, [callback, checkpoint], max_epochs=4, check_val_every_n_epoch=2, limit_val_batches=1)
    trainer.fit(TinyGenerativeModule(), datamodule=TinyDataModule(with_val=True))
    assert checkpoint.best_model_score is not None
    assert len(list((tmp_path / "ckpt").glob("*.ckpt"))) == 1


def test_trainer_validate_reports_the_metrics(tmp_path):
    callback = InceptionScoreCallback(**metric_kwargs(tmp_path))
    trainer = make_trainer(tmp_path, [callback], limit_val_batches=1)
    results = trainer.validate(TinyGenerativeModule(), datamodule=TinyDataModule(with_val=True))
    assert results[0]["val/is"] >= 1.0 and "val/is_std" in results[0]
    assert callback.last_result.protocol.n_real is None  # IS needs no real images


def test_second_run_uses_cached_real_statistics_and_a_changed_dataset_invalidates_them(tmp_path):
    options = metric_kwargs(tmp_path, kid_subset_size=20, kid_subsets=4, split="real")
    first = KIDCallback(**options)
    make_trainer(tmp_path, [first], max_epochs=1).fit(TinyGenerativeModule(), datamodule=TinyDataModule())
    assert len(list((tmp_path / "cache").glob("kid-*.pt"))) == 1

    # Same fingerprint: the real images are never read (the dataset raises if they are).
    second = KIDCallback(**options)
    make_trainer(tmp_path, [second], max_epochs=1).fit(TinyGenerativeModule(), datamodule=TinyDataModule(explode=True))
    assert second.last_result.kid == pytest.approx(first.last_result.kid, rel=1e-9)
    assert second.last_result.protocol.n_real == 40

    # A new dataset version has a new fingerprint: the statistics are recomputed, i.e. the data is read.
    third = KIDCallback(**options)
    with pytest.raises(AssertionError, match="real images were read"):
        make_trainer(tmp_path, [third], max_epochs=1).fit(
            TinyGenerativeModule(), datamodule=TinyDataModule(version=1, explode=True)
        )


def test_protocol_is_recorded_next_to_the_logs(tmp_path):
    callback = FIDCallback(**metric_kwargs(tmp_path))
    trainer = make_trainer(tmp_path, [callback], max_epochs=2, logger=pl.loggers.CSVLogger(tmp_path))
    trainer.fit(TinyGenerativeModule(), datamodule=TinyDataModule())
    lines = (tmp_path / "lightning_logs" / "version_0" / "generative_metrics.jsonl").read_text().splitlines()
    records = [json.loads(line) for line in lines]
    assert [r["epoch"] for r in records] == [0, 1]
    assert records[-1]["fid"] == pytest.approx(callback.last_result.fid)
    assert records[-1]["protocol"]["n_fake"] == 40 and records[-1]["protocol"]["split"] == "TinyDataModule:train"


def test_grayscale_images_are_replicated_to_rgb(tmp_path):
    callback = FIDCallback(**metric_kwargs(tmp_path))
    trainer = make_trainer(tmp_path, [callback], max_epochs=1)
    trainer.fit(TinyGenerativeModule(channels=1), datamodule=TinyDataModule(channels=1))
    assert math.isfinite(callback.last_result.fid)


def test_missing_weights_raise_at_fit_start_or_warn_and_skip(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "empty-torch-home"))
    monkeypatch.delenv("LIGHTNING_GEN_INCEPTION_WEIGHTS", raising=False)
    model = TinyGenerativeModule()
    with pytest.raises(MissingInceptionWeightsError, match="on_missing_weights='warn'") as error:
        make_trainer(tmp_path, [FIDCallback(download=False)], max_epochs=1).fit(model, datamodule=TinyDataModule())
    assert "weights-inception-2015-12-05-6726825d.pth" in str(error.value)
    assert model.generator_step == 0  # failed before training, not after an epoch

    callback = FIDCallback(download=False, on_missing_weights="warn")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        trainer = make_trainer(tmp_path, [callback], max_epochs=1)
        trainer.fit(model, datamodule=TinyDataModule())
    assert any("FIDCallback is disabled" in str(w.message) for w in caught)
    assert model.generator_step == 2 and "val/fid" not in trainer.callback_metrics


def test_module_without_sample_is_rejected(tmp_path):
    class NoSample(TinyGenerativeModule):
        sample = None

    with pytest.raises(TypeError, match="sample\\(n, seed=None\\)"):
        make_trainer(tmp_path, [FIDCallback(**metric_kwargs(tmp_path))]).fit(NoSample(), datamodule=TinyDataModule())


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"every_n_epochs": 1, "every_n_steps": 10}, "not both"),
        ({"every_n_epochs": 0}, "every_n_epochs must be an integer >= 1"),
        ({"num_samples": 1}, "num_samples must be an integer >= 2"),
        ({"kid": True, "real_stats": "stats.npz"}, "KID and precision_recall need the real images"),
        ({"precision_recall": True, "num_samples": 3}, "num_samples=3 must exceed prdc_k=3"),
        ({"on_missing_weights": "ignore"}, "on_missing_weights must be 'raise' or 'warn'"),
        ({"inception_score": True, "num_samples": 5}, "below is_splits=10"),
    ],
)
def test_bad_arguments_are_named(kwargs, message):
    with pytest.raises(ValueError, match=message):
        FIDCallback(**kwargs)
