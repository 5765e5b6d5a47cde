"""The fixed classifier protocol behind the synthetic-data metrics (CAS, augmentation gain).

A number like "CAS 0.94" means something only together with the classifier that produced it: its architecture,
how long and how it was trained, on which input size, with which seeds. :class:`ClassifierProtocol` holds those
facts (frozen, recorded in every result, like FID's :class:`~lightning_gen.metrics.protocol.Protocol`), and
:func:`train_classifier` / :func:`classifier_accuracy` run it. The default network, :class:`SmallCNN`, is a plain
``nn.Module`` of 21k parameters that scores 0.974-0.980 (three seeds) on 1,000 held-out real MNIST digits after
600 steps on the other 4,000, at about 27 s of CPU time per seed on one busy core.

Training length is a fixed number of optimizer **steps**, not epochs: a classifier trained on 500 real digits and
one trained on those 500 plus 5,000 synthetic ones then get the same number of updates, so an augmentation gain
measures the data, not a longer schedule. (StudioGAN's CAS trains a ResNet for 90 epochs of SGD and reports the best
top-1 over epochs, read on the evaluation images; here the last step's classifier is scored, so nothing is selected
on the test set.)

Determinism: initialisation runs under a forked, seeded global RNG (restored afterwards), shuffling uses its own
seeded ``torch.Generator``; the same seed gives the same classifier bit for bit on the same machine and device. On
the CPU training runs on ``cpu_threads`` threads (default 1, the caller's setting restored afterwards): the numbers
then do not depend on the machine's core count, and a network this small loses little (on a busy machine two
threads were 20x slower than one, waiting on each other). Nothing here reads images from disk or generates them
(``synthetic_sources.py``).
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable
from dataclasses import asdict, dataclass, fields, replace
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = [
    "ClassifierFactory",
    "ClassifierProtocol",
    "SmallCNN",
    "classifier_accuracy",
    "conform_images",
    "resolve_device",
    "train_classifier",
]

#: ``factory(num_classes, channels, image_size) -> nn.Module`` mapping float images in [-1, 1] to logits.
ClassifierFactory = Callable[[int, int, int], nn.Module]

DEFAULT_ARCHITECTURE = "small-cnn-12"  # SmallCNN(width=12); a new default gets a new name
_OPTIMIZERS = ("adam", "sgd")


@dataclass(frozen=True)
class ClassifierProtocol:
    """How the classifier of CAS and augmentation gain is built, trained and fed; recorded in every result.

    Defaults fit 28-32 px digit-like data on a CPU. Change a field with :func:`dataclasses.replace` (or the metric
    functions' keyword arguments); ``None`` fields are resolved from the data and recorded resolved.

    Example:
        >>> protocol = ClassifierProtocol(steps=200)
        >>> ClassifierProtocol.from_dict(protocol.to_dict()) == protocol
        True
    """

    architecture: str = DEFAULT_ARCHITECTURE  # "small-cnn-12" (SmallCNN), or the name of a classifier_factory's network
    steps: int = 600  # optimizer updates per training, whatever the training set's size (see module docstring)
    batch_size: int = 64  # training images per update, drawn without replacement, reshuffled every pass
    optimizer: str = "adam"  # "adam" (betas 0.9, 0.999) or "sgd" (Nesterov, momentum 0.9)
    lr: float = 3e-3  # peak learning rate
    lr_schedule: str = "cosine"  # cosine decay from lr to 0 over `steps` (the only schedule)
    weight_decay: float = 0.0  # L2 penalty of the optimizer
    seeds: tuple[int, ...] = (0, 1, 2)  # one training per seed (init and shuffling); spreads are over these
    num_samples: int | None = None  # N of CAS: generated training images; None: as many as the real training set
    per_class: int | None = None  # M of augmentation gain: synthetic images added per class
    real_per_class: int | None = None  # real training images per class (small-data regime); None: all of them
    image_size: int | None = None  # classifier input side in px; None: that of the real test images
    channels: int | None = None  # 1 or 3 input channels; None: those of the real test images
    sample_seed: int = 0  # seed of generated images (a model's sample(n, seed, labels))
    subset_seed: int = 0  # seed of every stratified subset drawn from a labelled set
    device: str = "auto"  # where classifiers train; "auto": cuda when available, else cpu (recorded resolved)
    cpu_threads: int | None = 1  # torch threads while a classifier trains on the CPU; None: the caller's setting
    eval_batch_size: int = 512  # test images per forward pass (does not change the result)

    #: Fixed parts of the protocol, recorded next to the fields above.
    normalisation: ClassVar[str] = "uint8 / 127.5 - 1 (float in [-1, 1])"
    resize: ClassVar[str] = (
        "none when sizes match; else bilinear, antialiased, rounded to uint8 (folders: the data modules' decoder, "
        "shorter side + centre crop); grayscale replicated to RGB, RGB to luma (ITU-R 601-2) for 1 channel"
    )

    def __post_init__(self) -> None:
        for name in ("steps", "batch_size", "eval_batch_size"):
            _check_int(name, getattr(self, name), 1)
        for name in ("num_samples", "per_class", "real_per_class", "image_size", "cpu_threads"):
            if getattr(self, name) is not None:
                _check_int(name, getattr(self, name), 0 if name == "per_class" else 1)
        if self.channels not in (None, 1, 3):
            raise ValueError(f"channels must be 1, 3 or None (those of the real test images), got {self.channels!r}.")
        if self.optimizer not in _OPTIMIZERS:
            raise ValueError(f"optimizer must be one of {_OPTIMIZERS}, got {self.optimizer!r}.")
        if self.lr_schedule != "cosine":
            raise ValueError(f"lr_schedule must be 'cosine' (the only schedule), got {self.lr_schedule!r}.")
        if not self.lr > 0 or self.weight_decay < 0:
            raise ValueError(f"lr must be > 0 and weight_decay >= 0, got lr={self.lr!r}, weight_decay={self.weight_decay!r}.")
        seeds = tuple(self.seeds)
        if not seeds or len(set(seeds)) != len(seeds) or not all(isinstance(s, int) for s in seeds):
            raise ValueError(f"seeds must be distinct integers, at least one, got {self.seeds!r}.")
        object.__setattr__(self, "seeds", seeds)  # lists from JSON or users become tuples: hashable, comparable

    def to_dict(self) -> dict[str, Any]:
        """Plain-JSON dictionary, with the fixed normalisation and resize descriptions."""
        record = asdict(self)
        record["seeds"] = list(self.seeds)
        return {**record, "normalisation": self.normalisation, "resize": self.resize}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ClassifierProtocol:
        """Inverse of :meth:`to_dict`; unknown keys (a newer writer's) are ignored."""
        known = {f.name for f in fields(cls)}
        return cls(**{key: value for key, value in data.items() if key in known})

    def resolved(self, *, image_size: int, channels: int, device: torch.device, architecture: str) -> ClassifierProtocol:
        """This protocol with every data-dependent field filled in, as results record it."""
        return replace(
            self, image_size=self.image_size or image_size, channels=self.channels or channels,
            device=str(device), architecture=architecture,
        )


def _check_int(name: str, value: Any, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}.")


class SmallCNN(nn.Module):
    """The default classifier: three 3x3 conv / batch-norm / ReLU / 2x2 max-pool blocks, then one linear layer.

    Widths ``width, 2 width, 4 width`` (12, 24, 48: 20,926 parameters at 32 px, 10 classes, 1 channel). Width 16
    scored 0.978 instead of 0.976 (mean of three seeds, 4,000 MNIST digits, 1,000 held out), within the seeds'
    spread, for 1.5x the time; width 8 scored 0.973.

    Args:
        num_classes: Output logits.
        channels: Input channels.
        image_size: Input side in px (at least 8: three poolings).
        width: Channels of the first block.

    Example:
        >>> net = SmallCNN(num_classes=10, channels=1, image_size=32)
        >>> net(torch.zeros(2, 1, 32, 32)).shape, sum(p.numel() for p in net.parameters())
        (torch.Size([2, 10]), 20926)
    """

    def __init__(self, num_classes: int, channels: int, image_size: int, width: int = 12) -> None:
        super().__init__()
        if image_size < 8:
            raise ValueError(f"SmallCNN needs images of at least 8 px (three 2x poolings), got image_size={image_size}.")
        layers: list[nn.Module] = []
        in_channels = channels
        for out_channels in (width, 2 * width, 4 * width):
            layers += [
                nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=False),
                nn.BatchNorm2d(out_channels),
                nn.ReLU(inplace=True),
                nn.MaxPool2d(2),
            ]
            in_channels = out_channels
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Linear(in_channels * (image_size // 8) ** 2, num_classes)

    def forward(self, images: Tensor) -> Tensor:
        """Logits (N, num_classes) of float images (N, C, H, W) in [-1, 1]."""
        return self.classifier(self.features(images).flatten(1))


def resolve_device(device: str | torch.device) -> torch.device:
    """``"auto"`` -> ``cuda`` when available, else ``cpu``; anything else as ``torch.device``.

    Example:
        >>> resolve_device("cpu")
        device(type='cpu')
    """
    if str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def conform_images(images: Tensor, image_size: int, channels: int) -> Tensor:
    """uint8 images (N, C, H, W) brought to ``channels`` and ``image_size`` as the protocol describes; uint8 out.

    Images already of that shape are returned as they are (no resampling, no copy).

    Example:
        >>> images = torch.full((2, 3, 16, 16), 200, dtype=torch.uint8)
        >>> conform_images(images, 8, 1).shape
        torch.Size([2, 1, 8, 8])
    """
    if images.dtype != torch.uint8 or images.dim() != 4:
        raise TypeError(f"Expected uint8 images (N, C, H, W), got a {images.dtype} tensor of shape {tuple(images.shape)}.")
    have = images.shape[1]
    if have != channels:
        if have == 1 and channels == 3:
            images = images.expand(-1, 3, -1, -1).contiguous()
        elif have == 3 and channels == 1:
            weights = torch.tensor([0.299, 0.587, 0.114], device=images.device).view(1, 3, 1, 1)
            images = (images.float() * weights).sum(1, keepdim=True).round().clamp(0, 255).to(torch.uint8)
        else:
            raise ValueError(f"Images have {have} channels; expected 1 or 3 to convert to {channels}.")
    if tuple(images.shape[-2:]) != (image_size, image_size):
        resized = F.interpolate(images.float(), size=(image_size, image_size), mode="bilinear", antialias=True, align_corners=False)
        images = resized.round().clamp(0, 255).to(torch.uint8)
    return images


def build_classifier(
    num_classes: int, channels: int, image_size: int, factory: ClassifierFactory | None = None
) -> nn.Module:
    """The protocol's network: ``factory(num_classes, channels, image_size)`` or :class:`SmallCNN`."""
    network = SmallCNN(num_classes, channels, image_size) if factory is None else factory(num_classes, channels, image_size)
    if not isinstance(network, nn.Module):
        raise TypeError(
            f"classifier_factory must return a torch.nn.Module mapping float images (N, {channels}, {image_size}, "
            f"{image_size}) in [-1, 1] to (N, {num_classes}) logits, got {type(network).__name__}."
        )
    return network


def architecture_name(protocol: ClassifierProtocol, factory: ClassifierFactory | None) -> str:
    """The architecture recorded in results: the protocol's name, or the factory's network class."""
    if factory is None:
        if protocol.architecture != DEFAULT_ARCHITECTURE:
            raise ValueError(
                f"architecture={protocol.architecture!r} names a network, but no classifier_factory builds it; pass "
                f"classifier_factory=..., or keep architecture={DEFAULT_ARCHITECTURE!r} for SmallCNN."
            )
        return protocol.architecture
    if protocol.architecture != DEFAULT_ARCHITECTURE:  # the user named their factory's network
        return protocol.architecture
    return f"custom:{getattr(factory, '__qualname__', type(factory).__qualname__)}"


@contextlib.contextmanager
def _cpu_threads(threads: int | None, device: torch.device):
    if threads is None or device.type != "cpu" or threads == torch.get_num_threads():
        yield
        return
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


@contextlib.contextmanager
def _seeded_global_rng(seed: int, device: torch.device):
    # Layer initialisation (and any dropout in a user's network) draws from the global RNG. Forking it makes that
    # a function of `seed` alone and leaves the caller's RNG state exactly as it was.
    cuda = [device.index if device.index is not None else torch.cuda.current_device()] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=cuda):
        torch.default_generator.manual_seed(seed)
        if cuda:
            with torch.cuda.device(cuda[0]):
                torch.cuda.manual_seed(seed)
        yield


def _to_input(images: Tensor) -> Tensor:
    return images.float() / 127.5 - 1.0


def train_classifier(
    images: Tensor,
    labels: Tensor,
    *,
    num_classes: int,
    protocol: ClassifierProtocol,
    seed: int,
    classifier_factory: ClassifierFactory | None = None,
) -> nn.Module:
    """Train the protocol's classifier on uint8 images already conformed to its input, for ``protocol.steps`` steps.

    Args:
        images: uint8 (N, C, H, W), C and H as the protocol's resolved ``channels`` and ``image_size``.
        labels: int64 (N,) in ``[0, num_classes)``.
        num_classes: Classifier outputs.
        protocol: A resolved protocol (``image_size``, ``channels`` set; see :meth:`ClassifierProtocol.resolved`).
        seed: Seed of initialisation and shuffling.
        classifier_factory: ``factory(num_classes, channels, image_size) -> nn.Module``; default :class:`SmallCNN`.

    Returns:
        The trained network, in eval mode, on the protocol's device.
    """
    if images.shape[0] == 0 or images.shape[0] != labels.shape[0]:
        raise ValueError(f"Need as many labels as images, and at least one; got {images.shape[0]} images, {labels.shape[0]} labels.")
    device = resolve_device(protocol.device)
    channels, size = images.shape[1], images.shape[-1]
    with _seeded_global_rng(seed, device), _cpu_threads(protocol.cpu_threads, device):
        network = build_classifier(num_classes, channels, size, classifier_factory).to(device)
        parameters = [p for p in network.parameters() if p.requires_grad]
        if protocol.optimizer == "adam":
            optimizer = torch.optim.Adam(parameters, lr=protocol.lr, weight_decay=protocol.weight_decay)
        else:
            optimizer = torch.optim.SGD(parameters, lr=protocol.lr, momentum=0.9, nesterov=True, weight_decay=protocol.weight_decay)
        # Shuffling has its own generator (CPU), independent of what the network's construction drew.
        order = torch.Generator().manual_seed(seed + 0x5EED)
        images, labels = images.to(device), labels.to(device)
        count, batch = images.shape[0], min(protocol.batch_size, images.shape[0])
        network.train()
        permutation, position = torch.randperm(count, generator=order), 0
        for step in range(protocol.steps):
            if position + batch > count:  # a new pass; the incomplete tail of the last one is dropped
                permutation, position = torch.randperm(count, generator=order), 0
            index = permutation[position : position + batch].to(device)
            position += batch
            for group in optimizer.param_groups:  # cosine decay as a plain function of the step: no scheduler state
                group["lr"] = protocol.lr * 0.5 * (1.0 + math.cos(math.pi * step / protocol.steps))
            loss = F.cross_entropy(network(_to_input(images[index])), labels[index])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()  # the loss is never read on the host: no device sync per step
            optimizer.step()
    return network.eval()


@torch.no_grad()
def classifier_accuracy(
    network: nn.Module, images: Tensor, labels: Tensor, *, batch_size: int = 512, cpu_threads: int | None = 1
) -> float:
    """Top-1 accuracy of ``network`` on uint8 images (conformed to its input) with int labels.

    Example:
        >>> net = SmallCNN(num_classes=2, channels=1, image_size=8)
        >>> 0.0 <= classifier_accuracy(net.eval(), torch.zeros(4, 1, 8, 8, dtype=torch.uint8), torch.tensor([0, 1, 0, 1])) <= 1.0
        True
    """
    if images.shape[0] == 0:
        raise ValueError("Cannot score a classifier on an empty test set.")
    device = next(network.parameters()).device
    correct = torch.zeros((), dtype=torch.long, device=device)
    with _cpu_threads(cpu_threads, device):
        for start in range(0, images.shape[0], batch_size):
            chunk = images[start : start + batch_size].to(device)
            predicted = network(_to_input(chunk)).argmax(dim=1)
            correct += (predicted == labels[start : start + batch_size].to(device)).sum()
    return correct.item() / images.shape[0]
