"""CAS, augmentation gain, intra-class FD, their classifier protocol, CASCallback and ``lightning-gen synthetic``.

The data: 16 px grayscale images whose class is a bright horizontal bar at a class-specific height over noise,
written as class-subfolder PNG folders (read back through the library's decoder) or kept as tensors. A small CNN
learns them in a few dozen steps, so the tests can check real behaviour (a good classifier, chance with wrong
labels) in seconds.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from _metrics_fixtures import TinyFeatures, register_tiny_extractor
from PIL import Image
from torch import nn

from lightning_gen.metrics import (
    CASCallback,
    ClassifierProtocol,
    LabelledImages,
    augmentation_gain,
    classification_accuracy_score,
    intra_class_frechet_distance,
    labelled_images,
    stratified_subset_indices,
)
from lightning_gen.metrics import synthetic_classifier
from lightning_gen.metrics.synthetic_classifier import SmallCNN, train_classifier

CLASSES = 4
SIZE = 16
FAST = ClassifierProtocol(steps=40, batch_size=32, seeds=(0, 1))


def replace_protocol(**values) -> ClassifierProtocol:
    """``FAST`` with some fields changed."""
    return replace(FAST, **values)


def bar_images(per_class: int, seed: int, noise: int = 90, jitter: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """uint8 (N, 1, 16, 16): class c is a 2-px bar at row 2 + 3c (moved by up to ``jitter`` rows) over noise."""
    rng = np.random.default_rng(seed)
    images, labels = [], []
    for label in range(CLASSES):
        for _ in range(per_class):
            image = rng.integers(0, noise, size=(SIZE, SIZE))
            row = 2 + 3 * label + int(rng.integers(-jitter, jitter + 1))
            image[row : row + 2, 2:14] = 230
            images.append(image)
            labels.append(label)
    return torch.from_numpy(np.stack(images)[:, None].astype(np.uint8)), torch.tensor(labels)


def write_classes(root: Path, images: torch.Tensor, labels: torch.Tensor) -> Path:
    """``root/digit_<c>/NNN.png`` for every image."""
    for index, (image, label) in enumerate(zip(images, labels)):
        folder = root / f"digit_{int(label)}"
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(image[0].numpy()).save(folder / f"{index:03d}.png")
    return root


@pytest.fixture(scope="module")
def folders(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("synthetic")
    return {
        "train": write_classes(root / "train", *bar_images(30, seed=1)),
        "test": write_classes(root / "test", *bar_images(20, seed=2)),
    }


class BarGenerator(nn.Module):
    """A class-conditional 'generator' with the library's sampling API: draws bar images of the requested classes."""

    num_classes = CLASSES

    def __init__(self, jitter: int = 0, shift_labels: int = 0) -> None:
        super().__init__()
        self.jitter, self.shift_labels = jitter, shift_labels

    def sample(self, n: int, seed: int | None = None, labels: torch.Tensor | None = None) -> torch.Tensor:
        labels = torch.arange(n) % CLASSES if labels is None else labels
        images = torch.empty(n, 1, SIZE, SIZE, dtype=torch.uint8)
        for label in range(CLASSES):
            members = torch.nonzero(labels == label).flatten()
            if not len(members):
                continue
            drawn, _ = bar_images(len(members), seed=1000 * (seed or 0) + label, jitter=self.jitter)
            # bar_images orders by class; take class (label + shift), so a shift draws the wrong class on purpose.
            wanted = (label + self.shift_labels) % CLASSES
            images[members] = drawn[wanted * len(members) : (wanted + 1) * len(members)]
        return images.float() / 127.5 - 1  # float in [-1, 1], like GANModule.sample


# ------------------------------------------------------------------------------------------- classifier protocol


def test_training_is_deterministic_under_a_seed_and_leaves_the_global_rng_alone():
    images, labels = bar_images(10, seed=0)
    protocol = ClassifierProtocol(steps=15, batch_size=16).resolved(image_size=SIZE, channels=1, device=torch.device("cpu"), architecture="small-cnn-12")
    before = torch.random.get_rng_state()
    first = train_classifier(images, labels, num_classes=CLASSES, protocol=protocol, seed=3)
    torch.rand(5)  # whatever the caller's global RNG does in between must not matter
    second = train_classifier(images, labels, num_classes=CLASSES, protocol=protocol, seed=3)
    other = train_classifier(images, labels, num_classes=CLASSES, protocol=protocol, seed=4)
    for key, value in first.state_dict().items():
        assert torch.equal(value, second.state_dict()[key]), key
    assert any(not torch.equal(v, other.state_dict()[k]) for k, v in first.state_dict().items())
    torch.random.set_rng_state(before)
    train_classifier(images, labels, num_classes=CLASSES, protocol=protocol, seed=3)
    assert torch.equal(torch.random.get_rng_state(), before)


def test_protocol_round_trips_and_names_bad_values():
    protocol = ClassifierProtocol(seeds=[0, 5], steps=10)
    assert protocol.seeds == (0, 5)
    assert ClassifierProtocol.from_dict(json.loads(json.dumps(protocol.to_dict()))) == protocol
    for kwargs, message in [
        (dict(steps=0), "steps must be an integer >= 1"),
        (dict(seeds=()), "seeds must be distinct"),
        (dict(seeds=(1, 1)), "seeds must be distinct"),
        (dict(channels=2), "channels must be 1, 3 or None"),
        (dict(optimizer="lion"), "optimizer must be one of"),
        (dict(per_class=-1), "per_class must be an integer >= 0"),
    ]:
        with pytest.raises(ValueError, match=message):
            ClassifierProtocol(**kwargs)


def test_stratified_subsets_take_per_class_counts_or_keep_proportions():
    labels = torch.tensor([0] * 10 + [1] * 6 + [2] * 4)
    chosen = stratified_subset_indices(labels, per_class=3, seed=1)
    assert torch.bincount(labels[chosen]).tolist() == [3, 3, 3] and chosen == sorted(chosen)
    assert chosen == stratified_subset_indices(labels, per_class=3, seed=1)
    assert chosen != stratified_subset_indices(labels, per_class=3, seed=2)
    assert torch.bincount(labels[stratified_subset_indices(labels, total=10)]).tolist() == [5, 3, 2]
    assert stratified_subset_indices(labels, total=20) == list(range(20))
    with pytest.raises(ValueError, match="class 2 has only 4 images"):
        stratified_subset_indices(labels, per_class=5)


# ------------------------------------------------------------------------------------------------------------ CAS


def test_cas_of_the_real_training_folder_equals_its_reference_exactly(folders):
    result = classification_accuracy_score(folders["train"], folders["test"], folders["train"], protocol=FAST)
    # The same images in the same order, the same seeds: the same computation, so the same numbers.
    assert result.cas_per_seed == result.real_reference_per_seed and result.cas == result.real_reference
    assert result.gap == 0.0
    assert result.cas > 0.9  # the classifier does learn the classes
    assert result.num_generated == result.num_real_reference == 120 and result.num_real_test == 80
    recorded = result.protocol
    assert (recorded.num_samples, recorded.image_size, recorded.channels, recorded.device, recorded.architecture) == (120, SIZE, 3, "cpu", "small-cnn-12")
    record = json.loads(result.to_json())
    assert record["protocol"]["steps"] == 40 and record["protocol"]["seeds"] == [0, 1]
    assert record["protocol"]["normalisation"].startswith("uint8 / 127.5 - 1")


def test_cas_with_wrong_or_shuffled_labels_falls_to_chance(folders):
    train = labelled_images(folders["train"], channels=1)
    shifted = (train.images, (train.labels + 1) % CLASSES)
    wrong = classification_accuracy_score(shifted, folders["test"], protocol=replace_protocol(channels=1))
    assert wrong.cas < 0.1  # it learns the bars well, and names every one wrongly
    permutation = torch.randperm(len(train), generator=torch.Generator().manual_seed(0))
    shuffled = classification_accuracy_score((train.images, train.labels[permutation]), folders["test"],
                                             protocol=replace_protocol(channels=1, seeds=(0, 1, 2)))
    # Chance is 1/4; with 80 test images one seed's binomial std is 0.05, so 0.15 is three of them.
    assert abs(shuffled.cas - 1 / CLASSES) < 0.15


def test_cas_of_a_conditional_model_draws_balanced_labels_and_is_high_for_a_good_generator(folders):
    result = classification_accuracy_score(BarGenerator(), folders["test"], folders["train"], num_samples=60,
                                           protocol=replace_protocol(channels=1))
    assert result.num_generated == 60 and result.num_real_reference == 60
    assert result.cas > 0.9 and result.real_reference > 0.9
    wrong = classification_accuracy_score(BarGenerator(shift_labels=1), folders["test"], num_samples=60,
                                          protocol=replace_protocol(channels=1))
    assert wrong.cas < 0.1 and wrong.real_reference is None


def test_a_classifier_factory_replaces_the_small_cnn_and_is_recorded(folders):
    built = []

    def linear(num_classes, channels, image_size):
        built.append((num_classes, channels, image_size))
        return nn.Sequential(nn.Flatten(), nn.Linear(channels * image_size**2, num_classes))

    data = bar_images(10, seed=5)
    result = classification_accuracy_score(data, data, protocol=replace_protocol(seeds=(0,)), classifier_factory=linear)
    assert built[0] == (CLASSES, 1, SIZE) and result.protocol.architecture.startswith("custom:")
    assert result.cas_std is None and len(result.cas_per_seed) == 1
    named = classification_accuracy_score(data, data, protocol=replace_protocol(seeds=(0,), architecture="linear-16"),
                                          classifier_factory=linear)
    assert named.protocol.architecture == "linear-16"
    with pytest.raises(ValueError, match="no classifier_factory builds it"):
        classification_accuracy_score(data, data, protocol=replace_protocol(architecture="resnet18"))


def test_sources_are_checked_with_messages_that_say_what_to_do(folders, tmp_path):
    flat = tmp_path / "flat"
    flat.mkdir()
    Image.fromarray(np.zeros((SIZE, SIZE), np.uint8)).save(flat / "a.png")
    with pytest.raises(ValueError, match="no class subfolders"):
        classification_accuracy_score(flat, folders["test"], protocol=FAST)
    other = write_classes(tmp_path / "other", *bar_images(3, seed=0))
    (other / "digit_3").rename(other / "zebra")
    with pytest.raises(ValueError, match="class folders differ"):
        classification_accuracy_score(other, folders["test"], protocol=FAST)
    from lightning_gen import GANModule

    with pytest.raises(TypeError, match="class-conditional model"):
        classification_accuracy_score(GANModule(image_size=SIZE, latent_dim=4, width=4), folders["test"], num_samples=8, protocol=FAST)
    with pytest.raises(ValueError, match="num_samples=500 but"):
        classification_accuracy_score(folders["train"], folders["test"], num_samples=500, protocol=FAST)


# ----------------------------------------------------------------------------------------------- augmentation gain


def test_augmentation_gain_without_synthetic_images_is_exactly_zero(folders):
    result = augmentation_gain(BarGenerator(), folders["train"], folders["test"], per_class=0, protocol=FAST)
    assert result.gain == 0.0 and result.gain_per_seed == [0.0, 0.0]
    assert result.real_only_per_seed == result.augmented_per_seed and result.num_synthetic == 0
    assert result.exceeds_seed_spread is False and result.generated_source is None


def test_augmentation_gain_in_a_small_data_regime(folders):
    protocol = ClassifierProtocol(steps=60, batch_size=32, seeds=(0, 1, 2), channels=1)
    hard = write_classes(folders["train"].parent / "hard_test", *bar_images(20, seed=9, noise=200, jitter=1))
    result = augmentation_gain(BarGenerator(jitter=1), folders["train"], hard, per_class=25, real_per_class=2, protocol=protocol)
    assert result.regime == "2 real per class" and result.num_real_train == 2 * CLASSES
    assert result.num_synthetic == 25 * CLASSES and result.protocol.per_class == 25
    assert result.gain == pytest.approx(np.mean(result.gain_per_seed), abs=1e-12)
    assert result.gain_spread == pytest.approx(np.hypot(np.std(result.real_only_per_seed, ddof=1), np.std(result.augmented_per_seed, ddof=1)))
    # Two real images per class against 27: more data of the right kind helps (by far more than the seeds' noise).
    assert result.gain > 0.1 and result.exceeds_seed_spread is True
    # The real subset is the documented stratified draw, so a generator can be trained on exactly these images.
    real = labelled_images(folders["train"], channels=1)
    assert "2 per class, seed 0" in result.real_train_source
    assert len(stratified_subset_indices(real.labels, per_class=2, seed=0)) == result.num_real_train


# ---------------------------------------------------------------------------------------------- intra-class FD


def test_intra_class_fd_is_zero_for_identical_sets_and_the_mean_of_positive_per_class_values_otherwise(folders, tmp_path):
    name = register_tiny_extractor()
    same = intra_class_frechet_distance(folders["test"], folders["test"], extractor=name)
    real = labelled_images(folders["test"])
    features = TinyFeatures()(real.images).detach().double()
    # Identical statistics: what is left is float64 eigen-solver rounding, ~1e-13 of the covariance's trace.
    assert all(abs(value) < 1e-9 * float(features.var(0).sum()) for value in same.per_class.values())
    assert list(same.per_class) == [f"digit_{c}" for c in range(CLASSES)] and same.real_counts["digit_0"] == 20

    brighter = write_classes(tmp_path / "brighter", *bar_images(20, seed=3, noise=160))
    result = intra_class_frechet_distance(folders["test"], brighter, extractor=TinyFeatures())
    assert all(value > 0 for value in result.per_class.values())
    assert result.intra_fd == pytest.approx(sum(result.per_class.values()) / CLASSES, rel=1e-12)
    assert result.extractor == "custom:TinyFeatures" and result.standard is False


def test_intra_class_fd_of_a_model_generates_as_many_per_class_as_the_real_side(folders):
    result = intra_class_frechet_distance(folders["test"], BarGenerator(), extractor=TinyFeatures(), sample_seed=4)
    assert result.generated_counts == result.real_counts == {f"digit_{c}": 20 for c in range(CLASSES)}
    assert result.sample_seed == 4 and result.intra_fd > 0
    shifted = intra_class_frechet_distance(folders["test"], BarGenerator(shift_labels=1), extractor=TinyFeatures(), sample_seed=4)
    assert shifted.intra_fd > 5 * result.intra_fd  # bars at the wrong height per class are far from their class


# ---------------------------------------------------------------------------------------------------- callback


def test_cas_callback_logs_cas_at_the_end_of_a_conditional_gan_fit(folders, tmp_path, monkeypatch, capsys):
    import lightning.pytorch as pl
    from lightning.pytorch.loggers import CSVLogger

    from lightning_gen import GANModule
    from lightning_gen.data import ImageFolderDataModule

    trainings = []
    original = synthetic_classifier.train_classifier

    def counting(images, labels, **kwargs):
        trainings.append(len(images))
        return original(images, labels, **kwargs)

    monkeypatch.setattr("lightning_gen.metrics.synthetic.train_classifier", counting)
    data = ImageFolderDataModule(folders["train"], image_size=SIZE, batch_size=16, val_fraction=0.2)  # defaults otherwise
    model = GANModule(image_size=SIZE, latent_dim=8, width=8, num_classes=CLASSES, num_sample_images=4)
    callback = CASCallback(protocol=ClassifierProtocol(steps=5, batch_size=16), seeds=(0, 1), every_n_epochs=1)
    trainer = pl.Trainer(
        accelerator="cpu", max_epochs=2, limit_train_batches=2, limit_val_batches=0, callbacks=[callback],
        logger=CSVLogger(tmp_path), enable_progress_bar=False, enable_model_summary=False, default_root_dir=tmp_path,
    )
    trainer.fit(model, datamodule=data)

    train_count = len(data.split_records("train"))
    # Two epoch-end evaluations (2 seeds each) and the reference once; the end of fit reuses the last evaluation.
    assert trainings == [train_count] * 6
    result = callback.last_result
    # The held-out split: "test", which the library's data modules serve from their validation files.
    assert result.num_generated == train_count and result.real_test_source == "ImageFolderDataModule:test"
    assert result.num_real_test == len(data.split_records("val")) and result.real_reference is not None
    assert float(trainer.callback_metrics["val/cas"]) == pytest.approx(result.cas)
    assert float(trainer.callback_metrics["val/cas_real_reference"]) == pytest.approx(result.real_reference)
    logged = (Path(trainer.logger.log_dir) / "metrics.csv").read_text()
    assert "val/cas" in logged and "val/cas_real_reference" in logged
    lines = (Path(trainer.logger.log_dir) / "synthetic_metrics.jsonl").read_text().splitlines()
    assert len(lines) == 2 and json.loads(lines[-1])["protocol"]["seeds"] == [0, 1]
    assert "CAS " in capsys.readouterr().out


def test_cas_callback_evaluates_at_the_end_when_training_stops_mid_epoch(folders, tmp_path):
    import lightning.pytorch as pl

    from lightning_gen import GANModule, VAE
    from lightning_gen.data import ImageFolderDataModule

    data = ImageFolderDataModule(folders["train"], image_size=SIZE, batch_size=16, num_workers=0, val_fraction=0.2)
    callback = CASCallback(protocol=ClassifierProtocol(steps=3), seeds=(0,), reference=False, verbose=False)
    trainer = pl.Trainer(accelerator="cpu", max_steps=2, logger=False, enable_progress_bar=False,
                         enable_model_summary=False, limit_val_batches=0, callbacks=[callback], default_root_dir=tmp_path)
    trainer.fit(GANModule(image_size=SIZE, latent_dim=8, width=8, num_classes=CLASSES, num_sample_images=4), datamodule=data)
    assert "val/cas" in trainer.callback_metrics and "val/cas_real_reference" not in trainer.callback_metrics
    with pytest.raises(TypeError, match="class-conditional module"):
        pl.Trainer(accelerator="cpu", max_steps=1, logger=False, enable_progress_bar=False, callbacks=[CASCallback()],
                   default_root_dir=tmp_path).fit(VAE(image_size=SIZE, latent_dim=4, width=8), datamodule=data)


# -------------------------------------------------------------------------------------------------------- command


def test_command_prints_json_with_the_protocol(folders, tmp_path, capsys):
    from lightning_gen.cli import main

    common = ["--steps", "20", "--seeds", "0", "1", "--channels", "1"]
    assert main(["synthetic", "cas", str(folders["train"]), str(folders["test"]), str(folders["train"]), *common]) == 0
    record = json.loads(capsys.readouterr().out)
    assert record["cas_per_seed"] == record["real_reference_per_seed"] and record["gap"] == 0.0
    assert record["protocol"]["steps"] == 20 and record["protocol"]["channels"] == 1 and record["protocol"]["num_samples"] == 120

    out = tmp_path / "gain.json"
    assert main(["synthetic", "gain", str(folders["train"]), str(folders["test"]), str(folders["train"]),
                 "--per-class", "0", "--real-per-class", "5", "--output", str(out), *common]) == 0
    record = json.loads(capsys.readouterr().out)
    assert record["gain"] == 0.0 and record["regime"] == "5 real per class" and json.loads(out.read_text()) == record

    name = register_tiny_extractor()
    assert main(["synthetic", "intra-fd", str(folders["test"]), str(folders["train"]), "--extractor", name]) == 0
    record = json.loads(capsys.readouterr().out)
    assert set(record["per_class"]) == {f"digit_{c}" for c in range(CLASSES)} and record["extractor"] == "custom:TinyFeatures"

    flat = tmp_path / "flat"
    flat.mkdir()
    Image.fromarray(np.zeros((SIZE, SIZE), np.uint8)).save(flat / "a.png")
    assert main(["synthetic", "cas", str(flat), str(folders["test"]), str(folders["train"])]) == 1
    assert "no class subfolders" in capsys.readouterr().err


def test_labelled_images_from_a_dataset_and_the_in_memory_form():
    images, labels = bar_images(3, seed=0)
    dataset = torch.utils.data.TensorDataset(images, labels)
    data = labelled_images(dataset, "real test")
    assert torch.equal(data.images, images) and torch.equal(data.labels, labels) and data.num_classes == CLASSES
    assert isinstance(data, LabelledImages) and data.class_counts(CLASSES) == [3] * CLASSES
    with pytest.raises(TypeError, match="unlabelled dataset"):
        labelled_images(torch.utils.data.TensorDataset(images), "real test")
    assert SmallCNN(CLASSES, 1, SIZE)(images.float()).shape == (len(images), CLASSES)
