"""Projection into a GAN against a VAE's encode-and-decode, on the same held-out real images.

For ``--num`` real images (``--real``: a built-in source or a labelled folder) it reports, per method:

* reconstruction MSE in [-1, 1] pixel units (mean and standard error over images);
* conditional accuracy: the share of reconstructions that the classifier named by ``--classifier`` assigns to the
  image's true class (and the same share for the real images themselves, the ceiling);
* for a class-conditional GAN projected without labels (every class tried), the share of images whose chosen
  label is the true one (assumes the model's label indices are the data's, as when trained on that data module);
* wall time.

    python benchmarks/projection.py --gan dcgan-shapes32 --vae vae-shapes32 --real shapes --num 200
    python benchmarks/projection.py --gan run/gan.ckpt --vae run/vae.ckpt --real data/held_out --classifier shapes

Classifiers are registered in ``CLASSIFIERS`` (a factory returning ``images in [-1, 1] -> predicted class names``);
the digits classifier is one more line there, and a perceptual network one more line in
``lightning_gen.projection.PERCEPTUAL_NETWORKS``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from _real_images import BUILTIN, real_images  # noqa: E402


def _shapes_classifier() -> Callable[[torch.Tensor], list[str]]:
    from lightning_gen._images import to_uint8
    from lightning_gen.metrics.shapes_classifier import FACTORS, shapes_feature_network

    network = shapes_feature_network()

    def predict(images: torch.Tensor) -> list[str]:
        _, logits = network.predict(to_uint8(images.cpu()))
        return [FACTORS["shape"][int(k)] for k in logits["shape"].argmax(dim=1)]

    return predict


CLASSIFIERS: dict[str, Callable[[], Callable[[torch.Tensor], list[str]]]] = {
    "shapes": _shapes_classifier,
    # "digits": <factory of the digits classifier's images -> class names>,
}


def _row(name, reconstructions, real, names, classify, seconds, label_accuracy=None) -> dict:
    errors = (reconstructions.float() - real.float()).pow(2).flatten(1).mean(dim=1)
    row = {
        "method": name,
        "mse": errors.mean().item(),
        "mse_sem": (errors.std() / len(errors) ** 0.5).item() if len(errors) > 1 else 0.0,
        "seconds": seconds,
        "label_accuracy": label_accuracy,
    }
    if classify is not None:
        predicted = classify(reconstructions)
        row["class_accuracy"] = sum(p == n for p, n in zip(predicted, names)) / len(names)
    return row


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--gan", required=True, help="GAN: zoo name, Hub id, save_pretrained folder or .ckpt")
    parser.add_argument("--vae", default=None, help="VAE to compare with (same sources)")
    parser.add_argument("--real", default="shapes", help=f"held-out real images: {', '.join(sorted(BUILTIN))} or a folder")
    parser.add_argument("--num", type=int, default=200, help="real images (default 200)")
    parser.add_argument("--classifier", default="shapes", help=f"class predictor: {', '.join(sorted(CLASSIFIERS))} or none")
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--lr", type=float, default=0.05)
    parser.add_argument("--restarts", type=int, default=1)
    parser.add_argument("--perceptual", default=None, help="perceptual feature network name (default: pixels only)")
    parser.add_argument("--perceptual-weight", type=float, default=0.1)
    parser.add_argument("--with-labels", action="store_true", help="give conditional GANs the true labels")
    parser.add_argument("--batch-size", type=int, default=50)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--json", default=None, help="also write the rows here")
    args = parser.parse_args(argv)

    from lightning_gen.projection import project
    from lightning_gen.sampling import load_generative_module

    gan = load_generative_module(args.gan, map_location=args.device)
    images, labels, class_names = real_images(args.real, args.num, gan.image_size, gan.channels, seed=args.seed)
    real = images.float() / 127.5 - 1
    names = [class_names[int(label)] if 0 <= int(label) < len(class_names) else "?" for label in labels]
    classify = None if args.classifier == "none" else CLASSIFIERS[args.classifier]()
    rows = []
    if classify is not None:
        rows.append(_row("real images (ceiling)", real, real, names, classify, 0.0))

    start = time.perf_counter()
    given = labels if (gan.num_classes and args.with_labels) else None
    result = project(
        gan, real, given, steps=args.steps, lr=args.lr, restarts=args.restarts, perceptual=args.perceptual,
        perceptual_weight=args.perceptual_weight, batch_size=args.batch_size, seed=args.seed,
    )
    seconds = time.perf_counter() - start
    label_accuracy = None
    if gan.num_classes and given is None:
        label_accuracy = (result.labels == labels).float().mean().item()
    rows.append(_row(f"GAN projection ({args.steps} steps)", result.reconstructions, real, names, classify, seconds, label_accuracy))

    if args.vae:
        vae = load_generative_module(args.vae, map_location=args.device)
        if (vae.image_size, vae.channels) != (gan.image_size, gan.channels):
            raise SystemExit(f"--vae makes {vae.channels}x{vae.image_size}px images, the GAN {gan.channels}x{gan.image_size}px.")
        start = time.perf_counter()
        reconstructions = torch.cat([vae.reconstruct(chunk).cpu() for chunk in real.split(args.batch_size)])
        rows.append(_row("VAE encode-decode", reconstructions, real, names, classify, time.perf_counter() - start))

    print(f"# {args.num} real images from {args.real}; GAN {args.gan}; VAE {args.vae}; classifier {args.classifier}")
    print("| method | reconstruction MSE | class accuracy | chosen-label accuracy | seconds |")
    print("|---|---|---|---|---|")
    for row in rows:
        accuracy = "-" if row.get("class_accuracy") is None else f"{row['class_accuracy']:.3f}"
        chosen = "-" if row["label_accuracy"] is None else f"{row['label_accuracy']:.3f}"
        print(f"| {row['method']} | {row['mse']:.4f} ± {row['mse_sem']:.4f} | {accuracy} | {chosen} | {row['seconds']:.1f} |")
    if args.json:
        protocol = {k: v for k, v in vars(args).items() if k != "json"}
        Path(args.json).write_text(json.dumps({"protocol": protocol, "rows": rows}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
