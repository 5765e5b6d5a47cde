"""Model cards (README.md) of lightning-gen Hub folders: what :meth:`HubMixin.save_pretrained` writes.

What this module is for: the card's YAML front matter the Hub indexes (``library_name``, tags,
datasets, licence and a ``model-index`` with the measured FID / IS / KID, built with
``huggingface_hub``'s ``ModelCardData`` and ``EvalResult``) and its Markdown body: usage, samples,
settings, evaluation, and the training recipe with a caution to review it before running it. What
it is not: an evaluator. A metric that was not measured says why and never gets a number.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields
from typing import Any

METRIC_NAMES = {"fid": "FID", "is": "Inception Score", "kid": "KID"}
TASK_TYPE = "unconditional-image-generation"
RECIPE_CAUTION = (
    "Review a downloaded recipe before running it: LightningCLI instantiates every class a config names "
    "(`class_path`), so a recipe can run any installed code. Loading the weights never does."
)


@dataclass(frozen=True)
class MetricResult:
    """One evaluation result for the card; a metric that was not measured says why and has no number.

    Example:
        >>> MetricResult("fid", 41.2, protocol={"num_samples": 10000}).measured
        True
        >>> MetricResult("is", reason="no Inception weights offline").measured
        False
    """

    name: str  # "fid", "is" or "kid"
    value: float | None = None  # the measured value; None when not measured
    std: float | None = None  # spread across splits / subsets, when the evaluator reports one
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
    """What the card says beyond config.json; these are the keys ``model_card_kwargs`` accepts.

    Example:
        >>> info = CardInfo(dataset="shapes32", metrics=(MetricResult("fid", 30.5),))
        >>> info.metric("fid").value, info.metric("kid").measured
        (30.5, False)
    """

    model_name: str | None = None  # card title; default "<class> on <dataset>"
    description: str | None = None  # a paragraph under the title
    dataset: str | None = None  # training data id or name, written to `datasets:`
    license: str = "other"  # Hub licence id of the weights
    tags: Sequence[str] = ()  # extra Hub tags
    metrics: Sequence[MetricResult] = ()  # FID / IS / KID; missing ones are reported as not measured
    recipe: str | None = None  # the LightningCLI YAML that trained the model; default: recipe.yaml in the folder
    repo_id: str | None = None  # shown in the usage snippet (push_to_hub fills it in)
    zoo_name: str | None = None  # registered zoo name, shown in the usage snippet

    @classmethod
    def from_kwargs(cls, kwargs: Mapping[str, Any] | None) -> CardInfo:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(kwargs or {}) - known)
        if unknown:
            raise TypeError(f"model_card_kwargs got unknown keys {unknown}; expected some of {sorted(known)}.")
        return cls(**dict(kwargs or {}))

    def as_kwargs(self) -> dict[str, Any]:
        """The fields as ``model_card_kwargs`` (shallow: metrics stay :class:`MetricResult` objects)."""
        return {f.name: getattr(self, f.name) for f in fields(self)}

    def metric(self, name: str) -> MetricResult:
        """The result for ``name``, or a "not measured" placeholder when none was given."""
        return next(
            (r for r in self.metrics if r.name == name),
            MetricResult(name, reason="no evaluation result was recorded when this folder was written"),
        )


def build_model_card(config: Mapping[str, Any], info: CardInfo, tags: Sequence[str], samples: bool) -> str:
    """The README.md of a folder: Hub front matter (tags, datasets, model-index) and a Markdown body."""
    from huggingface_hub import EvalResult, ModelCardData

    from lightning_gen.hub import LIBRARY_NAME, META_KEY, RECIPE_NAME, SAMPLES_NAME  # at call time: hub imports us

    meta = config[META_KEY]
    class_name, data, networks = meta["class_name"], meta["data"], meta["weights"]["networks"]
    family = {"GANModule": "gan", "VAE": "vae"}.get(class_name, class_name.lower())
    title = info.model_name or f"{class_name} on {info.dataset or 'custom data'}"
    dataset = info.dataset or "unknown"
    results = [
        EvalResult(
            task_type=TASK_TYPE, task_name="Image generation", dataset_type=dataset, dataset_name=dataset,
            metric_type=name, metric_name=pretty, metric_value=float(result.value),
            metric_args={**result.protocol, **({"std": result.std} if result.std is not None else {})} or None,
        )
        for name, pretty in METRIC_NAMES.items()
        if (result := info.metric(name)).measured
    ]
    card_tags = [*tags, family, "class-conditional" if data["num_classes"] else TASK_TYPE, *info.tags]
    front = ModelCardData(
        library_name=LIBRARY_NAME, license=info.license, tags=list(dict.fromkeys(card_tags)),
        datasets=[info.dataset] if info.dataset else None, pipeline_tag=TASK_TYPE,
        model_name=title if results else None, eval_results=results or None,  # model-index needs a value
    ).to_yaml()
    repo_id = info.repo_id or "ORG/NAME"
    usage = [
        f"from lightning_gen import {class_name}", "",
        f'model = {class_name}.from_pretrained("{repo_id}")  # pin revision="<commit>" for reproducibility',
        "images = model.sample(16, seed=0)  # float tensor (16, C, H, W) in [-1, 1]",
    ]
    if info.zoo_name:
        usage += ["", "import lightning_gen.zoo", ""]
        usage.append(f'model = lightning_gen.zoo.load("{info.zoo_name}")  # sha256-pinned')
    rows = [
        ("class", f"`{class_name}`"),
        ("image size", f"{data['image_size']}x{data['image_size']}, {data['channels']} channel(s)"),
        ("latent size", str(config.get("latent_dim"))),
        ("classes", ", ".join(data.get("class_names") or []) or str(data["num_classes"] or "unconditional")),
        ("pixel range", f"[-1, 1]; to uint8: `{data['to_uint8']}`"),
        ("stored networks", ", ".join(f"`{n}`" for n in networks)),
    ]
    if "generator_ema" in networks:
        rows.append(("EMA", f"decay {config.get('ema_decay')}; `sample()` uses `generator_ema`, `generator` is raw"))
    metric_rows = [
        f"| {pretty} | {r.value:.4g}{f' ± {r.std:.2g}' if r.std is not None else ''} | "
        f"{'; '.join(f'{k}: {v}' for k, v in r.protocol.items()) or 'not recorded'} |"
        if (r := info.metric(name)).measured
        else f"| {pretty} | not measured: {r.reason} | |"
        for name, pretty in METRIC_NAMES.items()
    ]
    body = [f"# {title}", "", info.description or f"A {family.upper()} image generator trained with lightning-gen.", ""]
    body += ["## Usage", "", "```python", *usage, "```", "", "```bash"]
    body += [f"lightning-gen sample --model {info.zoo_name or repo_id} --n 64 --out grid.png", "```", ""]
    if samples:
        body += ["## Samples", "", f"![64 samples drawn with seed 0]({SAMPLES_NAME})", ""]
        body += ["Drawn with `model.sample(64, seed=0)`; the same call redraws this grid.", ""]
    body += ["## Model", "", "| | |", "|---|---|", *[f"| {k} | {v} |" for k, v in rows], ""]
    body += ["## Evaluation", "", "| metric | value | protocol |", "|---|---|---|", *metric_rows, ""]
    body += ["## Training recipe", ""]
    if info.recipe:
        body += [f"The LightningCLI config that trained this model (`{RECIPE_NAME}`).", "", f"> {RECIPE_CAUTION}", ""]
        body += ["```yaml", info.recipe.rstrip(), "```", ""]
    else:
        body += ["No recipe was recorded; the constructor arguments are in `config.json`.", ""]
    body += ["## Files", "", "- `config.json`: constructor arguments, data normalisation, stored networks."]
    body += [f"- `model.safetensors`: inference weights (sha256 `{meta['weights']['sha256']}`); no pickle.", ""]
    return f"---\n{front.rstrip()}\n---\n\n" + "\n".join(body)
