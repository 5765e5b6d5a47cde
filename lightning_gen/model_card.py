"""Model cards (README.md) of lightning-gen Hub folders: what :meth:`HubMixin.save_pretrained` writes.

What this module is for: the card's YAML front matter the Hub indexes (``library_name``, tags,
datasets, licence and a ``model-index`` with the measured metrics, built with ``huggingface_hub``'s
``ModelCardData`` and ``EvalResult``) and its Markdown body: usage, samples, settings, evaluation,
and the training recipe with a caution to review it before running it. What it is not: an
evaluator. A metric that was not measured says why and never gets a number.

Metrics: FID / IS / KID (:data:`METRIC_NAMES`) are always listed, as "not measured" when absent.
The shapes metrics (:data:`SHAPES_METRIC_NAMES`: FSD, validity, per-factor TV and coverage of
:func:`lightning_gen.metrics.evaluate_shapes`) are optional: listed only when given, since they mean
nothing for models of other data. :func:`shapes_metrics_json` turns an evaluation into the
``--metrics`` JSON of ``lightning-gen zoo export``, so no number is ever copied by hand.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields
from typing import Any

from lightning_gen.hub_format import LIBRARY_NAME, META_KEY, RECIPE_NAME, SAMPLES_NAME

#: Metrics every card lists (a placeholder says why when one was not measured).
METRIC_NAMES = {"fid": "FID", "is": "Inception Score", "kid": "KID"}
#: Factors scored by the shapes evaluator, in its order, with their labels on the card. They mirror
#: ``lightning_gen.metrics.shapes_classifier.FACTORS`` (a test checks it): this module is imported by
#: the Hub format and must not import the metrics stack (torch, torchmetrics, the classifier).
SHAPES_FACTORS = {
    "shape": "Shape kind",
    "colour": "Colour",
    "x": "Horizontal position",
    "y": "Vertical position",
    "size": "Size",
    "background": "Background",
}
#: Factors :func:`shapes_metrics_json` puts on a card unless told otherwise: the two the data is about. Each factor
#: adds two model-index entries carrying the whole protocol, so position, size and background are opt-in.
DEFAULT_CARD_FACTORS = ("shape", "colour")
#: Optional metrics of :func:`lightning_gen.metrics.evaluate_shapes`: listed only when given.
SHAPES_METRIC_NAMES = {
    "fsd": "Fréchet Shapes Distance",
    "validity": "Shapes validity",
    **{
        f"{factor}_{kind}": f"{label} {pretty}"
        for factor, label in SHAPES_FACTORS.items()
        for kind, pretty in (("tv", "TV"), ("coverage", "coverage"))
    },
}
#: Optional metrics of the digits evaluator (:func:`lightning_gen.metrics.evaluate_digits`) and of the synthetic-data
#: metrics (:mod:`lightning_gen.metrics.synthetic`): listed only when given.
DIGITS_METRIC_NAMES = {
    "conditional_accuracy": "Conditional accuracy (digits classifier)",
    "digits_fd": "Digits FD",
    "class_tv": "Class TV (digits classifier)",
    "cas": "CAS (classifier trained on generated digits)",
    "cas_real_reference": "Same classifier trained on as many real digits",
    "intra_class_fd": "Intra-class digits FD",
}
#: Every name a :class:`MetricResult` may have, in the card's order.
CARD_METRIC_NAMES = {**METRIC_NAMES, **SHAPES_METRIC_NAMES, **DIGITS_METRIC_NAMES}
#: Keys of one entry of the ``--metrics`` JSON (see :func:`metrics_from_json`).
ENTRY_KEYS = ("value", "std", "protocol", "reason")
SHAPES_NOTE = (
    "FSD, validity and the factor TV / coverage rows come from lightning-gen's shapes classifier "
    "(`lightning_gen.metrics.evaluate_shapes`) and mean something only for the procedural shapes data. "
    "FSD: Fréchet distance of the classifier's features (0 best). Validity: share of samples confidently one "
    "shape and one colour (compare with `real_validity`, the real images' share). TV: total variation distance "
    "between the generated and real distributions of a factor (0 best). Coverage: share of the data's values "
    "of a factor generated at all (1 best)."
)
DIGITS_NOTE = (
    "Conditional accuracy, digits FD and class TV come from lightning-gen's digits classifier "
    "(`lightning_gen.metrics.evaluate_digits`, trained on the built-in training digits only) against the 1,000 "
    "held-out test digits, and mean something only for handwritten digits. Conditional accuracy: share of samples "
    "the classifier reads as the label they were drawn for (compare with `real_accuracy`). CAS (Ravuri & Vinyals "
    "2019): test accuracy of a fixed small CNN trained only on generated digits, next to the same CNN trained on as "
    "many real ones (`lightning_gen.metrics.synthetic`; its protocol is recorded)."
)
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

    name: str  # a key of CARD_METRIC_NAMES: "fid", "is", "kid", or a shapes metric such as "fsd"
    value: float | None = None  # the measured value; None when not measured
    std: float | None = None  # spread across splits / subsets, when the evaluator reports one
    protocol: Mapping[str, Any] = field(default_factory=dict)  # how: sample count, reference set, extractor...
    reason: str | None = None  # why it was not measured (shown instead of a value)

    def __post_init__(self) -> None:
        if self.name not in CARD_METRIC_NAMES:
            raise ValueError(
                f"MetricResult name must be one of {', '.join(METRIC_NAMES)}, the optional shapes metrics "
                f"{', '.join(SHAPES_METRIC_NAMES)} or the digits metrics {', '.join(DIGITS_METRIC_NAMES)}; got {self.name!r}."
            )
        if self.value is None and not self.reason:
            raise ValueError(f"MetricResult {self.name} has no value: say why it was not measured (reason=...).")
        for label, number in (("value", self.value), ("std", self.std)):
            if number is not None and not (isinstance(number, (int, float)) and math.isfinite(number)):
                raise ValueError(f"MetricResult {self.name} {label} must be a finite number or None, got {number!r}.")
        try:  # the protocol goes into the card's YAML front matter: plain JSON only
            json.dumps(dict(self.protocol), allow_nan=False)
        except (TypeError, ValueError) as err:
            raise ValueError(f"MetricResult {self.name} protocol must be plain JSON: {err}") from None

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
    metrics: Sequence[MetricResult] = ()  # missing FID / IS / KID are reported as not measured, others left out
    recipe: str | None = None  # the LightningCLI YAML that trained the model; default: recipe.yaml in the folder
    repo_id: str | None = None  # shown in the usage snippet (push_to_hub fills it in)
    zoo_name: str | None = None  # registered zoo name, shown in the usage snippet
    extra_files: Sequence[tuple[str, str]] = ()  # (file name, what it is) of further files, listed under "Files"

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

    def listed(self) -> list[tuple[str, MetricResult]]:
        """(label, result) of every metric the card lists, in card order: FID / IS / KID always (placeholders
        when not given), the optional ones (shapes metrics) only when given.

        Example:
            >>> [label for label, _ in CardInfo(metrics=(MetricResult("fsd", 2.5),)).listed()]
            ['FID', 'Inception Score', 'KID', 'Fréchet Shapes Distance']
        """
        given = {r.name for r in self.metrics}
        return [
            (label, self.metric(name))
            for name, label in CARD_METRIC_NAMES.items()
            if name in METRIC_NAMES or name in given
        ]


def build_model_card(config: Mapping[str, Any], info: CardInfo, tags: Sequence[str], samples: bool) -> str:
    """The README.md of a folder: Hub front matter (tags, datasets, model-index) and a Markdown body."""
    from huggingface_hub import EvalResult, ModelCardData

    meta = config[META_KEY]
    class_name, data, networks = meta["class_name"], meta["data"], meta["weights"]["networks"]
    family = {"GANModule": "gan", "VAE": "vae"}.get(class_name, class_name.lower())
    title = info.model_name or f"{class_name} on {info.dataset or 'custom data'}"
    dataset = info.dataset or "unknown"
    listed = info.listed()
    results = [
        EvalResult(
            task_type=TASK_TYPE, task_name="Image generation", dataset_type=dataset, dataset_name=dataset,
            metric_type=result.name, metric_name=pretty, metric_value=float(result.value),
            # Through JSON: the Hub's YAML dumper would tag tuples as !!python/tuple, which no safe loader reads.
            metric_args=_plain_json({**result.protocol, **({"std": result.std} if result.std is not None else {})})
            or None,
        )
        for pretty, result in listed
        if result.measured
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
    metric_rows = _metric_rows(listed)
    body = [f"# {title}", "", info.description or f"A {family.upper()} image generator trained with lightning-gen.", ""]
    body += ["## Usage", "", "```python", *usage, "```", "", "```bash"]
    body += [f"lightning-gen sample --model {info.zoo_name or repo_id} --n 64 --out grid.png", "```", ""]
    if samples:
        body += ["## Samples", "", f"![64 samples drawn with seed 0]({SAMPLES_NAME})", ""]
        body += ["Drawn with `model.sample(64, seed=0)`; the same call redraws this grid.", ""]
    body += ["## Model", "", "| | |", "|---|---|", *[f"| {k} | {v} |" for k, v in rows], ""]
    body += ["## Evaluation", "", "| metric | value | protocol |", "|---|---|---|", *metric_rows, ""]
    if any(r.name in SHAPES_METRIC_NAMES for _, r in listed):
        body += [SHAPES_NOTE, ""]
    if any(r.name in DIGITS_METRIC_NAMES for _, r in listed):
        body += [DIGITS_NOTE, ""]
    body += ["## Training recipe", ""]
    if info.recipe:
        body += [f"The LightningCLI config that trained this model (`{RECIPE_NAME}`).", "", f"> {RECIPE_CAUTION}", ""]
        body += ["```yaml", info.recipe.rstrip(), "```", ""]
    else:
        body += ["No recipe was recorded; the constructor arguments are in `config.json`.", ""]
    body += ["## Files", "", "- `config.json`: constructor arguments, data normalisation, stored networks."]
    body += [f"- `model.safetensors`: inference weights (sha256 `{meta['weights']['sha256']}`); no pickle."]
    body += [*[f"- `{name}`: {what}" for name, what in info.extra_files], ""]
    return f"---\n{front.rstrip()}\n---\n\n" + "\n".join(body)


def _metric_rows(listed: Sequence[tuple[str, MetricResult]]) -> list[str]:
    """The Evaluation table's rows. Results of one evaluation share its protocol (a shapes evaluation gives 14
    results with the same ~20 fields), so the first row of each family prints it and later rows whose protocol
    contains all of it print only their own extra fields, then "as for <that row>"."""
    rows, shown = [], {}  # family -> (label, protocol) of the row that printed its protocol in full
    for label, result in listed:
        if not result.measured:
            rows.append(f"| {label} | not measured: {_cell(result.reason or '')} | |")
            continue
        value = f"{result.value:.4g}" + (f" ± {result.std:.2g}" if result.std is not None else "")
        family = "shapes" if result.name in SHAPES_METRIC_NAMES else "digits" if result.name in DIGITS_METRIC_NAMES else "inception"
        protocol = _plain_json(dict(result.protocol))
        reference = shown.get(family)
        if reference is not None and all(key in protocol and protocol[key] == v for key, v in reference[1].items()):
            extra = _protocol_text({key: v for key, v in protocol.items() if key not in reference[1]})
            text = f"{extra}; otherwise as for {reference[0]}" if extra else f"as for {reference[0]}"
        else:
            text = _protocol_text(protocol) or "not recorded"
            if reference is None and text != "not recorded":
                shown[family] = (label, protocol)
        rows.append(f"| {label} | {value} | {_cell(text)} |")
    return rows


def _protocol_text(protocol: Mapping[str, Any]) -> str:
    """``key: value; ...`` for a table cell, leaving out fields that are empty or do not apply (None)."""
    return "; ".join(f"{key}: {_value_text(value)}" for key, value in protocol.items() if not _empty(value))


def _value_text(value: Any) -> str:
    if isinstance(value, Mapping):
        return ", ".join(f"{key}={_value_text(v)}" for key, v in value.items() if not _empty(v))
    if isinstance(value, (list, tuple)):
        return ", ".join(_value_text(v) for v in value)
    return json.dumps(value) if isinstance(value, bool) else str(value)  # true/false, as in the front matter


def _empty(value: Any) -> bool:
    return value is None or (isinstance(value, (str, list, tuple, Mapping)) and len(value) == 0)


def _cell(text: str) -> str:
    """``text`` safe inside a Markdown table cell."""
    return text.replace("|", "\\|").replace("\n", " ")


def _plain_json(data: Any) -> Any:
    """``data`` as plain JSON types (tuples become lists), as a JSON file would give it back."""
    return json.loads(json.dumps(data, allow_nan=False))


def _without_none(data: Any) -> Any:
    """``data`` without None-valued fields, at any depth (the Hub's model-index drops them too)."""
    if isinstance(data, Mapping):
        return {key: _without_none(value) for key, value in data.items() if value is not None}
    if isinstance(data, list):
        return [_without_none(value) for value in data if value is not None]
    return data


def metrics_to_json(results: Sequence[MetricResult]) -> dict[str, dict[str, Any]]:
    """``results`` as the ``--metrics`` JSON of ``lightning-gen zoo export`` (inverse of :func:`metrics_from_json`).

    Example:
        >>> metrics_to_json([MetricResult("fid", 30.5, protocol={"n_fake": 10000}), MetricResult("is", reason="n/a")])
        {'fid': {'value': 30.5, 'protocol': {'n_fake': 10000}}, 'is': {'reason': 'n/a'}}
    """
    entries = {}
    for result in results:
        entry = {"value": result.value, "std": result.std, "protocol": dict(result.protocol), "reason": result.reason}
        entries[result.name] = {key: value for key, value in entry.items() if not _empty(value)}
    return _plain_json(entries)


def metrics_from_json(raw: Any, source: str = "the metrics JSON") -> tuple[MetricResult, ...]:
    """The card metrics in the JSON that ``lightning-gen zoo export --metrics`` reads.

    Two layouts are accepted:

    - the card layout, ``{name: {"value": ..., "std": ..., "protocol": {...}}}`` or ``{name: {"reason": "..."}}``
      per metric, with names from :data:`CARD_METRIC_NAMES` (what :func:`metrics_to_json` and
      :func:`shapes_metrics_json` write);
    - a shapes evaluation as it is: the JSON of :meth:`ShapesMetricResult.to_dict` / ``to_json()`` (keys ``fsd``,
      ``validity``, ``factors``, ``protocol``...), read through :func:`shapes_metric_results`. A result of
      ``evaluate(feature_extractor="shapes")`` has the same keys; its ``fid`` (which is the FSD), IS and KID are
      computed on the shapes classifier's features, not Inception's, so they are not read as FID / IS / KID.

    Raises:
        ValueError: Not one of these layouts, an unknown metric name (the message lists the accepted ones), an
            unknown entry key, or a value that is no finite number.

    Example:
        >>> results = metrics_from_json({"fid": {"value": 12.5}, "kid": {"reason": "offline"}})
        >>> [(r.name, r.value, r.reason) for r in results]
        [('fid', 12.5, None), ('kid', None, 'offline')]
    """
    if _is_shapes_evaluation(raw):
        return shapes_metric_results(raw)
    if not isinstance(raw, Mapping) or not all(isinstance(item, Mapping) for item in raw.values()):
        raise ValueError(
            f"{source} must map metric names to objects with 'value' or 'reason' (e.g. {{\"fid\": {{\"value\": 12.3, "
            f"\"protocol\": {{...}}}}}}), or be the JSON of a shapes evaluation (evaluate_shapes(...).to_json())."
        )
    results = []
    for name, item in raw.items():
        unknown = sorted(set(item) - set(ENTRY_KEYS))
        if unknown:
            raise ValueError(
                f"{source}: entry {name!r} has unknown keys {unknown}; expected some of {list(ENTRY_KEYS)}."
            )
        protocol = item.get("protocol") or {}
        if not isinstance(protocol, Mapping):
            raise ValueError(f"{source}: the protocol of {name!r} must be an object, got {type(protocol).__name__}.")
        results.append(MetricResult(name, item.get("value"), item.get("std"), dict(protocol), item.get("reason")))
    return tuple(results)


def _is_shapes_evaluation(raw: Any) -> bool:
    # A card-layout file holds only objects; an evaluation has a number (or null) as fsd next to its protocol.
    return isinstance(raw, Mapping) and isinstance(raw.get("protocol"), Mapping) and "fsd" in raw and not isinstance(
        raw["fsd"], Mapping
    )


def shapes_metrics_json(result: Any, factors: Sequence[str] | None = None) -> dict[str, dict[str, Any]]:
    """The ``--metrics`` JSON entries of a shapes evaluation: FSD, validity and per-factor TV and coverage.

    Each entry carries the evaluation's protocol (``ShapesProtocol.to_dict()`` without the fields that do not
    apply, which the Hub's model-index would drop anyway): it becomes the entry's ``metric_args`` in the card's
    model-index. ``validity`` also records ``real_validity`` (the real images' share, its reference) and each
    ``<factor>_coverage`` the data values never generated (``missing``).

    Args:
        result: A :class:`~lightning_gen.metrics.shapes.ShapesMetricResult` (what
            :func:`~lightning_gen.metrics.evaluate_shapes` returns), or its ``to_dict()`` / parsed ``to_json()``.
        factors: Factors to include (keys of :data:`SHAPES_FACTORS`, e.g. ``list(SHAPES_FACTORS)`` for all); default
            :data:`DEFAULT_CARD_FACTORS`, those of them the evaluation scored (colour is not scored on grayscale
            images).

    Raises:
        ValueError: ``result`` is not a shapes evaluation, has no FSD, or lacks a requested factor.

    Example: the zoo workflow. Measure a model against its training data (for the zoo models
    ``ShapesDataModule().split_dataset("train")`` and the checkpoint path or zoo name as ``fake``), write
    metrics.json, then ``lightning-gen zoo export CKPT DIR --metrics metrics.json``:

        >>> import json, tempfile
        >>> from pathlib import Path
        >>> from lightning_gen.data import ShapesDataset
        >>> from lightning_gen.metrics import evaluate_shapes
        >>> real, _ = ShapesDataset(num_images=200, seed=0).to_tensors()
        >>> held_out, _ = ShapesDataset(num_images=200, seed=1).to_tensors()  # stands in for a model's samples
        >>> entries = shapes_metrics_json(evaluate_shapes(real, held_out, use_cache=False))
        >>> list(entries)[:4]
        ['fsd', 'validity', 'shape_tv', 'shape_coverage']
        >>> entries["fid"] = {"reason": "no standard Inception weights offline"}  # merge other entries as needed
        >>> path = Path(tempfile.mkdtemp()) / "metrics.json"
        >>> _ = path.write_text(json.dumps(entries, indent=2))
        >>> [r.name for r in metrics_from_json(json.loads(path.read_text()))]
        ['fsd', 'validity', 'shape_tv', 'shape_coverage', 'colour_tv', 'colour_coverage', 'fid']

    ``--metrics`` also reads ``evaluate_shapes(...).to_json()`` as it is, and the option can be repeated to
    combine files (e.g. one with the FID entries, one with the shapes evaluation).
    """
    raw = _plain_json(result.to_dict() if callable(getattr(result, "to_dict", None)) else result)
    if not _is_shapes_evaluation(raw):
        keys = sorted(raw)[:8] if isinstance(raw, dict) else "-"
        raise ValueError(
            "Expected a shapes evaluation: a ShapesMetricResult or its to_dict() / to_json() (keys fsd, validity, "
            f"factors, protocol); got {type(result).__name__} with keys {keys}."
        )
    if raw["fsd"] is None:
        raise ValueError("This shapes evaluation has no FSD (were both sides statistics files?): nothing for the card.")
    protocol = _without_none(raw["protocol"])
    scored = raw.get("factors") or {}
    wanted = [name for name in DEFAULT_CARD_FACTORS if name in scored] if factors is None else list(factors)
    for name in wanted:
        if name not in SHAPES_FACTORS:
            raise ValueError(f"Unknown shapes factor {name!r}; expected some of {list(SHAPES_FACTORS)}.")
        if name not in scored:
            raise ValueError(f"Factor {name!r} was not scored in this evaluation (scored: {list(scored)}).")
    entries = {"fsd": {"value": raw["fsd"], "protocol": protocol}}
    if raw.get("validity") is not None:  # None when only the FSD could be computed (statistics files)
        extra = {"real_validity": raw["real_validity"]} if raw.get("real_validity") is not None else {}
        entries["validity"] = {"value": raw["validity"], "protocol": {**protocol, **extra}}
    for name in SHAPES_FACTORS:  # card order, whatever the order asked for
        if name in wanted:
            entries[f"{name}_tv"] = {"value": scored[name]["tv"], "protocol": protocol}
            missing = {"missing": scored[name]["missing"]} if scored[name].get("missing") else {}
            entries[f"{name}_coverage"] = {"value": scored[name]["coverage"], "protocol": {**protocol, **missing}}
    return _plain_json(entries)


def shapes_metric_results(result: Any, factors: Sequence[str] | None = None) -> tuple[MetricResult, ...]:
    """The card's :class:`MetricResult` of a shapes evaluation (see :func:`shapes_metrics_json`), e.g. for
    ``CardInfo(metrics=...)`` or ``save_pretrained(model_card_kwargs={"metrics": ...})``."""
    return metrics_from_json(shapes_metrics_json(result, factors))
