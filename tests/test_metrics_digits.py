"""The digits evaluator (digits FD, class coverage, validity, conditional accuracy) with the shipped classifier.

Real digits come from the library's own DigitsDataModule (the held-out test split) or an image folder written by
make-digits; "generators" are banks of real digits served by label, noise, or a tiny conditional GANModule.
"""

from __future__ import annotations

import json

import lightning.pytorch as pl
import pytest
import torch

from lightning_gen import GANModule
from lightning_gen._files import sha256_file
from lightning_gen.cli import main as cli_main
from lightning_gen.data import DigitsDataModule, ImageFolderDataModule
from lightning_gen.data.digits import write_digits_folder
from lightning_gen.metrics import (
    DIGITS_CLASSIFIER_SHA256,
    DIGITS_CLASSIFIER_WEIGHTS,
    DigitsMetricsCallback,
    evaluate,
    evaluate_digits,
    load_digits_classifier,
)
from lightning_gen.metrics.digits import digit_of_label
from lightning_gen.metrics.digits_classifier import DIGITS_CLASSIFIER_ACCURACY, DIGITS_CLASSIFIER_NAME

# Measured with the shipped weights: 0.995 at 28 and 32 px, 0.992 at 16 px (DIGITS_CLASSIFIER_ACCURACY). The
# bounds leave 5 (28/32 px) and 7 (16 px) of the 1,000 digits for BLAS kernels that flip borderline readings.
ACCURACY_BOUNDS = {28: 0.99, 32: 0.99, 16: 0.985}


class DigitBank:
    """A stand-in conditional generator: ``sample(n, seed, labels)`` serves real digits of each requested label,
    each label's digits in turn, so balanced labels over 1,000 samples serve every test digit once."""

    num_classes = 10

    def __init__(self, images: torch.Tensor, labels: torch.Tensor) -> None:
        self.by_label = [images[labels == label] for label in range(10)]
        self.served = [0] * 10

    def sample(self, n: int, seed: int = 0, labels: torch.Tensor | None = None) -> torch.Tensor:
        out = []
        for label in labels.tolist():
            pool = self.by_label[label]
            out.append(pool[self.served[label] % len(pool)])
            self.served[label] += 1
        return torch.stack(out).float() / 127.5 - 1


class Noise:
    """A garbage generator, conditional or not: uniform noise whatever the label."""

    def __init__(self, num_classes: int) -> None:
        self.num_classes = num_classes

    def sample(self, n: int, seed: int = 0, labels: torch.Tensor | None = None) -> torch.Tensor:
        return torch.rand(n, 1, 32, 32, generator=torch.Generator().manual_seed(seed)) * 2 - 1


@pytest.fixture(scope="module")
def test_digits():
    return DigitsDataModule(image_size=32).split_dataset("test")


def test_shipped_weights_load_with_their_pinned_sha256():
    assert sha256_file(DIGITS_CLASSIFIER_WEIGHTS) == DIGITS_CLASSIFIER_SHA256
    network = load_digits_classifier()
    assert not network.training and network.num_features == 128


def test_damaged_weights_are_refused(tmp_path):
    damaged = tmp_path / "digits.safetensors"
    damaged.write_bytes(DIGITS_CLASSIFIER_WEIGHTS.read_bytes()[:-1] + b"\0")
    with pytest.raises(ValueError, match="expected_sha256=None"):
        load_digits_classifier(damaged)


@pytest.mark.parametrize("image_size", [28, 32, 16])
def test_held_out_accuracy_at_every_size_the_data_module_offers(image_size):
    test = DigitsDataModule(image_size=image_size, channels=3 if image_size == 16 else 1).split_dataset("test")
    images, labels = test.to_tensors()
    result = evaluate_digits(test, images, fake_labels=labels, use_cache=False)
    assert result.real_accuracy >= ACCURACY_BOUNDS[image_size]
    assert result.real_accuracy == pytest.approx(DIGITS_CLASSIFIER_ACCURACY[image_size], abs=0.005)
    # The same images on both sides: nothing between them.
    assert result.conditional_accuracy == result.real_accuracy
    assert result.class_tv == 0.0 and abs(result.digits_fd) < 1e-6
    assert result.class_coverage == 1.0 and result.missing == ()


def test_conditional_accuracy_of_real_digits_by_label_matches_real_accuracy(test_digits):
    bank = DigitBank(*test_digits.to_tensors())
    result = evaluate_digits(test_digits, bank, num_samples=1000, batch_size=128, use_cache=False)
    # Balanced labels over 1,000 samples serve each test digit exactly once; only batch composition differs.
    assert result.conditional_accuracy == pytest.approx(result.real_accuracy, abs=0.002)
    assert result.per_class_accuracy is not None and min(result.per_class_accuracy.values()) > 0.95
    assert result.class_tv < 0.01
    assert result.protocol.sample_labels.startswith("balanced")
    assert result.protocol.extractor == DIGITS_CLASSIFIER_NAME
    assert result.protocol.weights_sha256 == DIGITS_CLASSIFIER_SHA256


def test_noise_scores_near_chance_and_far_away(test_digits):
    conditional = evaluate_digits(test_digits, Noise(10), num_samples=300, use_cache=False)
    assert conditional.conditional_accuracy < 0.2  # chance is 0.1
    assert conditional.validity < 0.05 and conditional.real_validity > 0.9
    assert conditional.class_tv > 0.5 and conditional.digits_fd > 100
    unconditional = evaluate_digits(test_digits, Noise(0), num_samples=300, use_cache=False)
    assert unconditional.conditional_accuracy is None and unconditional.protocol.sample_labels is None
    assert "conditional_accuracy" not in unconditional.scalars()


def test_fd_of_real_train_digits_against_test_digits_is_small(test_digits):
    train, _ = DigitsDataModule(image_size=32, train_per_class=100).split_dataset("train").to_tensors()
    result = evaluate_digits(test_digits, train, use_cache=False)
    # Measured 1.8 (1,000 vs 1,000 different real digits, the finite-sample bias included); noise is above 100.
    assert 0 < result.digits_fd < 5
    assert result.class_tv < 0.05 and result.conditional_accuracy is None


def test_real_statistics_are_cached_and_reused(test_digits, tmp_path):
    images, labels = test_digits.to_tensors()
    first = evaluate_digits(test_digits, images[::3], fake_labels=labels[::3], cache_dir=tmp_path)
    assert len(list(tmp_path.glob("*.pt"))) == 1
    again = evaluate_digits(test_digits, images[::3], fake_labels=labels[::3], cache_dir=tmp_path)
    assert again.to_dict() == first.to_dict()


def test_labels_are_read_through_class_names():
    assert digit_of_label(["3", "7"], 2).tolist() == [3, 7]
    with pytest.raises(ValueError, match="make-digits"):
        digit_of_label(["cat", "dog"], 2)
    with pytest.raises(ValueError, match="class_names"):
        digit_of_label(None, 12)


def _trainer(tmp_path, callback):
    return pl.Trainer(
        accelerator="cpu", max_epochs=1, limit_train_batches=2, limit_val_batches=0, logger=False,
        enable_progress_bar=False, enable_model_summary=False, enable_checkpointing=False,
        default_root_dir=str(tmp_path), callbacks=[callback],
    )


def test_callback_logs_digits_metrics_for_a_conditional_gan(tmp_path, capsys):
    dm = DigitsDataModule(image_size=16, train_per_class=4, batch_size=8)
    model = GANModule(image_size=16, channels=1, width=4, latent_dim=8, num_classes=10)
    callback = DigitsMetricsCallback(num_samples=60, batch_size=16, cache_dir=tmp_path / "cache")
    _trainer(tmp_path, callback).fit(model, datamodule=dm)
    logged = {name: float(value) for name, value in _trainer_metrics(callback, model).items()}
    assert {"val/digits_fd", "val/conditional_accuracy", "val/class_tv", "val/validity", "val/real_accuracy"} <= set(logged)
    result = callback.last_result
    assert result.protocol.n_real == 1000 and result.protocol.n_fake == 60  # the held-out test digits
    assert result.real_accuracy >= ACCURACY_BOUNDS[16]
    assert "digits FD" in capsys.readouterr().out
    record = json.loads((tmp_path / "digits_metrics.jsonl").read_text().splitlines()[-1])
    assert record["protocol"]["extractor"] == DIGITS_CLASSIFIER_NAME and record["protocol"]["sample_labels"]
    # The callback's number is the standalone evaluation of the same samples (same seeds, same labels).
    direct = evaluate_digits(dm.split_dataset("test"), model, num_samples=60, batch_size=16, use_cache=False)
    assert direct.conditional_accuracy == result.conditional_accuracy
    assert direct.digits_fd == pytest.approx(result.digits_fd, rel=1e-9)


def _trainer_metrics(callback, model):
    return {k: v for k, v in model.trainer.callback_metrics.items() if k.startswith("val/")}


def test_callback_works_with_an_image_folder_of_digits(tmp_path):
    folder = write_digits_folder(tmp_path / "digits", "test", image_size=16, per_class=6)
    dm = ImageFolderDataModule(folder, image_size=16, channels=1, batch_size=8, val_fraction=0.5, num_workers=1)
    model = GANModule(image_size=16, channels=1, width=4, latent_dim=8, num_classes=10)
    callback = DigitsMetricsCallback(num_samples=40, batch_size=20, use_cache=False, print_summary=False)
    _trainer(tmp_path, callback).fit(model, datamodule=dm)
    result = callback.last_result
    assert result.conditional_accuracy is not None and result.real_accuracy >= 0.9
    assert 0 < result.protocol.n_real < 60  # the folder's validation half


def test_fid_command_with_the_digits_extractor_prints_json(tmp_path, capsys):
    real = write_digits_folder(tmp_path / "real", "test", per_class=10)
    fake = write_digits_folder(tmp_path / "fake", "train", per_class=10)
    code = cli_main(["fid", str(real), str(fake), "--extractor", "digits", "--no-is", "--no-kid", "--no-cache",
                     "--num-workers", "0"])  # fmt: skip
    assert code == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["fid"] == printed["digits_fd"] and printed["fid"] > 0
    assert printed["class_tv"] < 0.2 and len(printed["generated"]) == 10
    assert printed["protocol"]["extractor"] == DIGITS_CLASSIFIER_NAME


def test_evaluate_with_the_digits_extractor_matches_evaluate_digits(test_digits):
    images, _ = test_digits.to_tensors()
    train, _ = DigitsDataModule(image_size=32, train_per_class=30).split_dataset("train").to_tensors()
    result = evaluate(images, train, metrics=("fid",), feature_extractor="digits", batch_size=250, use_cache=False, device="cpu")
    direct = evaluate_digits(images, train, use_cache=False)
    assert result.digits_fd == pytest.approx(direct.digits_fd, rel=1e-9)
    assert result.digits.class_tv == pytest.approx(direct.class_tv)
