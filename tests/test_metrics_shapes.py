"""The shapes evaluator (FSD, factor coverage, validity) with the shipped classifier weights.

Real images come from the library's own ShapesDataModule; "generators" are banks of held-out real images with
chosen shapes removed, uniform noise, or a tiny GANModule inside a Trainer.
"""

from __future__ import annotations

import json
import shutil

import lightning.pytorch as pl
import pytest
import torch

from lightning_gen import GANModule
from lightning_gen._files import sha256_file
from lightning_gen.data import ShapesDataModule
from lightning_gen.metrics import (
    SHAPES_CLASSIFIER_SHA256,
    SHAPES_CLASSIFIER_WEIGHTS,
    ShapesEvaluator,
    ShapesMetricsCallback,
    evaluate,
    evaluate_shapes,
    load_shapes_classifier,
)
from lightning_gen.metrics.shapes_classifier import FACTORS, factor_labels, prepare_shapes_images

NUM_REAL, NUM_HELD_OUT = 6000, 4000


class ImageBank:
    """A stand-in generator: ``sample(n, seed)`` returns the next ``n`` images of a fixed bank, in [-1, 1]."""

    def __init__(self, images: torch.Tensor) -> None:
        self.images = images

    def sample(self, n: int, seed: int = 0) -> torch.Tensor:
        start = (seed * n) % self.images.shape[0]
        index = torch.arange(start, start + n) % self.images.shape[0]
        return self.images[index].float() / 127.5 - 1


def make_datamodule() -> ShapesDataModule:
    return ShapesDataModule(num_images=NUM_REAL + NUM_HELD_OUT, val_fraction=NUM_HELD_OUT / (NUM_REAL + NUM_HELD_OUT))


@pytest.fixture(scope="module")
def shapes():
    """Training split (the real data) and validation split (held out) of the default 32 px RGB shapes."""
    dm = make_datamodule()
    real = dm.split_dataset("train")
    held_out_images, held_out_labels = dm.split_dataset("val").to_tensors()
    return real, held_out_images, held_out_labels


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("shapes-cache")


@pytest.fixture(scope="module")
def held_out_result(shapes, cache_dir):
    """The held-out images scored against the real ones; writes the real statistics to the cache."""
    real, held_out, _ = shapes
    return evaluate_shapes(real, held_out, batch_size=500, cache_dir=cache_dir)


@pytest.fixture(scope="module")
def real_payloads(shapes, held_out_result, cache_dir):
    """The cached real statistics, to score other image sets against without classifying the real ones again."""
    (entry,) = cache_dir.glob("fid-*.pt")
    return {"fid": torch.load(entry, weights_only=True)}


def score(payloads, fake: torch.Tensor):
    evaluator = ShapesEvaluator()
    evaluator.load_real_payloads(payloads)
    for batch in fake.split(500):
        evaluator.update_fake(batch)
    return evaluator.compute()


class Unreadable(torch.utils.data.Dataset):
    """The real dataset's identity without its images: reading one fails, so only a cache hit can score it."""

    def __init__(self, dataset) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def fingerprint(self) -> str:
        return self.dataset.fingerprint()

    def __getitem__(self, index):
        raise AssertionError("the real images were read although their statistics are cached")


def test_shipped_weights_match_their_pin_and_stay_small(tmp_path):
    assert sha256_file(SHAPES_CLASSIFIER_WEIGHTS) == SHAPES_CLASSIFIER_SHA256
    assert SHAPES_CLASSIFIER_WEIGHTS.stat().st_size < 400_000
    damaged = tmp_path / "damaged.safetensors"
    shutil.copy(SHAPES_CLASSIFIER_WEIGHTS, damaged)
    with open(damaged, "r+b") as handle:
        handle.seek(-4, 2)
        handle.write(b"\x00\x01\x02\x03")
    with pytest.raises(ValueError, match="sha256"):
        load_shapes_classifier(damaged)
    load_shapes_classifier(damaged, expected_sha256=None)  # your own weights: no pin
    with pytest.raises(FileNotFoundError, match="train_shapes_classifier"):
        load_shapes_classifier(tmp_path / "missing.safetensors")


def test_classifier_reads_the_factors_of_held_out_images(shapes):
    _, images, labels = shapes
    _, logits = load_shapes_classifier()(prepare_shapes_images(images[:1000]))
    assert (logits["shape"].argmax(1) == labels[:1000]).float().mean().item() > 0.97
    held_out = make_datamodule().split_dataset("val")
    truth = [factor_labels(held_out.factors(i)) for i in range(1000)]
    for name, minimum in (("colour", 0.99), ("x", 0.95), ("y", 0.95), ("size", 0.9)):
        expected = torch.tensor([row[name] for row in truth])
        assert (logits[name].argmax(1) == expected).float().mean().item() > minimum, name


def test_held_out_real_shapes_score_fsd_near_zero_and_full_coverage(held_out_result, real_payloads):
    result = held_out_result
    noise = score(real_payloads, torch.randint(0, 256, (500, 3, 32, 32), dtype=torch.uint8))
    assert result.fsd < 0.01 * noise.fsd
    assert result.factors["shape"].tv < 0.02
    assert all(factor.tv < 0.03 for factor in result.factors.values()), {k: f.tv for k, f in result.factors.items()}
    assert all(factor.coverage == 1.0 for factor in result.factors.values())
    assert result.validity > 0.95 and result.real_validity > 0.95
    assert set(result.factors) == set(FACTORS)
    assert result.protocol.n_real == NUM_REAL and result.protocol.n_fake == NUM_HELD_OUT
    assert result.protocol.weights_sha256 == SHAPES_CLASSIFIER_SHA256 and not result.protocol.standard


def test_noise_and_a_single_shape_generator_score_badly(shapes, held_out_result, real_payloads):
    _, held_out, labels = shapes
    noise = score(real_payloads, torch.randint(0, 256, (500, 3, 32, 32), dtype=torch.uint8))
    circles = score(real_payloads, held_out[labels == 0][:600])
    assert noise.validity < 0.2 and noise.fsd > 100 * held_out_result.fsd
    assert circles.factors["shape"].generated["circle"] > 0.97
    assert circles.factors["shape"].tv > 0.6 and circles.factors["shape"].coverage == pytest.approx(1 / 3)
    assert circles.factors["shape"].missing == ("square", "triangle")
    assert circles.fsd > 10 * held_out_result.fsd


@pytest.mark.xfail(
    strict=True,
    raises=AssertionError,
    reason="known weakness of shapes-classifier-v1: pixel noise of 13/255 turns half of the triangles into stars "
    "(benchmarks/RESULTS.md, 'Robustness'); the retrains that fixed it cost confidence on clean images, so v1 stays",
)
def test_mild_pixel_noise_does_not_change_the_shape_distribution(shapes, held_out_result, real_payloads):
    # A generator's samples are rarely noise-free. Noise of 13/255 leaves every shape plain to see, and the
    # shape shares must stay the data's.
    _, held_out, labels = shapes
    noise = torch.randn(held_out[:2000].shape, generator=torch.Generator().manual_seed(0)) * 13
    noisy = (held_out[:2000].float() + noise).round().clamp(0, 255).to(torch.uint8)
    _, logits = load_shapes_classifier()(prepare_shapes_images(noisy))
    for kind in range(3):
        assert (logits["shape"].argmax(1)[labels[:2000] == kind] == kind).float().mean().item() > 0.95, kind
    result = score(real_payloads, noisy)
    assert result.factors["shape"].tv < 0.05 and result.factors["shape"].generated["star"] < 0.02
    assert result.validity > 0.7  # softer than clean images (0.99), still mostly confident


def test_a_generator_that_drops_triangles_shows_it_per_kind(shapes, held_out_result, cache_dir):
    real, held_out, labels = shapes
    generator = ImageBank(held_out[labels != 2])
    # The real statistics come from the cache the first evaluation wrote (reading the images would fail).
    result = evaluate_shapes(Unreadable(real), generator, num_samples=1000, batch_size=250, cache_dir=cache_dir)
    shape = result.factors["shape"]
    assert shape.missing == ("triangle",) and shape.generated["triangle"] < 0.01
    assert shape.generated["circle"] == pytest.approx(0.5, abs=0.05)
    assert shape.tv == pytest.approx(1 / 3, abs=0.04)
    assert "shape_share_triangle" in result.scalars() and result.scalars()["shape_share_triangle"] < 0.01
    assert result.protocol.sample_seed == 0 and result.protocol.n_fake == 1000
    assert result.protocol.n_real == NUM_REAL


def test_fid_with_the_shapes_extractor_is_the_fsd(shapes):
    """evaluate(feature_extractor="shapes") runs FID's machinery on the classifier features: the same number."""
    real, held_out, _ = shapes
    real_images = torch.stack([real[i][0] for i in range(300)])
    fake_images = held_out[:200]
    fid = evaluate(real_images, fake_images, metrics=("fid",), feature_extractor="shapes", use_cache=False)
    fsd = evaluate_shapes(real_images, fake_images, use_cache=False)
    # Batch sizes differ (64 vs 256), which moves float32 convolution results in the last digits.
    assert fid.fid == pytest.approx(fsd.fsd, rel=1e-6)
    assert fid.protocol.extractor == fsd.protocol.extractor == "shapes-classifier-v1"
    assert fid.protocol.weights_sha256 == SHAPES_CLASSIFIER_SHA256


def test_16_px_grayscale_images_are_resized_and_scored_without_colour():
    dm = ShapesDataModule(image_size=16, channels=1, num_images=3000, val_fraction=0.5)
    real, _ = dm.split_dataset("train").to_tensors()
    fake, _ = dm.split_dataset("val").to_tensors()
    result = evaluate_shapes(real, fake)
    assert "colour" not in result.factors and "colour" not in result.protocol.factors
    assert result.factors["shape"].tv < 0.04 and result.factors["shape"].coverage == 1.0
    # At 16 px grayscale the classifier is less often sure (real validity about 0.77 against 0.99 at 32 px RGB):
    # validity is read against the real images' own.
    assert result.validity == pytest.approx(result.real_validity, abs=0.05) and result.real_validity > 0.7
    assert result.protocol.resize.startswith("grayscale->RGB")
    rgb64 = ShapesDataModule(image_size=64, num_images=200, val_fraction=0.5)
    result64 = evaluate_shapes(rgb64.split_dataset("train"), rgb64.split_dataset("val").to_tensors()[0])
    assert result64.factors["shape"].coverage == 1.0 and result64.validity > 0.9


def test_rejects_images_it_cannot_read():
    evaluator = ShapesEvaluator()
    with pytest.raises(ValueError, match="1 \\(grayscale\\) or 3 \\(RGB\\) channels, got 4"):
        evaluator.update_fake(torch.zeros(2, 4, 32, 32, dtype=torch.uint8))
    with pytest.raises(TypeError, match="uint8"):
        evaluator.update_real(torch.zeros(2, 3, 32, 32))
    with pytest.raises(ValueError, match="validity_threshold"):
        ShapesEvaluator(validity_threshold=1.5)


def test_callback_logs_shapes_metrics_and_writes_the_protocol(tmp_path):
    dm = ShapesDataModule(image_size=16, num_images=96, batch_size=16, val_fraction=0.0)
    model = GANModule(image_size=16, width=8, latent_dim=8)
    callback = ShapesMetricsCallback(num_samples=48, batch_size=16, cache_dir=tmp_path / "cache", sorted_grid=16)
    trainer = pl.Trainer(
        accelerator="cpu", max_epochs=2, limit_train_batches=2, logger=False, enable_progress_bar=False,
        enable_model_summary=False, enable_checkpointing=False, default_root_dir=str(tmp_path), callbacks=[callback],
    )
    trainer.fit(model, datamodule=dm)
    logged = {name: float(value) for name, value in trainer.callback_metrics.items() if name.startswith("val/")}
    assert {"val/fsd", "val/validity", "val/shape_tv", "val/shape_coverage", "val/colour_tv"} <= set(logged)
    assert {"val/shape_share_circle", "val/shape_share_square", "val/shape_share_triangle"} <= set(logged)
    assert logged["val/fsd"] == pytest.approx(callback.last_result.fsd)
    records = [json.loads(line) for line in (tmp_path / "shapes_metrics.jsonl").read_text().splitlines()]
    assert len(records) == 2 and records[-1]["protocol"]["extractor"] == "shapes-classifier-v1"
    assert len(list((tmp_path / "samples").glob("val_samples_by_shape_*.png"))) == 2
    assert records[-1]["protocol"]["n_real"] == 96 and records[-1]["protocol"]["n_fake"] == 48
    # The callback's number is the standalone evaluation of the same samples.
    direct = evaluate_shapes(dm.split_dataset("train"), model, num_samples=48, batch_size=16, use_cache=False)
    assert direct.fsd == pytest.approx(callback.last_result.fsd, rel=1e-9)
    with pytest.raises(TypeError, match="kid"):
        ShapesMetricsCallback(kid=True)


def _two_process_worker(rank: int, init_file: str, real: torch.Tensor, fake: torch.Tensor, out: str) -> None:
    import torch.distributed as dist

    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=2)
    try:
        evaluator = ShapesEvaluator()
        evaluator.update_real(real[rank::2])
        evaluator.update_fake(fake[rank::2])
        fed = evaluator.compute().to_dict()
        payloads = evaluator.real_payloads()  # a collective, as the cache writer calls it
        # As with a cache hit: process 0 installs the real statistics, process 1 keeps zeros.
        cached = ShapesEvaluator()
        if rank == 0:
            cached.load_real_payloads(payloads)
        cached.update_fake(fake[rank::2])
        if rank == 0:
            torch.save({"fed": fed, "cached": cached.compute().to_dict()}, out)
        else:
            cached.compute()
    finally:
        dist.destroy_process_group()


@pytest.mark.timeout(300)
def test_two_processes_reduce_to_the_single_process_values(shapes, tmp_path):
    _, held_out, labels = shapes
    real, fake = held_out[:400], held_out[400:700][labels[400:700] != 1]  # the fake side lacks squares
    single = ShapesEvaluator()
    single.update_real(real)
    single.update_fake(fake)
    expected = single.compute().to_dict()
    torch.multiprocessing.spawn(
        _two_process_worker, args=(str(tmp_path / "init"), real, fake, str(tmp_path / "out.pt")), nprocs=2
    )
    results = torch.load(tmp_path / "out.pt", weights_only=False)
    for result in results.values():
        assert result["fsd"] == pytest.approx(expected["fsd"], rel=1e-9)
        assert result["factors"] == expected["factors"]
        assert result["validity"] == expected["validity"]
        assert result["protocol"]["n_real"] == 400 and result["protocol"]["n_fake"] == fake.shape[0]


def test_sample_command_orders_a_grid_by_predicted_shape(tmp_path, capsys):
    from lightning_gen.cli import main

    out = tmp_path / "grid.png"
    assert main(["sample", "--model", "dcgan-shapes32", "--n", "16", "--seed", "0", "--out", str(out), "--sort-by-shape"]) == 0
    printed = capsys.readouterr().out
    line = next(line for line in printed.splitlines() if line.startswith("shapes in the grid, in order:"))
    counts = [int(part.rsplit(" ", 1)[1]) for part in line.split(":", 1)[1].split(",")]
    assert sum(counts) == 16 and out.is_file()
    order = ["circle", "square", "triangle", "star", "hexagon", "?"]
    kinds = [part.strip().rsplit(" ", 1)[0] for part in line.split(":", 1)[1].split(",")]
    assert kinds == sorted(kinds, key=order.index)  # grouped in the evaluator's order
