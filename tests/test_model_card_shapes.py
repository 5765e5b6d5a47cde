"""Shapes metrics (FSD, validity, factor TV / coverage) on model cards and through `lightning-gen zoo export`.

One small real evaluation (100 real shapes images against 100 images that lack triangles) feeds every test, so
the numbers and the protocol on the cards are the evaluator's own. Offline, deterministic, CPU only.
"""

from __future__ import annotations

import json

import lightning.pytorch as pl
import pytest
import yaml
from _zoo_fixtures import save, tiny_gan
from huggingface_hub import ModelCard, metadata_load

import lightning_gen.zoo as zoo
from lightning_gen import GANModule
from lightning_gen.cli.zoo import main
from lightning_gen.data import ShapesDataset
from lightning_gen.metrics import evaluate_shapes
from lightning_gen.metrics.shapes_classifier import FACTORS
from lightning_gen.model_card import (
    CARD_METRIC_NAMES,
    METRIC_NAMES,
    SHAPES_FACTORS,
    SHAPES_METRIC_NAMES,
    SHAPES_NOTE,
    CardInfo,
    MetricResult,
    metrics_from_json,
    metrics_to_json,
    shapes_metric_results,
    shapes_metrics_json,
)
from lightning_gen.zoo.callback import HubExportCallback

pytest_plugins = ("_zoo_fixtures",)  # private_zoo: a temporary registry, so the real index.json is never written

CARD_SHAPES = ["fsd", "validity", "shape_tv", "shape_coverage", "colour_tv", "colour_coverage"]


@pytest.fixture(scope="module")
def evaluation():
    """A real evaluation whose "generated" side has circles and squares only: shape coverage misses triangles."""
    real, _ = ShapesDataset(num_images=100, image_size=32, seed=0).to_tensors()
    fake, _ = ShapesDataset(num_images=100, image_size=32, seed=1, shapes=("circle", "square")).to_tensors()
    return evaluate_shapes(real, fake, use_cache=False, device="cpu", batch_size=50)


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    """A Lightning checkpoint of a tiny GANModule (no training needed to export it)."""
    path = tmp_path_factory.mktemp("ckpt") / "tiny.ckpt"
    trainer = pl.Trainer(accelerator="cpu", logger=False, enable_progress_bar=False, enable_model_summary=False)
    trainer.strategy.connect(GANModule(image_size=16, latent_dim=8, width=8))
    trainer.save_checkpoint(path)
    return path


def _no_none(data):
    """What the Hub's model-index keeps of a protocol: everything but the None fields."""
    return {key: value for key, value in data.items() if value is not None}


def _card_metrics(readme) -> dict[str, dict]:
    """type -> metric entry of the model-index, read back with huggingface_hub."""
    front = metadata_load(readme)
    return {m["type"]: m for result in front["model-index"][0]["results"] for m in result["metrics"]}


def _evaluation_rows(text: str) -> dict[str, list[str]]:
    """label -> [value, protocol] of the card's Evaluation table."""
    table = text.split("## Evaluation")[1].split("\n\n")[1]
    rows = [line.strip("|").split(" | ") for line in table.splitlines()[2:]]
    return {cells[0].strip(): [cell.strip() for cell in cells[1:]] for cells in rows}


def test_card_names_mirror_the_evaluator(evaluation):
    # model_card.py names the factors itself (it must not import the metrics stack): they must stay in step.
    assert list(SHAPES_FACTORS) == list(FACTORS)
    tv_and_coverage = {k for k in evaluation.scalars() if k.endswith(("_tv", "_coverage"))}
    assert tv_and_coverage <= set(SHAPES_METRIC_NAMES) and {"fsd", "validity"} <= set(SHAPES_METRIC_NAMES)
    assert list(CARD_METRIC_NAMES)[:3] == list(METRIC_NAMES)  # FID / IS / KID first, as before


def test_card_with_shapes_metrics_round_trips_through_the_hub_parser(evaluation, tmp_path):
    metrics = (MetricResult("fid", reason="no standard Inception weights offline"), *shapes_metric_results(evaluation))
    kwargs = {"dataset": "shapes32", "metrics": metrics}
    folder = save(tiny_gan(), tmp_path / "m", samples=False, model_card_kwargs=kwargs)
    readme = folder / "README.md"

    card = _card_metrics(readme)
    assert list(card) == CARD_SHAPES  # in card order; FID etc. are not measured, so they have no entry
    expected = {
        "fsd": evaluation.fsd,
        "validity": evaluation.validity,
        "shape_tv": evaluation.factors["shape"].tv,
        "shape_coverage": evaluation.factors["shape"].coverage,
        "colour_tv": evaluation.factors["colour"].tv,
        "colour_coverage": evaluation.factors["colour"].coverage,
    }
    assert {name: entry["value"] for name, entry in card.items()} == expected  # exact: floats survive YAML
    assert card["fsd"]["name"] == "Fréchet Shapes Distance" and card["shape_tv"]["name"] == "Shape kind TV"
    protocol = json.loads(json.dumps(_no_none(evaluation.protocol.to_dict())))  # tuples as lists, as in JSON
    assert card["fsd"]["args"] == protocol == card["shape_tv"]["args"]
    assert card["fsd"]["args"]["weights_sha256"] == evaluation.protocol.weights_sha256
    assert card["validity"]["args"] == {**protocol, "real_validity": evaluation.real_validity}
    missing = list(evaluation.factors["shape"].missing)
    assert "triangle" in missing and evaluation.factors["shape"].coverage < 1  # the fixture leaves them out
    assert card["shape_coverage"]["args"] == {**protocol, "missing": missing}

    # huggingface_hub's ModelCard reads the same results back as EvalResults.
    parsed = ModelCard.load(readme).data.eval_results
    assert [(r.metric_type, r.metric_value) for r in parsed] == [(name, expected[name]) for name in CARD_SHAPES]
    assert parsed[0].metric_args["weights_sha256"] == evaluation.protocol.weights_sha256

    text = readme.read_text()
    rows = _evaluation_rows(text)
    assert list(rows) == ["FID", "Inception Score", "KID", *(SHAPES_METRIC_NAMES[name] for name in CARD_SHAPES)]
    assert rows["FID"][0] == "not measured: no standard Inception weights offline"
    assert rows["KID"][0].startswith("not measured: ")  # FID / IS / KID are always listed
    assert rows["Fréchet Shapes Distance"][0] == f"{evaluation.fsd:.4g}"
    assert f"weights_sha256: {evaluation.protocol.weights_sha256}" in rows["Fréchet Shapes Distance"][1]
    # The shared protocol is printed once; the other rows add only their own fields.
    as_fsd = "as for Fréchet Shapes Distance"
    assert rows["Shapes validity"][1] == f"real_validity: {evaluation.real_validity}; otherwise {as_fsd}"
    assert rows["Shape kind coverage"][1] == f"missing: {', '.join(missing)}; otherwise {as_fsd}"
    assert rows["Colour TV"][1] == as_fsd
    assert SHAPES_NOTE in text


def test_card_without_shapes_metrics_lists_only_fid_is_kid(tmp_path):
    info = CardInfo(dataset="faces", metrics=(MetricResult("fid", 12.5, protocol={"n_fake": 50000}),))
    folder = save(tiny_gan(), tmp_path / "m", samples=False, model_card_kwargs=info.as_kwargs())
    text = (folder / "README.md").read_text()
    assert list(_evaluation_rows(text)) == ["FID", "Inception Score", "KID"]
    assert list(_card_metrics(folder / "README.md")) == ["fid"]
    assert "Shapes" not in text and "fsd" not in text.lower() and SHAPES_NOTE not in text


def test_all_factors_on_request_and_fsd_only_results(evaluation):
    every = shapes_metrics_json(evaluation, factors=list(SHAPES_FACTORS))
    assert list(every) == ["fsd", "validity", *(f"{f}_{k}" for f in SHAPES_FACTORS for k in ("tv", "coverage"))]
    colour = shapes_metrics_json(evaluation, factors=["colour"])
    assert list(colour) == ["fsd", "validity", "colour_tv", "colour_coverage"]
    with pytest.raises(ValueError, match="expected some of"):
        shapes_metrics_json(evaluation, factors=["hue"])

    # Grayscale data: colour is not scored, so the default leaves it out and asking for it is an error.
    raw = evaluation.to_dict()
    gray = {**raw, "factors": {k: v for k, v in raw["factors"].items() if k != "colour"}}
    assert list(shapes_metrics_json(gray)) == ["fsd", "validity", "shape_tv", "shape_coverage"]
    with pytest.raises(ValueError, match="not scored"):
        shapes_metrics_json(gray, factors=["colour"])

    # evaluate(feature_extractor="shapes") has the same keys plus FID's; its "fid" is the FSD and never read as FID.
    with_fid = {**raw, "fid": raw["fsd"], "inception_score": 1.5, "kid": 0.1, "coverage": 0.9}
    assert [r.name for r in metrics_from_json(with_fid)] == CARD_SHAPES
    # Only an FSD (a statistics-file side): the card gets the FSD alone.
    fsd_only = {**raw, "validity": None, "real_validity": None, "factors": {}}
    assert [r.name for r in metrics_from_json(fsd_only)] == ["fsd"]
    with pytest.raises(ValueError, match="no FSD"):
        shapes_metrics_json({**fsd_only, "fsd": None})
    with pytest.raises(ValueError, match="Expected a shapes evaluation"):
        shapes_metrics_json({"fid": {"value": 1.0}})


def test_json_layouts_and_errors(evaluation):
    entries = shapes_metrics_json(evaluation)
    assert metrics_to_json(metrics_from_json(entries)) == entries  # the card layout round-trips
    assert metrics_from_json(json.loads(evaluation.to_json())) == metrics_from_json(entries)  # to_json() as it is

    with pytest.raises(ValueError, match="fsd, validity, shape_tv") as err:
        metrics_from_json({"fds": {"value": 1.0}})
    assert "fid, is, kid" in str(err.value)  # the message lists what is accepted
    with pytest.raises(ValueError, match="unknown keys \\['vaule'\\]"):
        metrics_from_json({"fsd": {"vaule": 1.0}})
    with pytest.raises(ValueError, match="must map metric names"):
        metrics_from_json({"fsd": 1.0})
    with pytest.raises(ValueError, match="plain JSON"):
        MetricResult("fsd", 1.0, protocol={"when": object()})
    HubExportCallback(metric_keys={"fsd": "val/fsd", "shape_tv": "val/shape_tv"})  # logged shapes metrics too
    with pytest.raises(ValueError, match="fsd"):
        HubExportCallback(metric_keys={"fds": "val/fsd"})


def test_export_writes_shapes_entries_of_metrics_json(evaluation, checkpoint, tmp_path, capsys):
    index_before = zoo.INDEX_PATH.read_bytes()
    fid = tmp_path / "metrics.json"
    fid.write_text(json.dumps({"fid": {"reason": "no standard Inception weights offline"}}))
    shapes = tmp_path / "shapes.json"
    shapes.write_text(json.dumps(shapes_metrics_json(evaluation), indent=2))

    target = tmp_path / "export"
    args = ["export", str(checkpoint), str(target), "--no-samples", "--dataset", "shapes32"]
    assert main([*args, "--metrics", str(fid), "--metrics", str(shapes)]) == 0
    card = _card_metrics(target / "README.md")
    assert list(card) == CARD_SHAPES
    assert card["fsd"]["value"] == evaluation.fsd and card["validity"]["value"] == evaluation.validity
    assert card["fsd"]["args"]["weights_sha256"] == evaluation.protocol.weights_sha256
    assert "| FID | not measured: no standard Inception weights offline | |" in (target / "README.md").read_text()
    front = yaml.safe_load((target / "README.md").read_text().split("---")[1])  # a plain YAML loader reads it too
    assert front["datasets"] == ["shapes32"]

    # A metric given twice is an error, not a silent choice; nothing about the registry changed.
    assert main([*args, "--metrics", str(shapes), "--metrics", str(shapes)]) == 1
    assert "'fsd' is given by both" in capsys.readouterr().err
    assert zoo.INDEX_PATH.read_bytes() == index_before


def test_export_of_a_zoo_model_reads_the_evaluation_json_as_is(evaluation, checkpoint, private_zoo, tmp_path, capsys):
    private_zoo("tiny-shapes", "GANModule", dataset="shapes32")
    raw = tmp_path / "shapes.json"
    raw.write_text(evaluation.to_json())  # what the README's `python -c` writes
    target = private_zoo.zoo_dir / "tiny-shapes"
    args = ["export", str(checkpoint), str(target), "--zoo-name", "tiny-shapes", "--no-samples"]
    assert main([*args, "--metrics", str(raw)]) == 0
    assert zoo.info("tiny-shapes").sha256 == zoo.sha256_file(target / "model.safetensors")  # the private index
    assert {name: m["value"] for name, m in _card_metrics(target / "README.md").items()} == {
        name: entry["value"] for name, entry in shapes_metrics_json(evaluation).items()
    }
    capsys.readouterr()
    assert main(["show", "tiny-shapes"]) == 0
    assert f"Fréchet Shapes Distance = {evaluation.fsd}" in capsys.readouterr().out


def test_digits_metrics_are_optional_card_rows_with_their_note():
    from lightning_gen.model_card import DIGITS_NOTE, CardInfo, MetricResult

    info = CardInfo(metrics=(MetricResult("conditional_accuracy", 0.99, protocol={"num_samples": 10000}), MetricResult("cas", 0.97, std=0.003)))
    labels = [label for label, _ in info.listed()]
    assert labels[:3] == ["FID", "Inception Score", "KID"] and "CAS (classifier trained on generated digits)" in labels
    assert "Digits FD" not in labels  # only what was given
    with pytest.raises(ValueError, match="digits metrics"):
        MetricResult("accuracy", 0.5)
    assert "held-out test digits" in DIGITS_NOTE
