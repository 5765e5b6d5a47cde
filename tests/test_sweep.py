"""``lightning-gen sweep`` on Optuna: grid and search parsing, grid expansion into trials, trials that train, fail,
get pruned, die and are retried, workers sharing one journal file or SQLite database, the report, version changes.

Runs are tiny (16 px, width 8, a few generator steps) and scored with a small fixed random convolution instead of
Inception: everything the sweep does besides running the extractor is independent of which one it is. The data
module runs without loader workers here: these tests are about the sweep, and each worker process costs seconds.
Multi-process tests are few: two workers on a journal file and on SQLite, a killed worker, trial processes.
"""

from __future__ import annotations

import csv
import os
import signal
import subprocess
import sys
from pathlib import Path

import lightning.pytorch as pl
import optuna
import pytest
import torch
import yaml
from optuna.trial import TrialState
from PIL import Image
from torch import nn

import lightning_gen.sweep.study as sweep_study
from lightning_gen.cli import run_lightning_cli
from lightning_gen.cli.sweep import main as sweep_main
from lightning_gen.sweep import (
    SweepSettings,
    SweepSpec,
    create_or_join,
    enqueue_reruns,
    enqueue_retries,
    in_process_executor,
    open_sweep,
    parse_grid,
    parse_search,
    run_worker,
    stale_trials,
    write_report,
)
from lightning_gen.sweep.trial import run_dir_name

STEPS, EVAL_EVERY = 4, 2
TESTS = str(Path(__file__).parent)


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


class LogScore(pl.Callback):
    """Logs a constant ``val/score`` after every batch: an objective whose ranking a test knows in advance."""

    def __init__(self, score: float) -> None:
        self.score = score

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        pl_module.log("val/score", self.score)


class DieOnce(pl.Callback):
    """Ends the whole process abruptly at ``at_step`` the first time (a marker file remembers that it happened):
    ``signal`` 9 stands for a worker killed by the OOM killer or a pre-empted node, ``exit_code`` for a crash."""

    def __init__(self, marker: str, at_step: int = 3, kill: bool = True) -> None:
        self.marker, self.at_step, self.kill = Path(marker), at_step, kill

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        if pl_module.generator_step == self.at_step and not self.marker.exists():
            self.marker.touch()
            if self.kill:
                os.kill(os.getpid(), signal.SIGKILL)
            os._exit(3)


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
        generator_steps=STEPS, eval_every=EVAL_EVERY, num_samples=20, num_real=20, kid_subset_size=10, is_splits=2,
        kid_subsets=5, cache_dir=str(cache_dir), accelerator="cpu", feature_extractor="test_sweep:TinyFeatures",
    )  # fmt: skip
    return SweepSettings(**{**options, **changes})


TINY_ARGS = [
    "--num-samples", "20", "--num-real", "20", "--kid-subset-size", "10", "--is-splits", "2", "--kid-subsets", "5",
    "--feature-extractor", "test_sweep:TinyFeatures", "--accelerator", "cpu", "--no-plots",
]  # fmt: skip


def subprocess_env(tmp_path: Path) -> dict[str, str]:
    """Child processes import this module (its callbacks and TinyFeatures) and share one thread each."""
    return {
        **os.environ, "PYTHONPATH": os.pathsep.join([TESTS, os.environ.get("PYTHONPATH", "")]), "OMP_NUM_THREADS": "1",
        "LIGHTNING_GEN_CACHE": str(tmp_path / "cache"), "PYTHONWARNINGS": "ignore",
    }  # fmt: skip


def run_in_process(sweep, runs_dir: Path) -> list[int]:
    return run_worker(sweep, in_process_executor(runs_dir, run_lightning_cli))


# ------------------------------------------------------------------------------------------------ parsing


def test_parse_grid_expands_short_keys_and_keeps_bracketed_values():
    grid = parse_grid(["model.loss=bce,hinge", "data.image_size=16", "model.init_args.betas_g=[0.5,0.9],[0.0,0.99]"])
    assert grid == {
        "model.init_args.loss": ["bce", "hinge"],
        "data.init_args.image_size": ["16"],
        "model.init_args.betas_g": ["[0.5,0.9]", "[0.0,0.99]"],
    }


@pytest.mark.parametrize(
    "parse, entry, message",
    [
        (parse_grid, "model.loss", "has no '='"),
        (parse_grid, "model.loss=bce,,hinge", "empty value"),
        (parse_grid, "seed_everything=0,1", "--seeds"),
        (parse_search, "model.lr_g=1e-3:1e-4", "must be below HIGH"),
        (parse_search, "model.lr_g=0:1:log", "needs LOW > 0"),
        (parse_search, "model.lr_g=1e-4:1e-3:ln", "may only be 'log'"),
        (parse_search, "model.loss=bce", "neither a range"),
    ],
)
def test_parsers_reject_bad_entries_with_the_fix(parse, entry, message):
    with pytest.raises(ValueError, match=message):
        parse([entry])


def test_parse_search_makes_float_int_log_and_categorical_dimensions():
    space = parse_search(["model.lr_g=1e-4:1e-3:log", "model.n_critic=1:5", "model.loss=bce,hinge"])
    assert space["model.init_args.lr_g"] == optuna.distributions.FloatDistribution(1e-4, 1e-3, log=True)
    assert space["model.init_args.n_critic"] == optuna.distributions.IntDistribution(1, 5)
    assert space["model.init_args.loss"] == optuna.distributions.CategoricalDistribution(["bce", "hinge"])


# ------------------------------------------------------------------------------------------ grid into trials


def test_a_grid_becomes_one_waiting_trial_per_configuration_and_seed(tmp_path):
    gan, vae = write_config(tmp_path / "gan.yaml"), write_config(tmp_path / "vae.yaml", model="lightning_gen.VAE")
    spec = SweepSpec(
        configs=(gan, vae), settings=tiny_settings(tmp_path), seeds=(0, 1),
        grid=parse_grid(["model.loss=bce,hinge", "model.n_critic=1,2", "model.kl_warmup_steps=5"]),
    )  # fmt: skip
    assert [c.describe(spec.varied) for c in spec.configurations()] == [
        "loss=bce, n_critic=1", "loss=bce, n_critic=2", "loss=hinge, n_critic=1", "loss=hinge, n_critic=2", "-",
    ]  # the VAE takes neither loss nor n_critic; kl_warmup_steps has one value: fixed, not "changed"  # fmt: skip
    sweep = create_or_join(spec, str(tmp_path / "study.journal"))
    waiting = sweep.trials([TrialState.WAITING])
    assert len(waiting) == 5 * 2
    assert isinstance(sweep.study.sampler, optuna.samplers.GridSampler)
    assert isinstance(sweep.study.pruner, optuna.pruners.NopPruner)  # a grid wants its whole table
    fixed = [(t.system_attrs["fixed_params"], t.user_attrs["seed"]) for t in waiting]
    first = {"config": "gan", "loss": "bce", "n_critic": "1"}
    assert fixed[:2] == [(first, 0), (first, 1)]  # seeds are repeats of each configuration
    assert fixed[-1] == ({"config": "vae", "kl_warmup_steps": "5"}, 1)
    # Joining again with the same command adds nothing; a different sweep on the same storage is refused.
    assert len(create_or_join(spec, str(tmp_path / "study.journal")).trials()) == 10
    other = SweepSpec(configs=(gan,), settings=tiny_settings(tmp_path), grid=parse_grid(["model.loss=bce,hinge"]))
    with pytest.raises(ValueError, match="holds a different sweep.*another --out or --study-name"):
        create_or_join(other, str(tmp_path / "study.journal"))


def test_keys_no_config_takes_and_misused_options_are_refused(tmp_path):
    gan = write_config(tmp_path / "gan.yaml")
    with pytest.raises(ValueError, match=r"model.init_args.n_critc.*GANModule"):
        SweepSpec(configs=(gan,), settings=tiny_settings(tmp_path), grid=parse_grid(["model.n_critc=1,2"]))
    with pytest.raises(ValueError, match="--trials N"):
        SweepSpec(configs=(gan,), settings=tiny_settings(tmp_path), search=parse_search(["model.lr_g=1e-4:1e-3"]))
    with pytest.raises(ValueError, match="cannot also cross grid values"):
        SweepSpec(configs=(gan,), settings=tiny_settings(tmp_path), grid=parse_grid(["model.loss=bce,hinge"]),
                  search=parse_search(["model.lr_g=1e-4:1e-3"]), trials=2)  # fmt: skip
    with pytest.raises(ValueError, match="exactly one shared budget"):
        SweepSettings()


# ------------------------------------------------------------------------------- one sweep, looked at several ways


@pytest.fixture(scope="module")
def swept(tmp_path_factory):
    """A grid of a GAN (n_critic 1 and 2) and a GAN whose weights turn NaN, run in this process, with its report."""
    root = tmp_path_factory.mktemp("sweep")
    sys.path.insert(0, TESTS)
    gan = write_config(root / "gan.yaml")
    nan = write_config(root / "nan.yaml", callbacks=[{"class_path": "test_sweep.PoisonDiscriminator"}])
    spec = SweepSpec(
        configs=(gan, nan), settings=tiny_settings(root / "cache"), grid=parse_grid(["model.n_critic=1,2"])
    )
    sweep = create_or_join(spec, str(root / "study.journal"))
    ran = run_in_process(sweep, root / "runs")
    paths = write_report(sweep, root / "out", command="lightning-gen sweep ...")
    return {"root": root, "sweep": sweep, "ran": ran, "paths": paths, "trials": sweep.study.get_trials()}


def test_every_trial_runs_once_and_is_evaluated_at_the_same_generator_steps(swept):
    trials = swept["trials"]
    assert swept["ran"] == [0, 1, 2, 3] and len(trials) == 4
    assert [t.state for t in trials] == [TrialState.COMPLETE] * 2 + [TrialState.FAIL] * 2
    for trial in trials[:2]:
        evaluations = trial.user_attrs["evaluations"]
        assert [e["generator_step"] for e in evaluations] == [2, 4]
        assert trial.intermediate_values == {2: evaluations[0]["fid"], 4: evaluations[1]["fid"]}
        assert trial.value == evaluations[-1]["fid"] and all(e["kid"] is not None for e in evaluations)
        assert trial.user_attrs["library_version"] == sweep_study.current_version()
        assert "n_critic: " + trial.params["n_critic"] in trial.user_attrs["config"]  # the resolved config
        assert trial.user_attrs["generator_steps"] == STEPS and trial.user_attrs["parameters"] > 0


def test_budget_counts_generator_steps_not_optimizer_steps(swept):
    evaluations = swept["trials"][1].user_attrs["evaluations"]  # n_critic=2
    assert [e["global_step"] for e in evaluations] == [6, 12]  # two discriminator and one generator step per batch


def test_a_failing_trial_is_recorded_with_its_error_and_the_others_complete(swept):
    failed = swept["trials"][2]
    assert failed.user_attrs["error"].startswith("FloatingPointError") and "non-finite" in failed.user_attrs["error"]
    assert "FloatingPointError" in (Path(failed.user_attrs["run_dir"]) / "error.txt").read_text()


def test_each_trial_keeps_its_checkpoint_and_sample_grid(swept):
    run_dir = Path(swept["trials"][0].user_attrs["run_dir"])
    checkpoint = torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=False)
    assert checkpoint["lightning_gen"]["generator_step"] == STEPS
    with Image.open(run_dir / "samples.png") as grid:
        assert grid.size == (8 * 18 + 2, 8 * 18 + 2)  # 64 images of 16 px with 2 px padding


def test_report_files_tabulate_trials_and_configurations(swept):
    with open(swept["paths"]["csv"]) as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 2 * 2 + 2  # two trials at two points, two failed ones without any
    assert rows[0]["generator_step"] == "2" and float(rows[0]["fid"]) > 0 and float(rows[0]["images_per_second"]) > 0
    assert rows[-1]["state"] == "fail" and rows[-1]["error"].startswith("FloatingPointError")
    text = swept["paths"]["md"].read_text()
    assert "| 1 | gan | n_critic=2 | - | complete |" in text
    assert "## Configurations, best first" in text and "## Failed trials" in text
    for key in ("fid_vs_steps", "best_fid"):
        with Image.open(swept["paths"][key]) as image:
            image.verify()
            assert image.format == "PNG" and min(image.size) > 100


def test_a_version_change_is_reported_and_rerun_stale_enqueues_each_once(swept, monkeypatch):
    sweep = swept["sweep"]
    assert stale_trials(sweep) == []
    monkeypatch.setattr(sweep_study, "current_version", lambda: "9.9.9")
    assert [t.number for t in stale_trials(sweep)] == [0, 1]  # failed trials are not "finished by" a version
    text = write_report(sweep, swept["root"] / "stale", plots=False)["md"].read_text()
    assert "(stale)" in text and "--rerun-stale" in text and "not 9.9.9" in text
    assert enqueue_reruns(sweep) == [0, 1] and enqueue_reruns(sweep) == []
    reruns = sweep.trials([TrialState.WAITING])
    assert [(t.user_attrs["rerun_of"], t.system_attrs["fixed_params"]) for t in reruns] == [
        (0, swept["trials"][0].params), (1, swept["trials"][1].params),
    ]  # fmt: skip
    assert stale_trials(sweep) == []  # superseded by their reruns
    assert enqueue_retries(sweep) == [2, 3] and enqueue_retries(sweep) == []  # --retry-failed, once as well
    # A rerun under the new version trains in a fresh folder instead of resuming the old version's checkpoint.
    assert run_dir_name("gan", swept["trials"][0].params, None) not in swept["trials"][0].user_attrs["run_dir"]


def test_a_search_samples_configurations_and_repeats_each_for_every_seed(tmp_path):
    sys.path.insert(0, TESTS)
    gan = write_config(tmp_path / "gan.yaml")
    spec = SweepSpec(
        configs=(gan,), settings=tiny_settings(tmp_path / "cache", generator_steps=1, eval_every=None), seeds=(0, 1),
        search=parse_search(["model.lr_g=1e-4:1e-2:log"]), trials=2,
    )  # fmt: skip
    sweep = create_or_join(spec, str(tmp_path / "study.journal"), sampler="tpe")
    assert isinstance(sweep.study.sampler, optuna.samplers.TPESampler)
    assert isinstance(sweep.study.pruner, optuna.pruners.MedianPruner)  # a search prunes by default
    assert run_in_process(sweep, tmp_path / "runs") == [0, 1, 2, 3]
    trials = sweep.study.get_trials()
    assert all(t.state == TrialState.COMPLETE for t in trials)
    assert [t.user_attrs["seed"] for t in trials] == [0, 1, 0, 1]
    assert trials[0].params == trials[1].params != trials[2].params == trials[3].params  # seeds repeat a sample
    assert 1e-4 <= trials[0].params["lr_g"] <= 1e-2
    paths = write_report(sweep, tmp_path / "out")
    for key in ("param_importances", "optimization_history"):
        with Image.open(paths[key]) as image:
            assert image.format == "PNG"
    # Joining with more --trials extends the search; the finished configurations stay.
    more = SweepSpec(configs=(gan,), settings=spec.settings, seeds=(0, 1), search=spec.search, trials=3)
    assert create_or_join(more, str(tmp_path / "study.journal")).info["trials"] == 3


def test_workers_of_a_search_sample_different_configurations(tmp_path):
    """Each worker has its own sampler; seeded alike, they would all draw the same start-up configurations."""
    gan = write_config(tmp_path / "gan.yaml")
    spec = SweepSpec(configs=(gan,), settings=tiny_settings(tmp_path), search=parse_search(["model.lr_g=1e-4:1e-2:log"]),
                     trials=4)  # fmt: skip
    location = str(tmp_path / "study.journal")
    create_or_join(spec, location)
    first, second = (sweep_study._new_search_trial(open_sweep(location)) for _ in range(2))
    assert first.params["lr_g"] != second.params["lr_g"]
    assert len(open_sweep(location).trials()) == 2


@pytest.mark.parametrize("backend", ["journal", "sqlite"])
def test_a_trial_another_worker_finished_since_the_waiting_list_was_read_is_skipped(tmp_path, monkeypatch, backend):
    """The race behind a worker that exited 1 when two started side by side on tiny trials: its list of waiting
    trials was read before the other worker claimed and finished the first one, and claiming a finished trial
    raises in Optuna instead of returning False."""
    spec = SweepSpec(configs=(write_config(tmp_path / "gan.yaml"),), settings=tiny_settings(tmp_path), seeds=(0, 1))
    location = str(tmp_path / "study.journal") if backend == "journal" else f"sqlite:///{tmp_path / 'study.db'}"
    create_or_join(spec, location)
    late, other = open_sweep(location), open_sweep(location)
    snapshot = late.trials([TrialState.WAITING])  # what the late worker read
    taken = sweep_study._pop_waiting(other)  # the other worker claims trial 0 and finishes it
    other.study.tell(taken, 1.0)
    monkeypatch.setattr(type(late), "trials", lambda self, states=None: snapshot)
    trial = sweep_study._pop_waiting(late)
    assert (taken.number, trial.number) == (0, 1)
    assert [t.state for t in late.study.get_trials()] == [TrialState.COMPLETE, TrialState.RUNNING]


# ---------------------------------------------------------------------------------------------------- pruning


def test_the_pruner_stops_a_trial_that_reports_worse_values(tmp_path):
    sys.path.insert(0, TESTS)
    good = write_config(
        tmp_path / "good.yaml", callbacks=[{"class_path": "test_sweep.LogScore", "init_args": {"score": 1.0}}]
    )
    bad = write_config(
        tmp_path / "bad.yaml", callbacks=[{"class_path": "test_sweep.LogScore", "init_args": {"score": 5.0}}]
    )
    settings = tiny_settings(
        tmp_path / "cache", objective="score", direction="minimize", inception_score=False, kid=False
    )
    sweep = create_or_join(SweepSpec(configs=(good, bad), settings=settings), str(tmp_path / "study.journal"),
                           pruner="median", pruner_startup_trials=1)  # fmt: skip
    run_in_process(sweep, tmp_path / "runs")
    first, second = sweep.study.get_trials()
    assert first.state == TrialState.COMPLETE and first.intermediate_values == {2: 1.0, 4: 1.0}
    assert second.state == TrialState.PRUNED
    assert [e["generator_step"] for e in second.user_attrs["evaluations"]] == [2]  # stopped at the first report
    assert "score=5.0 at generator step 2" in second.user_attrs["pruned"]
    assert second.user_attrs["train_images"] == 2 * 16  # its timings are kept for the report


# ------------------------------------------------------------------------------------------- several processes


@pytest.mark.parametrize("backend", ["journal", "sqlite"])
def test_two_workers_on_one_storage_run_every_trial_of_a_grid_exactly_once(tmp_path, monkeypatch, backend):
    """Journal: ``--workers 2`` starts both workers. SQLite: two copies of the same command started side by side."""
    gan = write_config(tmp_path / "gan.yaml")
    storage = str(tmp_path / "study.journal") if backend == "journal" else f"sqlite:///{tmp_path / 'study.db'}"
    argv = [
        "--config", gan, "--grid", "model.n_critic=1,2", "--seeds", "0,1", "--generator-steps", "1", *TINY_ARGS,
        "--storage", storage, "--out", str(tmp_path / "out"), "--in-process",
    ]  # fmt: skip
    if backend == "journal":
        for name, value in subprocess_env(tmp_path).items():
            monkeypatch.setenv(name, value)
        assert sweep_main([*argv, "--workers", "2"]) == 0
        outputs = [(tmp_path / "out" / "runs" / f"worker{i}.log").read_text() for i in range(2)]
        assert "| 3 | gan | n_critic=2 | 1 | complete |" in (tmp_path / "out" / "results.md").read_text()
    else:
        command = [sys.executable, "-m", "lightning_gen.cli", "sweep", *argv, "--no-report"]
        workers = [
            subprocess.Popen(command, env=subprocess_env(tmp_path), stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
            for _ in range(2)
        ]  # started side by side: both create the database, its tables and the study at the same instant
        outputs = [worker.communicate(timeout=240)[0].decode() for worker in workers]
        # The end of a failed worker's output (its traceback) fits in the assertion message that pytest shows.
        failed = ["\n".join(out.splitlines()[-40:]) for worker, out in zip(workers, outputs) if worker.returncode]
        assert not failed, "\n----\n".join(failed)
    trials = open_sweep(storage).study.get_trials()
    assert len(trials) == 4 and all(t.state == TrialState.COMPLETE for t in trials)
    assert sorted((t.params["n_critic"], t.user_attrs["seed"]) for t in trials) == [
        ("1", 0),
        ("1", 1),
        ("2", 0),
        ("2", 1),
    ]
    # Each trial was trained in one session from step 0, by one worker (no second start, no duplicate trial).
    assert all(t.user_attrs["session_start_steps"] == [0] for t in trials)
    ran = [line for output in outputs for line in output.splitlines() if line.startswith("trial ")]
    assert sorted(line.split(" ")[1] for line in ran) == ["0", "1", "2", "3"]


def test_a_killed_workers_trial_is_retried_and_resumes_from_its_checkpoint(tmp_path):
    sys.path.insert(0, TESTS)
    config = write_config(tmp_path / "gan.yaml", callbacks=[
        {"class_path": "test_sweep.DieOnce", "init_args": {"marker": str(tmp_path / "died")}}])  # fmt: skip
    argv = [
        sys.executable, "-m", "lightning_gen.cli", "sweep", "--config", config, "--generator-steps", str(STEPS),
        "--eval-every", str(EVAL_EVERY), *TINY_ARGS, "--out", str(tmp_path / "out"), "--in-process", "--no-report",
    ]  # fmt: skip
    killed = subprocess.run(argv, env=subprocess_env(tmp_path), capture_output=True, timeout=240)
    assert killed.returncode == -signal.SIGKILL, killed.stdout.decode() + killed.stderr.decode()
    sweep = open_sweep(str(tmp_path / "out" / "study.journal"))
    (orphan,) = sweep.study.get_trials()
    assert orphan.state == TrialState.RUNNING  # nobody told the study: the process was killed

    ran = run_in_process(sweep, tmp_path / "out" / "runs")  # the same sweep, run again
    dead, retry = sweep.study.get_trials()
    assert ran == [1] and dead.state == TrialState.FAIL and dead.user_attrs["error"].startswith("WorkerLost")
    assert retry.state == TrialState.COMPLETE and retry.user_attrs["retry_of"] == 0
    assert retry.user_attrs["session_start_steps"] == [0, 2]  # resumed from the checkpoint taken at step 2
    assert [e["generator_step"] for e in retry.user_attrs["evaluations"]] == [2, 4]
    assert retry.user_attrs["train_images"] == STEPS * 16  # the batch lost with the kill is not counted


def test_trials_run_in_processes_of_their_own_and_a_crash_fails_only_its_trial(tmp_path, monkeypatch, capsys):
    crash = write_config(tmp_path / "crash.yaml", callbacks=[
        {"class_path": "test_sweep.DieOnce", "init_args": {"marker": str(tmp_path / "crashed"), "at_step": 1,
                                                           "kill": False}}])  # fmt: skip
    gan = write_config(tmp_path / "gan.yaml")
    for name, value in subprocess_env(tmp_path).items():
        monkeypatch.setenv(name, value)
    argv = ["--config", crash, "--config", gan, "--generator-steps", "2", *TINY_ARGS, "--out", str(tmp_path / "out")]
    assert sweep_main(argv) == 1  # some trial failed
    crashed, trained = open_sweep(str(tmp_path / "out" / "study.journal")).study.get_trials()
    assert crashed.state == TrialState.FAIL and "exited with code 3" in crashed.user_attrs["error"]
    assert trained.state == TrialState.COMPLETE and trained.user_attrs["worker"]["pid"] != os.getpid()
    assert (tmp_path / "out" / "runs" / "logs" / "trial-1.log").is_file()
    (tmp_path / "out" / "results.md").unlink()
    assert sweep_main([*argv, "--report-only"]) == 0
    text = (tmp_path / "out" / "results.md").read_text()
    assert "| 1 | gan | - | - | complete |" in text and "TrialProcessError" in text


def test_workers_get_one_gpu_each_or_as_many_as_a_ddp_trial_needs(monkeypatch):
    from lightning_gen.cli.sweep import _gpu_groups

    monkeypatch.setattr(torch.cuda, "device_count", lambda: 4)
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    assert _gpu_groups(None, None) == ["0", "1", "2", "3"]  # default: one worker per visible GPU
    assert _gpu_groups(None, 2) == ["0,1", "2,3"]  # --devices 2: DDP inside each trial, two GPUs per worker
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "4,5,6,7")
    assert _gpu_groups(2, None) == ["4", "5"]
    with pytest.raises(ValueError, match="needs 6 GPUs; 4 are visible"):
        _gpu_groups(3, 2)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 0)
    assert _gpu_groups(3, None) == [None] * 3  # CPU workers


def test_cli_usage_errors_name_the_fix(tmp_path, capsys):
    gan = write_config(tmp_path / "gan.yaml")
    with pytest.raises(SystemExit):
        sweep_main(["--config", gan])
    assert "--generator-steps N or --epochs N" in capsys.readouterr().err
    assert (
        sweep_main(["--config", gan, "--generator-steps", "2", "--grid", "model.los=bce", "--out", str(tmp_path)]) == 2
    )
    assert "model.init_args.los" in capsys.readouterr().err
    assert sweep_main(["--report-only", "--out", str(tmp_path / "nothing")]) == 2
    assert "no study" in capsys.readouterr().err
    # A different sweep on an existing storage is refused with the fix, with one worker or several.
    out = str(tmp_path / "taken")
    create_or_join(SweepSpec(configs=(gan,), settings=tiny_settings(tmp_path), seeds=(0,)), f"{out}/study.journal")
    for workers in ("1", "2"):
        argv = ["--config", gan, "--generator-steps", "2", "--grid", "model.n_critic=1,2", "--out", out]
        assert sweep_main([*argv, "--workers", workers, "--accelerator", "cpu"]) == 2
        assert "holds a different sweep" in capsys.readouterr().err
