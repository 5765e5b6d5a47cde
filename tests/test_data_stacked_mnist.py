import math
import pickle

import pytest
import torch
from torch.utils.data import TensorDataset

from lightning_gen.data.stacked_mnist import NUM_MODES, StackedMNISTDataModule, StackedMNISTDataset, frame_digits, stacked_mode
from lightning_gen.metrics.stacked_mnist import count_modes, mode_coverage, predict_channel_digits


def _digits(per_class: int = 3, size: int = 28):
    """Fake digits whose class can be read back: a square of brightness 20 * (class + 1) on black."""
    labels = torch.arange(10).repeat(per_class)
    images = torch.zeros(len(labels), size, size, dtype=torch.uint8)
    for i, label in enumerate(labels.tolist()):
        images[i, 6:22, 6:22] = 20 * (label + 1)
        images[i, 0, 0] = i % 7  # make digits of one class differ
    return images, labels


def _read_brightness(images):
    """A 'classifier' for the fake digits: the brightest pixel, mapped back to the class; (B,) predictions."""
    peak = ((images.flatten(1).amax(dim=1) + 1) * 127.5).round()
    return (peak / 20 - 1).round().long().clamp(0, 9)


def test_images_depend_only_on_seed_and_index():
    digits, labels = _digits()
    a = StackedMNISTDataset(digits, labels, num_images=50, seed=3)
    b = StackedMNISTDataset(digits, labels, num_images=10, seed=3)
    for i in range(10):
        assert torch.equal(a[i][0], b[i][0]) and a[i][1] == b[i][1]
    assert torch.equal(StackedMNISTDataset(digits, labels, num_images=10, seed=3, start=5)[0][0], a[5][0])
    other = StackedMNISTDataset(digits, labels, num_images=50, seed=4)
    assert sum(torch.equal(a[i][0], other[i][0]) for i in range(50)) < 5  # 30^3 possible stacks


def test_each_channel_is_a_framed_digit_and_the_label_is_the_mode():
    digits, labels = _digits()
    dataset = StackedMNISTDataset(digits, labels, num_images=20, seed=0)
    framed = torch.nn.functional.pad(digits, (2, 2, 2, 2))
    for i in range(20):
        image, mode = dataset[i]
        assert image.shape == (3, 32, 32) and image.dtype == torch.uint8
        red, green, blue = dataset.digit_indices(i)
        assert torch.equal(image, torch.stack([framed[red], framed[green], framed[blue]]))
        assert mode == 100 * int(labels[red]) + 10 * int(labels[green]) + int(labels[blue])
        assert dataset.digit_labels(i) == (int(labels[red]), int(labels[green]), int(labels[blue]))
    assert dataset.modes().tolist() == [dataset[i][1] for i in range(20)]
    assert dataset.class_names[307] == "307" and len(dataset.class_names) == NUM_MODES


def test_every_mode_occurs_and_the_data_is_close_to_uniform():
    digits, labels = _digits(per_class=2)
    modes = StackedMNISTDataset(digits, labels, num_images=12_000, seed=0).modes()
    coverage = count_modes(modes)
    assert coverage.modes == NUM_MODES
    # 12 draws per mode on average: the multinomial's own KL to uniform is about (1000 - 1) / (2 * 12000) nats.
    assert coverage.reverse_kl == pytest.approx(999 / 24_000, rel=0.25)


def test_frame_digits_accepts_mnist_layouts_and_names_bad_input():
    digits, labels = _digits()
    for layout in (digits, digits[:, None], torch.nn.functional.pad(digits, (2, 2, 2, 2))):
        framed, _ = frame_digits(layout, labels)
        assert framed.shape == (30, 32, 32) and torch.equal(framed, frame_digits(digits, labels)[0])
    with pytest.raises(ValueError, match="digits must be a uint8 tensor"):
        frame_digits(digits.float(), labels)
    with pytest.raises(ValueError, match=r"shape \(N, 28, 28\), \(N, 32, 32\).*\(30, 3, 28, 28\)"):
        frame_digits(digits[:, None].expand(-1, 3, -1, -1), labels)
    with pytest.raises(ValueError, match="30 digits and 29 labels"):
        frame_digits(digits, labels[:-1])
    with pytest.raises(ValueError, match=r"0..9, got the range 10..10"):
        frame_digits(digits, labels.clone().fill_(10))


def test_data_module_batches_splits_and_order():
    digits, labels = _digits()
    dm = StackedMNISTDataModule((digits, labels), num_images=50, batch_size=8, val_fraction=0.2, seed=1)
    assert (dm.image_size, dm.channels, dm.num_classes, dm.num_workers) == (32, 3, 1000, 0)
    assert "digits" not in dm.hparams and dm.hparams["num_images"] == 50
    dm.setup("fit")
    images, modes = next(iter(dm.train_dataloader()))
    assert images.shape == (8, 3, 32, 32) and images.dtype == torch.uint8 and modes.dtype == torch.long
    converted = dm.on_after_batch_transfer((images, modes), 0)[0]
    assert converted.dtype == torch.float32 and converted.min() == -1
    val = torch.cat([batch[0] for batch in dm.val_dataloader()])
    assert val.shape[0] == 10
    assert torch.equal(val[0], StackedMNISTDataset(digits, labels, 50, seed=1)[40][0])  # validation continues training
    assert dm.fingerprint("train") != dm.fingerprint("val")
    assert StackedMNISTDataModule((digits, labels), num_images=50, seed=2).fingerprint() != StackedMNISTDataModule((digits, labels), num_images=50, seed=1).fingerprint()
    # The training order is a function of (seed, epoch): it changes per epoch and survives pickling.
    loader = dm.train_dataloader()
    first = next(iter(loader))[1]
    loader.sampler.set_epoch(1)
    assert not torch.equal(first, next(iter(loader))[1])
    clone = pickle.loads(pickle.dumps(dm))
    assert torch.equal(next(iter(clone.train_dataloader()))[1], first)
    assert StackedMNISTDataModule((digits, labels), num_images=8, val_fraction=0.0).val_dataloader() == []


def test_worker_processes_and_a_digits_dataset_give_the_same_batches():
    digits, labels = _digits()
    common = {"num_images": 24, "batch_size": 6, "val_fraction": 0.0, "seed": 5}
    in_process = StackedMNISTDataModule((digits, labels), **common)
    workers = StackedMNISTDataModule(TensorDataset(digits[:, None], labels), num_workers=2, **common)
    for loader_a, loader_b in ((in_process.train_dataloader(), workers.train_dataloader()),):
        for epoch in (0, 3):  # a resumed run sets the restored epoch before iterating
            loader_a.sampler.set_epoch(epoch)
            loader_b.sampler.set_epoch(epoch)
            for (a, la), (b, lb) in zip(loader_a, loader_b):
                assert torch.equal(a, b) and torch.equal(la, lb)


def test_channel_reading_recovers_the_modes_end_to_end():
    digits, labels = _digits()
    dataset = StackedMNISTDataset(digits, labels, num_images=40, seed=0)
    images = torch.stack([dataset[i][0] for i in range(40)])
    predictions = predict_channel_digits(images, _read_brightness, batch_size=7)  # chunks that don't divide 40
    assert predictions.shape == (40, 3)
    assert stacked_mode(predictions[:, 0], predictions[:, 1], predictions[:, 2]).tolist() == dataset.modes().tolist()
    as_float = images.float() / 127.5 - 1  # what a generator outputs
    assert torch.equal(predict_channel_digits(as_float, _read_brightness), predictions)
    logits = lambda x: torch.nn.functional.one_hot(_read_brightness(x), 10).float()  # noqa: E731
    assert mode_coverage(images.split(16), logits) == count_modes(dataset.modes())


def test_count_modes_against_hand_computation():
    # 6 samples: mode 123 three times, 5 twice, 999 once -> p = (1/2, 1/3, 1/6).
    predictions = torch.tensor([[1, 2, 3]] * 3 + [[0, 0, 5]] * 2 + [[9, 9, 9]])
    coverage = count_modes(predictions)
    expected = sum(p * math.log(p * 1000) for p in (1 / 2, 1 / 3, 1 / 6))
    assert (coverage.modes, coverage.num_samples) == (3, 6)
    assert coverage.reverse_kl == pytest.approx(expected, rel=1e-12)  # float64 sums
    assert count_modes(torch.arange(1000)).reverse_kl == pytest.approx(0.0, abs=1e-12)
    assert count_modes(torch.zeros(10, dtype=torch.long)).reverse_kl == pytest.approx(math.log(1000), rel=1e-12)
    with pytest.raises(ValueError, match=r"digits 0..9, got the range 0..10"):
        count_modes(torch.tensor([[0, 1, 10]]))
    with pytest.raises(ValueError, match=r"shape \(N, 3\)"):
        count_modes(torch.zeros(2, 2, dtype=torch.long))


def test_default_stacks_the_built_in_training_digits_only():
    from lightning_gen.data import DigitsDataset

    dm = StackedMNISTDataModule(num_images=50, batch_size=10)
    train = DigitsDataset("train", image_size=32)
    assert torch.equal(dm.digits, train.images[:, 0]) and torch.equal(dm.digit_labels, train.labels)
    images, modes = next(iter(dm.train_dataloader()))
    assert images.shape == (10, 3, 32, 32) and int(modes.max()) < NUM_MODES
