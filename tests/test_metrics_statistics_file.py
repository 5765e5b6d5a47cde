"""Portable ``.npz`` statistics files: ``lightning-gen fid-stats``, and a file as either side (issue 11 item 6)."""

from __future__ import annotations

import json

import lightning.pytorch as pl
import numpy as np
import pytest
from _metrics_fixtures import TinyDataModule, TinyFeatures, TinyGenerativeModule, make_images, register_tiny_extractor, write_image_folder

from lightning_gen.cli import main as lightning_gen_main
from lightning_gen.cli.fid import main as fid_main
from lightning_gen.metrics import FIDCallback, compute_statistics, evaluate, load_statistics, save_statistics

TINY = register_tiny_extractor()
COMMON = ["--extractor", TINY, "--device", "cpu", "--num-workers", "0", "--no-cache", "--batch-size", "8"]


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    root = tmp_path_factory.mktemp("stats")
    return {
        "a": write_image_folder(root / "a", make_images("blobs", 24, size=16)),
        "b": write_image_folder(root / "b", make_images("stripes", 20, size=16)),
        "root": root,
    }


def run_fid(capsys, real, fake):
    code = fid_main([str(real), str(fake), *COMMON, "--no-is", "--no-kid"])
    assert code == 0, capsys.readouterr().err
    return json.loads(capsys.readouterr().out)


def test_fid_stats_file_gives_the_same_fid_as_the_folder_on_either_side(folders, capsys):
    out = folders["root"] / "a-stats.npz"
    assert lightning_gen_main(["fid-stats", str(folders["a"]), "--out", str(out), *COMMON]) == 0
    capsys.readouterr()
    with np.load(out, allow_pickle=False) as data:  # the layout pytorch-fid and clean-fid read
        assert data["mu"].shape == (30,) and data["sigma"].shape == (30, 30) and data["mu"].dtype == np.float64
        protocol = json.loads(str(data["protocol"]))
    assert int(np.load(out)["n"]) == 24 and protocol["extractor"] == f"custom:{TinyFeatures.__qualname__}"
    assert len(protocol["weights_sha256"]) == 64 and protocol["real_resize"] == "native size"

    direct = run_fid(capsys, folders["a"], folders["b"])
    from_stats = run_fid(capsys, out, folders["b"])
    as_fake = run_fid(capsys, folders["b"], out)
    assert direct["fid"] > 1e-3
    assert from_stats["fid"] == pytest.approx(direct["fid"], rel=1e-10)
    # FID is symmetric; with 24 images in 30 dimensions the covariance is singular, and the other order of the
    # eigen-decomposition takes square roots of other solver noise (d * eps * |M|): ~1e-8 relative measured, and
    # bounded by ~1e-6 (see tests/test_metrics_sources.py::test_tensors_uint8_or_float_work_on_either_side).
    assert as_fake["fid"] == pytest.approx(direct["fid"], rel=1e-6)
    assert from_stats["protocol"]["split"] == str(out) and from_stats["protocol"]["n_real"] == 24
    assert as_fake["protocol"]["fake_source"] == f"statistics: {out}"

    # Two statistics files need no extractor at all.
    b_stats = save_statistics(folders["root"] / "b.npz", compute_statistics(folders["b"], feature_extractor=TINY,
                                                                             device="cpu", use_cache=False, num_workers=0))
    both = run_fid(capsys, out, b_stats)
    # b summed in other batches: other float64 rounding in the statistics, which the singular covariance (24 images
    # in 30 dimensions) turns into square roots of eigen-solver noise, as for the swapped order above.
    assert both["fid"] == pytest.approx(direct["fid"], rel=1e-6)


def test_a_bare_mu_sigma_file_is_accepted_with_a_note_and_other_metrics_are_skipped(folders, capsys):
    full = compute_statistics(folders["a"], feature_extractor=TINY, device="cpu", use_cache=False, num_workers=0)
    bare = folders["root"] / "bare.npz"
    np.savez_compressed(bare, mu=full.mu, sigma=full.sigma)  # what pytorch-fid --save-stats writes
    with pytest.warns(UserWarning, match="KID skipped"):
        code = fid_main([str(bare), str(folders["b"]), *COMMON, "--no-is"])
    assert code == 0
    result = json.loads(capsys.readouterr().out)
    assert result["kid"] is None and result["fid"] > 0 and result["protocol"]["n_real"] is None
    assert any("carries no protocol metadata" in note for note in result["protocol"]["notes"])
    assert any("kid skipped" in note for note in result["protocol"]["notes"])


def test_statistics_from_another_extractor_are_refused(folders, capsys):
    stats = compute_statistics(folders["a"], feature_extractor=TINY, device="cpu", use_cache=False, num_workers=0)
    other = dict(stats.protocol, weights_sha256="0" * 64)
    path = save_statistics(folders["root"] / "other.npz", type(stats)(stats.mu, stats.sigma, stats.count, other))
    assert fid_main([str(path), str(folders["b"]), *COMMON, "--no-is", "--no-kid"]) == 1
    assert "weights sha256 " + "0" * 64 in capsys.readouterr().err
    with pytest.raises(ValueError, match="'mu' and 'sigma'"):
        np.savez(folders["root"] / "wrong.npz", mean=np.zeros(3))
        load_statistics(folders["root"] / "wrong.npz")


def test_fid_callback_real_stats_equals_reading_the_data_module(tmp_path):
    datamodule = TinyDataModule(num_images=40, image_size=16)
    real_stats = save_statistics(
        tmp_path / "real.npz",
        compute_statistics(datamodule.images(), feature_extractor=TinyFeatures(), device="cpu", use_cache=False),
    )
    values = []
    for extra in ({}, {"real_stats": real_stats}):
        callback = FIDCallback(feature_extractor=TinyFeatures(), num_samples=24, batch_size=8, split="real",
                               cache_dir=tmp_path / "cache", progress=False, **extra)
        trainer = pl.Trainer(accelerator="cpu", max_epochs=1, limit_train_batches=1, logger=False,
                             enable_progress_bar=False, enable_model_summary=False, enable_checkpointing=False,
                             callbacks=[callback], default_root_dir=str(tmp_path))
        trainer.fit(TinyGenerativeModule(lr=0.0), datamodule=datamodule)
        values.append(callback.last_result)
    read, from_file = values
    assert from_file.fid == pytest.approx(read.fid, rel=1e-9)
    assert from_file.protocol.split == f"statistics file {real_stats}" and from_file.protocol.n_real == 40
    fake = make_images("stripes", 8, size=16)
    same = evaluate(real_stats, fake, feature_extractor=TinyFeatures(), metrics=("fid",), device="cpu")
    assert same.fid == pytest.approx(evaluate(datamodule.images(), fake, feature_extractor=TinyFeatures(),
                                              metrics=("fid",), device="cpu").fid, rel=1e-10)
