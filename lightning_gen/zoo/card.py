"""Model cards (README.md) for lightning-gen Hub folders.

What this module is for: writing the README.md of a model folder: YAML front matter the Hub indexes
(``library_name: lightning-gen``, tags, datasets, license and a ``model-index`` with the FID / IS /
KID results and how they were measured) and a body with a usage snippet, the model's settings, the
sample grid, the evaluation table and the training recipe. The front matter is built with
``huggingface_hub``'s ``ModelCardData`` and ``EvalResult`` so it follows the Hub's schema.

What it is not: an evaluator. Metrics are passed in as :class:`MetricResult`; a metric that was not
measured says so with its reason and never gets a number (``model-index`` lists measured ones only,
because the Hub's schema requires a value).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# Metric ids used in model-index, with the names shown in the card.
METRIC_NAMES = {"fid": "FID", "is": "Inception Score", "kid": "KID"}
TASK_TYPE = "unconditional-image-generation"


@dataclass(frozen=True)
class MetricResult:
    """One evaluation result for the card.

    Example:
        >>> MetricResult("fid", 41.2, protocol={"num_samples": 10000, "reference": "train split"}).measured
        True
        >>> MetricResult("is", reason="no Inception weights offline").measured
        False
    """

    name: str  # "fid", "is" or "kid"
    value: float | None = None  # the measured value; None when the metric was not measured
    std: float | None = None  # spread across splits / subsets (IS, KID) when the evaluator reports it
    protocol: Mapping[str, Any] = field(default_factory=dict)  # how: sample count, reference set, extractor...
    reason: str | None = None  # why it was not measured (shown instead of a value)

    def __post_init__(self) -> None:
        if self.name not in METRIC_NAMES:
            raise ValueError(f"MetricResult name must be one of {sorted(METRIC_NAMES)}, got {self.name!r}.")
        if self.value is None and not self.reason:
            raise ValueError(f"MetricResult {self.name} has no value: say why it was not measured (reason=...).")
        for label, number in (("value", self.value), ("std", self.std)):
            if number is not None and not (isinstance(number, (int, float)) and math.isfinite(number)):
                raise ValueError(f"MetricResult {self.name} {label} must be a finite number or None, got {number!r}.")

    @property
    def measured(self) -> bool:
        return self.value is not None


@dataclass(frozen=True)
class CardInfo:
    """What the card says beyond config.json. Every field is optional.

    Example:
        >>> info = CardInfo(dataset="shapes32", license="apache-2.0", metrics=(MetricResult("fid", 30.5),))
        >>> info.metric("fid").value, info.metric("kid").measured
        (30.5, False)
    """

    model_name: str | None = None  # card title; default "<class> on <dataset>"
    description: str | None = None  # a paragraph under the title
    dataset: str | None = None  # training data id or name, written to `datasets:`
    license: str = "other"  # Hub licence id of the weights ("other" = see the card)
    tags: Sequence[str] = ()  # extra Hub tags, added to the lightning-gen ones
    metrics: Sequence[MetricResult] = ()  # FID / IS / KID; missing ones are reported as not measured
    recipe: str | None = None  # the LightningCLI YAML that trained the model
    repo_id: str | None = None  # shown in the usage snippet; default placeholder ORG/NAME
    zoo_name: str | None = None  # registered zoo name, shown in the usage snippet

    def metric(self, name: str) -> MetricResult:
        """The result for ``name``, or a "not measured" placeholder when none was given."""
        for result in self.metrics:
            if result.name == name:
                return result
        return MetricResult(name, reason="no evaluation result was recorded when this folder was written")


def _family(class_name: str) -> str:
    return {"GANModule": "GAN", "VAE": "VAE"}.get(class_name, class_name)


def _protocol_text(protocol: Mapping[str, Any]) -> str:
    return "; ".join(f"{k}: {v}" for k, v in protocol.items()) or "not recorded"


def _front_matter(config: Mapping[str, Any], info: CardInfo, model_name: str) -> str:
    from huggingface_hub import EvalResult, ModelCardData

    dataset = info.dataset or "unknown"
    eval_results = [
        EvalResult(
            task_type=TASK_TYPE,
            task_name="Image generation",
            dataset_type=dataset,
            dataset_name=dataset,
            metric_type=name,
            metric_name=METRIC_NAMES[name],
            metric_value=float(result.value),
            metric_args={**dict(result.protocol), **({"std": result.std} if result.std is not None else {})} or None,
        )
        for name in METRIC_NAMES
        if (result := info.metric(name)).measured
    ]
    conditional = int(config.get("data", {}).get("num_classes", 0)) > 0
    tags = ["lightning-gen", _family(config["class_name"]).lower(), "image-generation", "pytorch-lightning"]
    tags.append("class-conditional" if conditional else TASK_TYPE)
    data = ModelCardData(
        library_name="lightning-gen",
        license=info.license,
        tags=[*tags, *info.tags],
        datasets=[info.dataset] if info.dataset else None,
        pipeline_tag=TASK_TYPE,
        # model_name only names the model-index entry; without results it would be a stray key.
        model_name=model_name if eval_results else None,
        eval_results=eval_results or None,
    )
    return data.to_yaml()


def build_model_card(config: Mapping[str, Any], info: CardInfo, samples_file: str | None = "samples.png") -> str:
    """Render README.md for a model folder.

    Args:
        config: the folder's config.json content.
        info: dataset, licence, metrics, recipe...
        samples_file: the sample grid to embed, or None when the folder has none.

    Returns:
        The card text: YAML front matter between ``---`` lines, then Markdown.
    """
    class_name = config["class_name"]
    init_args = config.get("init_args", {})
    data = config.get("data", {})
    weights = config.get("weights", {})
    model_name = info.model_name or f"{class_name} on {info.dataset or 'custom data'}"
    module_path = {"GANModule": "lightning_gen.gan", "VAE": "lightning_gen.vae"}.get(class_name, "your_package")
    repo_id = info.repo_id or "ORG/NAME"

    usage = [
        "```python",
        f"from {module_path} import {class_name}",
        "",
        f'model = {class_name}.from_pretrained("{repo_id}")  # pin revision="<commit>" for reproducibility',
        "images = model.sample(16, seed=0)  # float tensor (16, C, H, W) in [-1, 1]",
        "```",
    ]
    if info.zoo_name:
        usage += [
            "",
            "From the lightning-gen zoo (pinned revision, sha256-verified weights):",
            "",
            "```python",
            "import lightning_gen.zoo",
            "",
            f'model = lightning_gen.zoo.load("{info.zoo_name}")',
            "```",
        ]
    usage += ["", "```bash", f"lightning-gen sample --model {info.zoo_name or repo_id} --n 64 --out grid.png", "```"]

    ema = init_args.get("ema_decay")
    rows = [
        ("class", f"`{class_name}`"),
        ("image size", f"{data.get('image_size')}x{data.get('image_size')}, {data.get('channels')} channel(s)"),
        ("latent size", str(config.get("latent_dim", init_args.get("latent_dim")))),
        ("classes", str(data.get("num_classes")) if data.get("num_classes") else "unconditional"),
        ("pixel range", f"[-1, 1]; to uint8: `{data.get('to_uint8', 'round((x + 1) * 127.5)')}`"),
        ("stored networks", ", ".join(f"`{n}`" for n in weights.get("networks", []))),
    ]
    if "generator_ema" in weights.get("networks", []):
        rows.append(("EMA", f"decay {ema}; `sample()` uses `generator_ema`, `generator` holds the raw weights"))
    if data.get("class_names"):
        rows.append(("class names", ", ".join(data["class_names"])))

    metric_rows = []
    for name, pretty in METRIC_NAMES.items():
        result = info.metric(name)
        if result.measured:
            value = f"{result.value:.4g}" + (f" ± {result.std:.2g}" if result.std is not None else "")
            metric_rows.append(f"| {pretty} | {value} | {_protocol_text(result.protocol)} |")
        else:
            metric_rows.append(f"| {pretty} | not measured: {result.reason} | |")

    body = [
        f"# {model_name}",
        "",
        info.description or f"A {_family(class_name)} image generator trained with lightning-gen.",
        "",
        "## Usage",
        "",
        *usage,
        "",
    ]
    if samples_file:
        body += [
            "## Samples",
            "",
            f"![64 samples drawn with seed 0]({samples_file})",
            "",
            "Drawn with `model.sample(64, seed=0)`; the same call redraws this grid.",
            "",
        ]
    body += [
        "## Model",
        "",
        "| | |",
        "|---|---|",
        *[f"| {k} | {v} |" for k, v in rows],
        "",
        "## Evaluation",
        "",
        "| metric | value | protocol |",
        "|---|---|---|",
        *metric_rows,
        "",
        "## Training recipe",
        "",
    ]
    if info.recipe:
        body += [
            "The LightningCLI config that trained this model (`lightning-gen fit --config recipe.yaml`):",
            "",
            "```yaml",
            info.recipe.rstrip(),
            "```",
            "",
        ]
    else:
        body += ["No recipe was recorded. The constructor arguments are in `config.json` under `init_args`.", ""]
    body += [
        "## Files",
        "",
        "- `config.json`: class, constructor arguments, data normalisation, stored networks.",
        f"- `model.safetensors`: inference weights only (sha256 `{weights.get('sha256')}`); no pickle.",
    ]
    if samples_file:
        body.append(f"- `{samples_file}`: the sample grid above.")
    body.append("")
    front = _front_matter(config, info, model_name)
    return f"---\n{front.rstrip()}\n---\n\n" + "\n".join(body)


def read_card_metadata(path: str | Path) -> dict:
    """The YAML front matter of a README.md as a dict (empty when it has none)."""
    from huggingface_hub import metadata_load

    return metadata_load(Path(path)) or {}
