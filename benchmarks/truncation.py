"""What truncation costs: one evaluator's fidelity and diversity figures for psi from 0.25 to 1.0.

Samples ``--num-samples`` images at each psi with ``model.sample(n, seed=..., truncation=psi)`` (the same seeds at
every psi, so the rows differ by psi alone) and scores them against ``--num-real`` held-out real images with the
evaluator named by ``--evaluator``. Fidelity columns should rise and diversity columns fall as psi drops. Results
go to stdout as a table and, with ``--json``, to a file.

    python benchmarks/truncation.py --model dcgan-shapes32 --real shapes --evaluator shapes
    python benchmarks/truncation.py --model dcgan-digits32 --real digits --evaluator digits --num-real 1000
    python benchmarks/truncation.py --model run/last.ckpt --real data/held_out --evaluator shapes --psi 0.5,1

Evaluators are registered in ``EVALUATORS``: a function ``(real uint8 images, fake model with sample(n, seed=...),
num_samples=, batch_size=, device=, seed=) -> result`` (``result.scalars()``, ``result.to_dict()`` or a dict) and
the columns to print, each marked fidelity or diversity. The digits evaluator is one more line there.
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys
from dataclasses import dataclass
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from _real_images import BUILTIN, real_images  # noqa: E402

DEFAULT_PSIS = "0.25,0.4,0.55,0.7,0.85,1.0"


@dataclass(frozen=True)
class Evaluator:
    function: str  # "module:function"
    fidelity: tuple[str, ...]  # columns where higher (or, for distances, lower) means more typical images
    diversity: tuple[str, ...]  # columns that measure spread over the data's modes


EVALUATORS = {
    "shapes": Evaluator(
        "lightning_gen.metrics.shapes:evaluate_shapes",
        fidelity=("validity", "fsd"),
        diversity=("shape_coverage", "shape_tv", "colour_coverage", "colour_tv", "size_tv", "x_tv", "y_tv"),
    ),
    # Conditional accuracy and validity rise with typicality; digits FD (fidelity and diversity in one number) and the
    # class distribution (TV, coverage) say what the typicality costs.
    "digits": Evaluator(
        "lightning_gen.metrics.digits:evaluate_digits",
        fidelity=("conditional_accuracy", "validity"),
        diversity=("digits_fd", "class_tv", "class_coverage"),
    ),
}


class TruncatedSampler:
    """A model seen through ``sample(n, seed)`` at a fixed truncation, which is what evaluators call."""

    def __init__(self, model, psi: float):
        self.model, self.psi = model, psi

    def sample(self, n: int, seed: int | None = None, **kwargs) -> torch.Tensor:
        return self.model.sample(n, seed=seed, truncation=self.psi, **kwargs)

    def __getattr__(self, name: str):  # num_classes, image_size, ...: what evaluators read of the model
        return getattr(self.model, name)


def _scalars(result) -> dict[str, float]:
    if callable(getattr(result, "scalars", None)):
        return dict(result.scalars())
    data = result.to_dict() if callable(getattr(result, "to_dict", None)) else dict(result)
    return {k: float(v) for k, v in data.items() if isinstance(v, (int, float))}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", required=True, help="zoo name, Hub id, save_pretrained folder or .ckpt")
    parser.add_argument("--real", default="shapes", help=f"held-out real images: {', '.join(sorted(BUILTIN))} or a folder")
    parser.add_argument("--evaluator", default="shapes", choices=sorted(EVALUATORS))
    parser.add_argument("--psi", default=DEFAULT_PSIS, help=f"comma-separated psi values (default {DEFAULT_PSIS})")
    parser.add_argument("--num-samples", type=int, default=5000, help="generated images per psi (default 5000)")
    parser.add_argument("--num-real", type=int, default=5000, help="real images (default 5000)")
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--seed", type=int, default=0, help="base seed of the samples (the same at every psi)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--json", default=None, help="also write the rows here")
    args = parser.parse_args(argv)
    psis = [float(p) for p in args.psi.split(",")]

    from lightning_gen.sampling import load_generative_module

    model = load_generative_module(args.model, map_location=args.device)
    real, _, _ = real_images(args.real, args.num_real, model.image_size, model.channels)
    spec = EVALUATORS[args.evaluator]
    module_name, function_name = spec.function.split(":")
    evaluate = getattr(importlib.import_module(module_name), function_name)
    rows = []
    for psi in psis:
        result = evaluate(
            real, TruncatedSampler(model, psi), num_samples=args.num_samples, batch_size=args.batch_size,
            device=args.device, seed=args.seed,
        )
        scalars = _scalars(result)
        rows.append({"psi": psi, **{k: scalars.get(k) for k in (*spec.fidelity, *spec.diversity)}})
        print(f"psi {psi}: done", file=sys.stderr)

    columns = ["psi", *spec.fidelity, *spec.diversity]
    print(f"# {args.model} on {args.real}: {args.evaluator} evaluator, {args.num_samples} samples per psi, {len(real)} real")
    print(f"# fidelity: {', '.join(spec.fidelity)}; diversity: {', '.join(spec.diversity)}")
    print("| " + " | ".join(columns) + " |")
    print("|" + "---|" * len(columns))
    for row in rows:
        print("| " + " | ".join("-" if row[c] is None else f"{row[c]:.4g}" for c in columns) + " |")
    if args.json:
        protocol = {k: v for k, v in vars(args).items() if k != "json"}
        Path(args.json).write_text(json.dumps({"protocol": protocol, "rows": rows}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
