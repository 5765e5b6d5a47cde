"""``lightning-gen sweep``: grid expansion, resume, failure isolation, output files and evaluation-only runs.

Runs are tiny (16 px, width 8, four generator steps) and scored with a small fixed random convolution instead of
Inception: everything the sweep does besides running the extractor is independent of which one it is.
"""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path

import lightning.pytorch as pl
import pytest
import torch
import yaml
from PIL import Image
from torch import nn

from lightning_gen import sweep
from lightning_gen.sweep import SweepSettings, expand_runs, parse_grid, run_name, run_sweep

STEPS, EVAL_EVERY = 4, 2


class TinyFeatures(nn.Module):
    """uint8 (N, 3, H, W) -> (N, 12): channel means and maxima of a fixed, seeded random convolution."""

    num_features = 12

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 6, kernel_size=3, stride=2)
        generator = torch.Generator().manual_seed(0)
        with torch.no_grad():
            self.conv.weight.copy_(torch.randn(self.conv.weight.shape, generator=generator))
            self.conv.bias.zero_()

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.conv(images.float() / 127.5 - 1))
        return torch.cat([x.mean((2, 3)), x.amax((2, 3))], dim=1)


class PoisonDiscriminator(pl.Callback):
    """Fills the discriminator with NaN after the first generator step: the next loss is non-finite."""

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        if pl_module.generator_step == 1:
            with torch.no_grad():
                for parameter in pl_module.discriminator.parameters():
                    parameter.fill_(float("nan"))


class SimulatedKill(BaseException):
    """Stands in for the process being killed: not an Exception, so the sweep does not record it as a failure."""


class InterruptOnce(pl.Callback):
    """Stops training at ``at_step`` the first time (a marker file remembers that it happened)."""

    def __init__(self, marker: str, at_step: int = 3) -> None:
        self.marker = Path(marker)
        self.at_step = at_step

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        if pl_module.generator_step == self.at_step and not self.marker.exists():
            self.marker.touch()
            raise SimulatedKill(f"killed at generator step {self.at_step}")


def write_config(
    path: Path, model: str = "lightning_gen.GANModule", callbacks: list | None = None, **model_args
) -> str:
    config = {
        "seed_everything": 0,
        "trainer": {"accelerator": "cpu", "max_epochs": 1, "log_every_n_steps": 1, "callbacks": callbacks or []},
        "model": {
            "class_path": model,
            "init_args": {"image_size": 16, "latent_dim": 8, "width": 8, "num_sample_images": 4, **model_args},
        },
        "data": {
            "class_path": "lightning_gen.data.ShapesDataModule",
            "init_args": {"image_size": 16, "num_images": 80, "batch_size": 16, "num_workers": 0, "val_fraction": 0.2},
        },
    }
    path.write_text(yaml.safe_dump(config))
    return str(path)


def tiny_settings(cache_dir: Path, **changes) -> SweepSettings:
    options = dict(
        generator_steps=STEPS,
        eval_every=EVAL_EVERY,
        num_samples=20,
        num_real=20,
        kid_subset_size=10,
        is_splits=2,
        kid_subsets=5,
        cache_dir=str(cache_dir),
        accelerator="cpu",
    )
    return SweepSettings(**{**options, **changes})


# ------------------------------------------------------------------------------------------------ grid expansion


def test_parse_grid_expands_short_keys_and_keeps_bracketed_values():
    grid = parse_grid(
        [
            "model.loss=bce,hinge",
            "data.image_size=16",
            "model.init_args.betas_g=[0.5,0.9],[0.0,0.99]",
            "trainer.precision=32-true",
        ]
    )
    assert grid == {
        "model.init_args.loss": ["bce", "hinge"],
        "data.init_args.image_size": ["16"],
        "model.init_args.betas_g": ["[0.5,0.9]", "[0.0,0.99]"],
        "trainer.precision": ["32-true"],
    }


@pytest.mark.parametrize(
    "entry, message",
    [
        ("model.loss", "has no '='"),
        ("model.loss=bce,,hinge", "empty value"),
        ("seed_everything=0,1", "--seeds"),
        ("model..loss=bce", "not a dotted config key"),
    ],
)
def test_parse_grid_rejects_bad_entries_with_the_fix(entry, message):
    with pytest.raises(ValueError, match=message):
        parse_grid([entry])


def test_parse_grid_rejects_a_key_given_twice_in_short_and_long_form():
    with pytest.raises(ValueError, match="given twice"):
        parse_grid(["model.loss=bce", "model.init_args.loss=hinge"])


def test_expand_runs_crosses_configs_grid_and_seeds_and_applies_keys_where_they_fit(tmp_path):
    gan, vae = write_config(tmp_path / "gan.yaml"), write_config(tmp_path / "vae.yaml", model="lightning_gen.VAE")
    grid = parse_grid(["model.loss=bce,hinge", "model.n_critic=1,2", "model.width=8", "model.kl_warmup_steps=5"])
    runs = expand_runs([gan, vae], grid, seeds=[0, 1])
    gan_runs = [r for r in runs if r.label == "gan"]
    vae_runs = [r for r in runs if r.label == "vae"]
    assert len(gan_runs) == 2 * 2 * 2 and len(vae_runs) == 2  # the VAE takes neither loss nor n_critic
    assert [r.settings_text for r in gan_runs[::2]] == [
        "loss=bce, n_critic=1",
        "loss=bce, n_critic=2",
        "loss=hinge, n_critic=1",
        "loss=hinge, n_critic=2",
    ]
    assert [r.seed for r in gan_runs[:2]] == [0, 1]
    assert vae_runs[0].settings_text == "-"  # width and kl_warmup_steps have one value: fixed, not "changed"
    assert ("model.init_args.kl_warmup_steps", "5") in vae_runs[0].overrides
    assert all(key != "model.init_args.kl_warmup_steps" for key, _ in gan_runs[0].overrides)
    assert gan_runs[-1].cli_args() == [
        "--config", gan, "--model.init_args.loss=hinge", "--model.init_args.n_critic=2", "--model.init_args.width=8",
        "--seed_everything=1",
    ]  # fmt: skip


def test_expand_runs_names_a_key_that_no_config_takes(tmp_path):
    gan = write_config(tmp_path / "gan.yaml")
    with pytest.raises(ValueError, match=r"model.init_args.n_critc.*GANModule"):
        expand_runs([gan], parse_grid(["model.n_critc=1,2"]))
    with pytest.raises(FileNotFoundError, match="missing.yaml"):
        expand_runs([str(tmp_path / "missing.yaml")])


def test_run_names_are_stable_and_change_with_anything_that_changes_the_result(tmp_path):
    gan = write_config(tmp_path / "gan.yaml")
    spec = expand_runs([gan], parse_grid(["model.loss=bce,hinge"]), seeds=[3])[1]
    settings, extractor = tiny_settings(tmp_path), {"name": "x", "sha256": "ab"}
    name = run_name(spec, settings, extractor)
    assert name.startswith("gan_loss=hinge_seed3-") and name == run_name(spec, settings, extractor)
    assert run_name(spec, tiny_settings(tmp_path, num_samples=30), extractor) != name
    assert run_name(spec, settings, {"name": "x", "sha256": "cd"}) != name
    write_config(tmp_path / "gan.yaml", width=16)  # same path, new content
    assert run_name(spec, settings, extractor) != name


def test_settings_need_exactly_one_budget():
    with pytest.raises(ValueError, match="exactly one shared budget"):
        SweepSettings()
    with pytest.raises(ValueError, match="exactly one shared budget"):
        SweepSettings(generator_steps=10, epochs=1)
    with pytest.raises(ValueError, match="eval_every"):
        SweepSettings(epochs=1, eval_every=0)


# ------------------------------------------------------------------------------- one sweep, looked at several ways


@pytest.fixture(scope="module")
def swept(tmp_path_factory):
    """A sweep of a GAN (n_critic 1 and 2), a VAE and a GAN whose weights turn NaN, with its report."""
    root = tmp_path_factory.mktemp("sweep")
    gan, vae = write_config(root / "gan.yaml"), write_config(root / "vae.yaml", model="lightning_gen.VAE")
    nan = write_config(root / "nan.yaml", callbacks=[{"class_path": "test_sweep.PoisonDiscriminator"}])
    runs = expand_runs([gan, vae], parse_grid(["model.n_critic=1,2"])) + expand_runs([nan])
    settings = tiny_settings(root / "cache")
    results = run_sweep(runs, settings, root / "runs", feature_extractor=TinyFeatures(), progress=False)
    paths = sweep.write_report(results, root / "out", settings, command="lightning-gen sweep ...")
    return {
        "root": root,
        "runs": runs,
        "settings": settings,
        "results": results,
        "paths": paths,
        "configs": (gan, vae, nan),
    }


def test_every_run_is_evaluated_at_the_same_generator_steps(swept):
    finished = [r for r in swept["results"] if r.status == "finished"]
    assert [r.spec.label for r in finished] == ["gan", "gan", "vae"]
    for result in finished:
        assert [e["generator_step"] for e in result.evaluations] == [2, 4]
        assert all(torch.isfinite(torch.tensor([e["fid"], e["is"], e["kid"]])).all() for e in result.evaluations)
        assert result.evaluations[0]["protocol"]["extractor"] == "custom:TinyFeatures"
        assert result.info["generator_steps"] == STEPS and result.info["parameters"] > 0


def test_budget_counts_generator_steps_not_optimizer_steps(swept):
    n_critic_2 = next(r for r in swept["results"] if r.spec.settings_text == "n_critic=2")
    # Each batch is two discriminator steps and one generator step: global_step runs three times faster.
    assert [e["global_step"] for e in n_critic_2.evaluations] == [6, 12]


def test_a_failing_run_is_recorded_with_its_error_and_the_others_complete(swept):
    failed = [r for r in swept["results"] if r.status == "failed"]
    assert [r.spec.label for r in failed] == ["nan"]
    assert failed[0].error.startswith("FloatingPointError") and "non-finite" in failed[0].error
    run_dir = swept["root"] / "runs" / failed[0].name
    assert "FloatingPointError" in (run_dir / "error.txt").read_text()
    assert json.loads((run_dir / "run.json").read_text())["status"] == "failed"


def test_each_run_keeps_its_checkpoint_and_sample_grid(swept):
    for result in swept["results"]:
        run_dir = swept["root"] / "runs" / result.name
        if result.status == "finished":
            checkpoint = torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=True)
            assert checkpoint["lightning_gen"]["generator_step"] == STEPS
            with Image.open(run_dir / "samples.png") as grid:
                assert grid.size == (8 * 18 + 2, 8 * 18 + 2)  # 64 images of 16 px with 2 px padding


def test_results_csv_has_one_row_per_run_and_evaluation_point(swept):
    with open(swept["paths"]["csv"]) as handle:
        reader = csv.DictReader(handle)
        rows = list(reader)
    assert tuple(reader.fieldnames) == sweep.RESULT_COLUMNS
    assert len(rows) == 3 * 2 + 1  # three finished runs at two points, one failed run without any
    failed_row = next(row for row in rows if row["status"] == "failed")
    assert failed_row["fid"] == "" and failed_row["error"].startswith("FloatingPointError")
    first = rows[0]
    assert first["generator_step"] == "2" and float(first["fid"]) > 0 and float(first["images_per_second"]) > 0


def test_results_md_tabulates_every_run_and_states_the_protocol(swept):
    text = swept["paths"]["md"].read_text()
    table = [line for line in text.splitlines() if line.startswith("| `")]
    assert len(table) == len(swept["runs"])
    assert "| gan | n_critic=2 | 0 | finished |" in text
    assert "not comparable with published FIDs" in text and "custom:TinyFeatures" in text
    assert "## Failed runs" in text and "FloatingPointError" in text
    best_step, best = swept["results"][0].best_fid
    assert f"{best:.2f} ({best_step})" in table[0]


def test_plots_are_valid_pngs(swept):
    for key in ("fid_vs_steps", "best_fid"):
        with Image.open(swept["paths"][key]) as image:
            image.verify()
            assert image.format == "PNG" and min(image.size) > 100


def test_rerun_skips_finished_and_failed_runs_unless_asked(swept):
    before = {r.name: r.info["sessions"] for r in swept["results"]}
    again = run_sweep(
        swept["runs"], swept["settings"], swept["root"] / "runs", feature_extractor=TinyFeatures(), progress=False
    )
    assert {r.name: r.info["sessions"] for r in again} == before
    assert [r.evaluations for r in again] == [r.evaluations for r in swept["results"]]
    retried = run_sweep(
        swept["runs"][-1:],
        swept["settings"],
        swept["root"] / "runs",
        feature_extractor=TinyFeatures(),
        progress=False,
        retry_failed=True,
    )
    assert retried[0].status == "failed" and retried[0].info["sessions"] == 2


def test_eval_only_scores_a_checkpoint_like_the_training_run_did(swept, tmp_path):
    trained = swept["results"][0]
    checkpoint = swept["root"] / "runs" / trained.name / "checkpoints" / "last.ckpt"
    gan_config = swept["configs"][0]
    results = sweep.evaluate_sources(
        [str(checkpoint)], gan_config, swept["settings"], tmp_path, feature_extractor=TinyFeatures(), progress=False
    )
    assert results[0].status == "finished", results[0].error
    assert results[0].spec.label == trained.name  # runs/<name>/checkpoints/last.ckpt is named after its run
    (evaluation,) = results[0].evaluations
    final = trained.evaluations[-1]
    # Same weights, same latents, same real statistics, same extractor: the same numbers.
    assert evaluation["generator_step"] == STEPS
    assert evaluation["fid"] == pytest.approx(final["fid"], rel=1e-6)
    assert evaluation["kid"] == pytest.approx(final["kid"], rel=1e-6)


def test_cli_report_only_and_dry_run_reuse_the_run_folders(swept, tmp_path, capsys):
    gan, vae, _ = swept["configs"]
    argv = [
        "--config", gan, "--config", vae, "--grid", "model.n_critic=1,2", "--generator-steps", str(STEPS),
        "--eval-every", str(EVAL_EVERY), "--num-samples", "20", "--num-real", "20", "--kid-subset-size", "10",
        "--is-splits", "2", "--kid-subsets", "5", "--feature-extractor", "test_sweep:TinyFeatures",
        "--runs-dir", str(swept["root"] / "runs"), "--out", str(tmp_path / "report"), "--no-progress",
    ]  # fmt: skip
    assert sweep.main([*argv, "--dry-run"]) == 0
    listed = capsys.readouterr().out.splitlines()
    assert len(listed) == 4 and all(line.rstrip().endswith("finished") for line in listed[:3])
    assert sweep.main([*argv, "--report-only"]) == 0
    text = (tmp_path / "report" / "results.md").read_text()
    assert text.count("| finished |") == 3 and "lightning-gen sweep --config" in text


# ---------------------------------------------------------------------------------------------------- resume


def test_an_interrupted_run_resumes_from_its_last_checkpoint(tmp_path):
    config = write_config(
        tmp_path / "gan.yaml",
        callbacks=[{"class_path": "test_sweep.InterruptOnce", "init_args": {"marker": str(tmp_path / "killed")}}],
    )
    runs, settings = expand_runs([config]), tiny_settings(tmp_path / "cache")
    with pytest.raises(SimulatedKill):
        run_sweep(runs, settings, tmp_path / "runs", feature_extractor=TinyFeatures(), progress=False)
    (result,) = sweep.load_results(
        runs, settings, tmp_path / "runs", sweep.extractor_identity(settings, TinyFeatures())
    )
    assert result.status == "interrupted"
    assert [e["generator_step"] for e in result.evaluations] == [2]  # checkpointed right after this evaluation

    (result,) = run_sweep(runs, settings, tmp_path / "runs", feature_extractor=TinyFeatures(), progress=False)
    assert result.status == "finished"
    assert result.info["session_start_steps"] == [0, 2]  # the second session started from the checkpoint
    assert [e["generator_step"] for e in result.evaluations] == [2, 4]
    # Timings travel in the checkpoint: the batches up to step 2 count once, the one lost with the kill not at all.
    assert result.info["train_images"] == STEPS * 16


def test_an_epoch_budget_also_evaluates_the_end_of_training_off_the_schedule(tmp_path):
    gan = write_config(tmp_path / "gan.yaml")
    settings = tiny_settings(tmp_path / "cache", generator_steps=None, epochs=2, eval_every=3)
    (result,) = run_sweep(
        expand_runs([gan]), settings, tmp_path / "runs", feature_extractor=TinyFeatures(), progress=False
    )
    assert result.status == "finished", result.error
    # Four batches per epoch: the schedule gives steps 3 and 6, and step 8 is evaluated because training ends there.
    assert [e["generator_step"] for e in result.evaluations] == [3, 6, 8]


# -------------------------------------------------------------------------------------------- command-line checks


def test_cli_usage_errors_name_the_fix(tmp_path, capsys):
    gan = write_config(tmp_path / "gan.yaml")
    with pytest.raises(SystemExit):
        sweep.main(["--config", gan])
    assert "--generator-steps N or --epochs N" in capsys.readouterr().err
    assert (
        sweep.main(
            [
                "--config",
                gan,
                "--generator-steps",
                "2",
                "--grid",
                "model.los=bce",
                "--feature-extractor",
                "test_sweep:TinyFeatures",
            ]
        )
        == 2
    )
    assert "model.init_args.los" in capsys.readouterr().err
    assert (
        sweep.main(
            [
                "--config",
                gan,
                "--generator-steps",
                "2",
                "--shard",
                "2/2",
                "--feature-extractor",
                "test_sweep:TinyFeatures",
            ]
        )
        == 2
    )
    assert "0 <= I < N" in capsys.readouterr().err


def test_shards_split_the_runs_between_processes():
    assert sweep._parse_shard("1/3") == (1, 3)
    indices = [list(range(10))[i::3] for i in range(3)]
    assert sorted(sum(indices, [])) == list(range(10))


def test_devices_start_one_process_per_device_and_the_parent_writes_the_report(tmp_path, monkeypatch):
    # Two "GPUs" as far as the parent can tell; the children train on the CPU (--accelerator cpu), which exercises
    # everything but CUDA itself: one process per device, each with its shard, and the report of all runs.
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(Path(__file__).parent), os.environ.get("PYTHONPATH", "")]))
    monkeypatch.setenv("OMP_NUM_THREADS", "1")  # two processes on two cores
    gan = write_config(tmp_path / "gan.yaml")
    argv = [
        "--config", gan, "--grid", "model.n_critic=1,2", "--generator-steps", "2", "--num-samples", "20",
        "--num-real", "20", "--kid-subset-size", "10", "--is-splits", "2", "--kid-subsets", "5",
        "--feature-extractor", "test_sweep:TinyFeatures", "--accelerator", "cpu", "--devices", "2",
        "--out", str(tmp_path / "out"), "--no-progress", "--no-plots",
    ]  # fmt: skip
    assert sweep.main(argv) == 0
    runs_dir = tmp_path / "out" / "runs"
    assert sorted(p.name for p in runs_dir.glob("device*.log")) == ["device0.log", "device1.log"]
    statuses = [json.loads(p.read_text())["status"] for p in runs_dir.glob("*/run.json")]
    assert statuses == ["finished", "finished"]
    assert (tmp_path / "out" / "results.md").read_text().count("| finished |") == 2


@pytest.mark.skipif(torch.cuda.device_count() > 8, reason="needs fewer than 9 visible GPUs")
def test_devices_beyond_the_visible_gpus_are_refused(tmp_path, capsys):
    gan = write_config(tmp_path / "gan.yaml")
    argv = [
        "--config",
        gan,
        "--generator-steps",
        "2",
        "--feature-extractor",
        "test_sweep:TinyFeatures",
        "--out",
        str(tmp_path),
    ]
    assert sweep.main([*argv, "--devices", "0,9"]) == 2
    assert "are visible" in capsys.readouterr().err
