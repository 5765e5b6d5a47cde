"""Projecting real images into a generator's latent space: find ``z`` (and a label) so that ``G(z)`` looks like an image.

What this module is for: :func:`project` (``lightning_gen.project``) and ``lightning-gen project``
(:mod:`lightning_gen.cli.project`). The latent is optimised with Adam on a pixel loss plus, optionally, a
perceptual loss on the features of a network the library ships (``perceptual="shapes"``: the shapes
classifier's penultimate layer) or any differentiable feature network you pass. Conditional models use the given
labels, a classifier's predictions, or try every class and keep the best. Several random restarts per image are
optional; all candidates of a batch are optimised together (their losses are summed, so each one's gradient is
its own). What it is not: an encoder (see ``VAE.encode``), nor a GAN-inversion method that tunes the generator.

The perceptual term is relative (``|f(G(z)) - f(x)|^2 / |f(x)|^2``), so its weight does not depend on the
feature network's scale. The optimisation follows the StyleGAN2 projector's schedule in spirit (Karras et al. 2020, appendix D): Adam on
the latent, the learning rate ramped up over the first 5% of steps and down with a cosine over the last 25%.
A small penalty keeps ``|z|^2 / d`` near 1, the shell where the generator's Gaussian latents lie.

Example:
    >>> import torch
    >>> from lightning_gen import GANModule
    >>> model = GANModule(image_size=16, channels=1, latent_dim=8, width=8)
    >>> targets = model.sample(2, seed=1)
    >>> result = project(model, targets, steps=30, seed=0, progress=False)
    >>> result.latents.shape, result.reconstructions.shape
    (torch.Size([2, 8]), torch.Size([2, 1, 16, 16]))
    >>> bool((result.losses <= result.initial_losses).all())
    True
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lightning_gen._images import to_float


def _shapes_features() -> nn.Module:
    from lightning_gen.metrics.shapes_classifier import SHAPES_INPUT_SIZE, load_shapes_classifier

    return ClassifierFeatures(load_shapes_classifier(), input_size=SHAPES_INPUT_SIZE)


#: Perceptual feature networks by name: a factory returning a module that maps float images in [-1, 1] to
#: features (B, F), differentiably. Add a classifier the library ships with one line.
PERCEPTUAL_NETWORKS: dict[str, Callable[[], nn.Module]] = {
    "shapes": _shapes_features,
}


class ClassifierFeatures(nn.Module):
    """A classifier as a differentiable feature network on float images in [-1, 1].

    Grayscale images are repeated to ``channels``, images are resized (bilinear, antialiased) to ``input_size``,
    and the classifier's output is used as features (the first element when it returns a tuple, as
    ``ShapesClassifier`` returns ``(features, logits)``). The classifier is frozen and kept in eval mode.

    Args:
        classifier: takes float images (B, channels, input_size, input_size) in [-1, 1].
        input_size: side of the classifier's input.
        channels: channels the classifier expects.

    Example:
        >>> net = ClassifierFeatures(nn.Sequential(nn.Flatten(), nn.Linear(3 * 8 * 8, 4)), input_size=8)
        >>> net(torch.zeros(2, 1, 16, 16)).shape
        torch.Size([2, 4])
    """

    def __init__(self, classifier: nn.Module, input_size: int, channels: int = 3):
        super().__init__()
        self.classifier = classifier.eval().requires_grad_(False)
        self.input_size, self.channels = int(input_size), int(channels)

    def train(self, mode: bool = True) -> ClassifierFeatures:
        super().train(mode)
        self.classifier.eval()  # batch-norm statistics must not follow the images being projected
        return self

    def forward(self, images: Tensor) -> Tensor:
        if images.shape[1] == 1 and self.channels != 1:
            images = images.expand(-1, self.channels, -1, -1)
        if images.shape[-2:] != (self.input_size, self.input_size):
            images = F.interpolate(images, size=(self.input_size, self.input_size), mode="bilinear", antialias=True, align_corners=False)
        output = self.classifier(images)
        return (output[0] if isinstance(output, (tuple, list)) else output).flatten(1)


@dataclass
class ProjectionResult:
    """What :func:`project` found for each image (all on the CPU)."""

    latents: Tensor  # (N, latent_dim): the best latent found for each image
    labels: Tensor | None  # (N,): the label used (given, predicted or the best class); None when unconditional
    reconstructions: Tensor  # (N, C, H, W) in [-1, 1]: the generator's image of each latent
    losses: Tensor  # (N,): the objective at the returned latent (pixel + perceptual + latent terms)
    pixel_mse: Tensor  # (N,): mean squared pixel error of the reconstruction, in [-1, 1] units
    initial_losses: Tensor  # (N,): the objective at the initial latent of the returned candidate


def project(
    model: Any,
    images: Tensor,
    labels: Tensor | None = None,
    *,
    steps: int = 300,
    lr: float = 0.05,
    pixel_weight: float = 1.0,
    perceptual: str | nn.Module | Callable[[Tensor], Tensor] | None = None,
    perceptual_weight: float = 0.1,
    latent_weight: float = 1e-3,
    restarts: int = 1,
    classifier: Callable[[Tensor], Tensor] | None = None,
    batch_size: int = 16,
    seed: int = 0,
    progress: bool = True,
) -> ProjectionResult:
    """Optimise a latent per image so that the model's generator reproduces the image.

    Args:
        model: a ``GANModule`` (its sampling generator, the EMA copy when there is one), a ``VAE`` (its
            decoder), or a plain generator ``nn.Module`` with ``latent_dim`` (and ``num_classes``) attributes.
        images: (N, C, H, W), float in [-1, 1] or uint8, at the model's image size and channels.
        labels: conditional models: the label of each image (N,). Without them, ``classifier`` predicts them,
            or, without a classifier, every class is tried and the best fit kept (``num_classes`` times the work).
        steps: Adam steps per batch.
        lr: peak learning rate.
        pixel_weight: weight of the mean squared pixel error.
        perceptual: feature network for the perceptual term: a name of :data:`PERCEPTUAL_NETWORKS` (``"shapes"``),
            a module / callable mapping float images in [-1, 1] to features (B, F), or None (pixels only).
        perceptual_weight: weight of the squared feature error relative to the target's, ``|f(G(z)) - f(x)|^2 / |f(x)|^2``.
        latent_weight: weight of ``(|z|^2 / d - 1)^2``, which keeps latents where the generator was trained.
        restarts: random initial latents per image (and per class tried); the best result is kept.
        classifier: maps float images in [-1, 1] to class logits (N, num_classes), used when ``labels`` is None.
        batch_size: images optimised together (candidates per batch: images x classes tried x restarts).
        seed: seeds the initial latents (drawn on the CPU: the same on every device). Runs on the model's device.
        progress: show a tqdm progress bar.

    Returns:
        A :class:`ProjectionResult`.
    """
    from tqdm.auto import tqdm

    for name, value in (("steps", steps), ("restarts", restarts), ("batch_size", batch_size)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be an integer >= 1, got {value!r}.")
    if not lr > 0:
        raise ValueError(f"lr must be > 0, got {lr!r}.")
    generate, latent_dim, num_classes, network = _generator_of(model)
    device = next(network.parameters()).device
    images = to_float(torch.as_tensor(images)).float()
    _check_images(images, model)
    features = _feature_network(perceptual)
    if features is not None and isinstance(features, nn.Module):
        features = features.to(device)
    labels = _labels_for(images, labels, num_classes, classifier)
    classes = torch.arange(num_classes) if num_classes and labels is None else None  # try every class
    options = 1 if classes is None else num_classes
    # All initial latents drawn at once, so an image's start does not depend on the batch it falls into; restart
    # r's draws come after restart r - 1's, so more restarts only add candidates to the ones fewer would try.
    initial = torch.randn(restarts, images.shape[0], options, latent_dim, generator=torch.Generator().manual_seed(seed))
    initial = initial.permute(1, 2, 0, 3)  # (images, classes tried, restarts, latent_dim)

    was_training = network.training
    network.eval()
    results: list[dict[str, Tensor]] = []
    try:
        with tqdm(total=math.ceil(images.shape[0] / batch_size) * steps, desc="projecting", unit="step", disable=not progress) as bar:
            for start in range(0, images.shape[0], batch_size):
                target = images[start : start + batch_size].to(device)
                b = target.shape[0]
                if classes is not None:
                    chunk_labels = classes.repeat_interleave(restarts).repeat(b)  # image-major, then class, restart
                elif labels is not None:
                    chunk_labels = labels[start : start + b].repeat_interleave(options * restarts)
                else:
                    chunk_labels = None
                chunk_labels = None if chunk_labels is None else chunk_labels.to(device)
                z0 = initial[start : start + b].reshape(-1, latent_dim).to(device)
                targets = target.repeat_interleave(options * restarts, dim=0)
                found = _optimise(
                    generate, z0, chunk_labels, targets, features, steps, lr,
                    (pixel_weight, perceptual_weight, latent_weight), bar,
                )
                results.append(_best_per_image(found, b, options * restarts))
    finally:
        network.train(was_training)
    merged = {key: torch.cat([r[key] for r in results]) for key in results[0]}
    return ProjectionResult(
        latents=merged["latents"],
        labels=merged["labels"] if num_classes else None,
        reconstructions=merged["reconstructions"],
        losses=merged["losses"],
        pixel_mse=merged["pixel_mse"],
        initial_losses=merged["initial_losses"],
    )


def _optimise(
    generate: Callable[[Tensor, Tensor | None], Tensor],
    z0: Tensor,
    labels: Tensor | None,
    targets: Tensor,
    features: Callable[[Tensor], Tensor] | None,
    steps: int,
    lr: float,
    weights: tuple[float, float, float],
    bar: Any,
) -> dict[str, Tensor]:
    pixel_weight, perceptual_weight, latent_weight = weights
    with torch.no_grad():
        target_features = features(targets).float() if features is not None and perceptual_weight else None
        target_energy = target_features.pow(2).sum(dim=1).clamp_min(1e-8) if target_features is not None else None

    def objective(z: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Per-candidate loss, pixel MSE and images."""
        images = generate(z, labels).float()
        pixel = (images - targets).pow(2).flatten(1).mean(dim=1)
        loss = pixel_weight * pixel + latent_weight * (z.pow(2).mean(dim=1) - 1).pow(2)
        if target_features is not None:
            # Relative to the target's feature energy, so one weight suits feature networks of any scale.
            error = (features(images) - target_features).pow(2).sum(dim=1) / target_energy
            loss = loss + perceptual_weight * error
        return loss, pixel, images

    z = z0.clone().requires_grad_(True)
    optimizer = torch.optim.Adam([z], lr=lr, betas=(0.9, 0.999))
    best_loss = torch.full((z0.shape[0],), math.inf, device=z0.device)
    best_z, initial_loss = z0.clone(), None
    for step in range(steps + 1):  # the last pass only evaluates the final latent
        for group in optimizer.param_groups:
            group["lr"] = lr * _lr_factor(step, steps)
        loss, _, _ = objective(z)
        with torch.no_grad():
            if initial_loss is None:
                initial_loss = loss.detach().clone()
            better = loss < best_loss
            best_loss = torch.where(better, loss.detach(), best_loss)
            best_z[better] = z.detach()[better]
        if step == steps:
            break
        # Gradients for the latent only: the generator's parameters keep whatever .grad they had.
        (z.grad,) = torch.autograd.grad(loss.sum(), [z])
        optimizer.step()
        bar.update(1)
    with torch.no_grad():
        loss, pixel, images = objective(best_z)
    return {
        "latents": best_z.cpu(), "labels": labels.cpu() if labels is not None else torch.zeros(len(best_z), dtype=torch.long),
        "reconstructions": images.clamp(-1, 1).cpu(), "losses": loss.cpu(), "pixel_mse": pixel.cpu(),
        "initial_losses": initial_loss.cpu(),
    }


def _lr_factor(step: int, steps: int, rampup: float = 0.05, rampdown: float = 0.25) -> float:
    """Learning-rate multiplier of update ``step`` of ``steps``: linear warm-up, flat, cosine ramp-down.

    Example:
        >>> [round(_lr_factor(i, 20), 2) for i in (0, 1, 10, 19)]
        [1.0, 1.0, 1.0, 0.1]
    """
    up = min(1.0, (step + 1) / max(1.0, rampup * steps))
    down = min(1.0, (steps - step) / max(1.0, rampdown * steps))
    return up * (0.5 - 0.5 * math.cos(down * math.pi))


def _best_per_image(found: dict[str, Tensor], images: int, candidates: int) -> dict[str, Tensor]:
    best = found["losses"].reshape(images, candidates).argmin(dim=1)
    index = torch.arange(images) * candidates + best
    return {key: value[index] for key, value in found.items()}


def _generator_of(model: Any) -> tuple[Callable[[Tensor, Tensor | None], Tensor], int, int, nn.Module]:
    """``(generate(z, labels), latent_dim, num_classes, module to put in eval mode)`` for a model."""
    if callable(getattr(model, "decode", None)) and hasattr(model, "encoder"):  # a VAE: its decoder
        return (lambda z, labels: model.decode(z)), int(model.latent_dim), 0, model
    latent_dim = getattr(model, "latent_dim", None)
    if not isinstance(model, nn.Module) or latent_dim is None:
        raise TypeError(
            f"project() takes a GANModule, a VAE or a generator nn.Module with a latent_dim attribute, got "
            f"{type(model).__name__}."
        )
    num_classes = int(getattr(model, "num_classes", 0) or 0)
    # GANModule.forward runs its sampling generator (the EMA copy when there is one) in the module's mode.
    if num_classes:
        return (lambda z, labels: model(z, labels)), int(latent_dim), num_classes, model
    return (lambda z, labels: model(z)), int(latent_dim), 0, model


def _check_images(images: Tensor, model: Any) -> None:
    size, channels = getattr(model, "image_size", None), getattr(model, "channels", None)
    expected = (channels, size, size)
    if images.ndim != 4 or (size is not None and channels is not None and tuple(images.shape[1:]) != expected):
        raise ValueError(
            f"images must have shape (N, {channels}, {size}, {size}) to match the model, got {tuple(images.shape)}. "
            "Resize and convert them first (lightning_gen.data.decode_image does both for files)."
        )


def _feature_network(perceptual: Any) -> Callable[[Tensor], Tensor] | None:
    if perceptual is None or callable(perceptual):
        return perceptual
    if isinstance(perceptual, str) and perceptual in PERCEPTUAL_NETWORKS:
        return PERCEPTUAL_NETWORKS[perceptual]()
    raise ValueError(
        f"perceptual must be None, one of {sorted(PERCEPTUAL_NETWORKS)}, or a module mapping images in [-1, 1] to "
        f"features; got {perceptual!r}."
    )


def _labels_for(images: Tensor, labels: Any, num_classes: int, classifier: Any) -> Tensor | None:
    if not num_classes:
        if labels is not None:
            raise ValueError("The model is unconditional (num_classes=0); labels must be None.")
        return None
    if labels is not None:
        labels = torch.as_tensor(labels).long().reshape(-1)
        if labels.shape != (images.shape[0],) or int(labels.min()) < 0 or int(labels.max()) >= num_classes:
            raise ValueError(f"labels must be {images.shape[0]} integers in [0, {num_classes}), got {labels.tolist()}.")
        return labels
    if classifier is not None:
        with torch.no_grad():
            logits = classifier(images)
        if logits.ndim != 2 or logits.shape[1] != num_classes:
            raise ValueError(f"classifier must return logits (N, {num_classes}), got shape {tuple(logits.shape)}.")
        return logits.argmax(dim=1).cpu()
    return None
