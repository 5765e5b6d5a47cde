"""Test helpers for the metrics tests: a stand-in Inception weights file, image folders, tiny modules.

The real FID Inception weights cannot be downloaded in CI, so the tests build a weights file with the *same
architecture* (torch-fidelity's ``FeatureExtractorInceptionV3``) from a seeded random initialisation. Both the
library and ``torch_fidelity.calculate_metrics`` then load that file, which is all the agreement tests need.
"""

from __future__ import annotations

from pathlib import Path
from unittest import mock

import numpy as np
import torch
from PIL import Image
from torch import nn


def make_random_inception_weights(path: Path, seed: int = 0) -> Path:
    """Write a seeded, randomly initialised torch-fidelity Inception-v3 state dict to ``path``.

    PyTorch's default initialisation makes the 2048-d pool features of this 40-layer net collapse to ~1e-7
    (every layer shrinks the signal), and the 1008 logits to an almost uniform softmax (IS ~ 1). Both would
    make the agreement tests vacuous, so the batch-norm running statistics are calibrated on a batch of
    images (each layer then sees unit-variance inputs) and the classifier is scaled so that the softmax is
    peaked and the Inception Score is well above 1.
    """
    from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3

    torch.manual_seed(seed)
    empty = path.with_suffix(".empty.pth")
    torch.save({}, empty)
    # The constructor insists on loading a file; skip the load to keep the fresh random initialisation.
    with mock.patch.object(FeatureExtractorInceptionV3, "load_state_dict", lambda self, state_dict: None):
        net = FeatureExtractorInceptionV3("inception-v3-compat", ["2048"], feature_extractor_weights_path=str(empty))
    empty.unlink()
    for module in net.modules():
        if isinstance(module, nn.BatchNorm2d):
            module.reset_running_stats()
            module.momentum = None  # cumulative average over the calibration batch
    calibration = torch.from_numpy(np.stack([_image(kind, i, 32) for i, kind in enumerate(["blobs", "stripes"] * 8)]))
    with torch.no_grad():
        net.train()
        net(calibration)
        net.eval()
        net.fc.weight.mul_(60.0)
    torch.save(net.state_dict(), path)
    return path


def shared_random_inception_weights(tmp_path_factory) -> Path:
    """One random-weights file per test session, shared by every test file that needs it (built once: ~100 MB)."""
    path = Path(tmp_path_factory.getbasetemp()) / "random-inception.pth"
    if not path.exists():
        make_random_inception_weights(path)
    return path


def _image(kind: str, index: int, size: int, channels: int = 3) -> np.ndarray:
    """One deterministic uint8 image (C, H, W) of a given family; the families differ in distribution."""
    rng = np.random.default_rng(1000 * len(kind) + index)
    yy, xx = np.mgrid[0:size, 0:size] / size
    if kind == "blobs":
        planes = []
        for _ in range(channels):
            cx, cy, r = rng.uniform(0.2, 0.8), rng.uniform(0.2, 0.8), rng.uniform(0.1, 0.4)
            planes.append(np.exp(-((xx - cx) ** 2 + (yy - cy) ** 2) / (2 * r**2)))
        image = np.stack(planes) * 255
    elif kind == "stripes":
        freq, phase = rng.uniform(2, 8), rng.uniform(0, 2 * np.pi)
        angle = rng.uniform(0, np.pi)
        wave = np.sin(2 * np.pi * freq * (np.cos(angle) * xx + np.sin(angle) * yy) + phase)
        colour = rng.uniform(0.3, 1.0, size=(channels, 1, 1))
        image = (wave[None] * 0.5 + 0.5) * colour * 255 + rng.normal(0, 10, size=(channels, size, size))
    else:
        raise ValueError(f"unknown image family {kind!r}")
    return np.clip(np.rint(image), 0, 255).astype(np.uint8)


def make_images(kind: str, count: int, size: int = 32, channels: int = 3, offset: int = 0) -> torch.Tensor:
    """A uint8 tensor (count, channels, size, size) of images from one family."""
    return torch.from_numpy(np.stack([_image(kind, offset + i, size, channels) for i in range(count)]))


def write_image_folder(folder: Path, images: torch.Tensor) -> Path:
    """Save a uint8 (N, C, H, W) tensor as PNG files ``000.png`` ... in ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    for i, image in enumerate(images):
        array = image.permute(1, 2, 0).numpy()
        Image.fromarray(array[..., 0] if array.shape[-1] == 1 else array).save(folder / f"{i:03d}.png")
    return folder


# --------------------------------------------------------------------------------------------------------------
# Tiny stand-ins for the callback tests (module level so that ddp_spawn can pickle them).

import hashlib  # noqa: E402

import lightning.pytorch as pl  # noqa: E402
from torch.utils.data import DataLoader, Dataset, TensorDataset  # noqa: E402


class TinyFeatures(nn.Module):
    """A cheap custom feature extractor: uint8 (N, 3, H, W) -> (N, 30) pooled responses of a fixed random conv."""

    num_features = 30  # 6 channels x 2 x 2 pooled + 6 channel maxima

    def __init__(self) -> None:
        super().__init__()
        generator = torch.Generator().manual_seed(0)
        self.conv = nn.Conv2d(3, 6, kernel_size=3, stride=2)
        with torch.no_grad():
            self.conv.weight.copy_(torch.randn(self.conv.weight.shape, generator=generator))
            self.conv.bias.zero_()

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.conv(images.float() / 127.5 - 1))
        pooled = torch.nn.functional.adaptive_avg_pool2d(x, 2).flatten(1)
        return torch.cat([pooled, x.amax(dim=(2, 3))], dim=1)


class TinyGenerativeModule(pl.LightningModule):
    """Implements the generative-module contract with one trainable colour offset that training moves.

    ``sample(n, seed)`` returns tanh(noise + offset): the same seed gives the same noise, and the distance to the
    data changes epoch by epoch, so FID values differ between evaluations.
    """

    def __init__(self, image_size: int = 16, channels: int = 3, target: float = 0.8, lr: float = 0.3) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.offset = nn.Parameter(torch.full((channels, 1, 1), -1.0))
        self.norm = nn.BatchNorm2d(channels, affine=False)  # a layer whose mode matters (no unused DDP parameters)
        self.generator_step = 0
        self.sample_calls: list[tuple[bool, bool]] = []  # (module.training, grad enabled) at each sample call

    def sample(self, n: int, seed: int | None = None, labels: torch.Tensor | None = None) -> torch.Tensor:
        self.sample_calls.append((self.training, torch.is_grad_enabled()))
        generator = torch.Generator().manual_seed(seed) if seed is not None else None
        noise = torch.randn(n, self.hparams.channels, self.hparams.image_size, self.hparams.image_size, generator=generator)
        return torch.tanh(noise.to(self.device) * 0.7 + self.offset)

    def training_step(self, batch, batch_idx):
        self.generator_step += 1
        return ((self.offset - self.hparams.target) ** 2).sum()

    def validation_step(self, batch, batch_idx):
        pass

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=self.hparams.lr)


class _ExplodingDataset(Dataset):
    """Stands for real data that must not be read (the cache should make it unnecessary)."""

    def __init__(self, length: int) -> None:
        self.length = length

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int):
        raise AssertionError("real images were read although their statistics are cached")


class TinyDataModule(pl.LightningDataModule):
    """uint8 images (lightning-gen's loader convention) with a ``fingerprint(split)`` that follows ``version``."""

    def __init__(self, num_images: int = 40, image_size: int = 16, channels: int = 3, version: int = 0,
                 explode: bool = False, batch_size: int = 8, with_val: bool = False) -> None:
        super().__init__()
        self.num_images, self.image_size, self.channels = num_images, image_size, channels
        self.version, self.explode, self.batch_size, self.with_val = version, explode, batch_size, with_val

    def images(self) -> torch.Tensor:
        return make_images("blobs", self.num_images, size=self.image_size, channels=self.channels, offset=self.version)

    def fingerprint(self, split: str = "train") -> str:
        text = f"tiny-{split}-{self.num_images}-{self.image_size}-{self.channels}-{self.version}"
        return hashlib.sha256(text.encode()).hexdigest()

    def train_dataloader(self) -> DataLoader:
        return DataLoader(TensorDataset(self.images()), batch_size=self.batch_size, shuffle=True)

    def real_dataloader(self) -> DataLoader:
        """The split the caching tests point the callbacks at (``split="real"``); training never reads it."""
        dataset = _ExplodingDataset(self.num_images) if self.explode else TensorDataset(self.images())
        return DataLoader(dataset, batch_size=self.batch_size)

    def val_dataloader(self):
        if not self.with_val:
            return []
        return DataLoader(TensorDataset(self.images()[:8]), batch_size=self.batch_size)


# --------------------------------------------------------------------------------------------------------------
# Named stand-in extractor and class folders for the source / statistics-file tests.

TINY_EXTRACTOR = "tiny-test"


def register_tiny_extractor() -> str:
    """Register ``TinyFeatures`` as the named extractor ``"tiny-test"``, so the command line can select it."""
    from lightning_gen.metrics import FeatureExtractor, register_extractor

    register_extractor(TINY_EXTRACTOR, lambda weights, download: FeatureExtractor.custom(TinyFeatures()), overwrite=True)
    return TINY_EXTRACTOR


def class_level(label: int) -> int:
    """Mean red level of the images of class ``label`` in :func:`write_class_folders` (classes are 50 levels apart)."""
    return 30 + 50 * label


def write_class_folders(root: Path, classes: int = 4, per_class: int = 25, size: int = 12) -> Path:
    """``root/class_k/NNN.png``: the red channel of class k sits near :func:`class_level` (k), so a recorded image
    tells its class; the other channels vary per image."""
    rng = np.random.default_rng(7)
    for label in range(classes):
        folder = root / f"class_{label}"
        folder.mkdir(parents=True, exist_ok=True)
        for index in range(per_class):
            image = rng.integers(0, 256, size=(size, size, 3), dtype=np.uint8)
            image[..., 0] = np.clip(class_level(label) + rng.integers(-5, 6, size=(size, size)), 0, 255)
            Image.fromarray(image).save(folder / f"{index:03d}.png")
    return root


def class_of(image: torch.Tensor) -> int:
    """The class of an image written by :func:`write_class_folders` (from its mean red level)."""
    return int(round((image[0].float().mean().item() - 30) / 50))
