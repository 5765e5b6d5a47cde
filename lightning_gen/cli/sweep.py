"""``lightning-gen sweep``: grids and searches over training configurations, on an Optuna study.

Every worker runs the same command; the first creates the study, the others join it, and each takes trials until
none is left, then writes the report. ``--workers N`` starts N local workers (one per visible GPU by default);
workers on other machines join by running the command with a ``--storage`` they can all reach. See the README's
"Sweeps" section for multi-node use.
"""

from __future__ import annotations

import argparse
import os
import shlex
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

__all__ = ["build_parser", "main"]


def build_parser() -> argparse.ArgumentParser:
    """The ``lightning-gen sweep`` argument parser."""
    from lightning_gen.sweep.settings import PRUNERS, SAMPLERS

    parser = argparse.ArgumentParser(
        prog="lightning-gen sweep",
        description=(
            "Train configurations (a grid, or a search) with one budget and one evaluation schedule, as trials of an "
            "Optuna study, and write results.csv, results.md and plots. Rerunning the command resumes the sweep; "
            "running it elsewhere on the same storage adds a worker."
        ),
    )
    what = parser.add_argument_group("what to run")
    what.add_argument(
        "--config",
        action="append",
        default=[],
        metavar="YAML",
        help="LightningCLI config; repeat for several (each is an alternative)",
    )
    what.add_argument(
        "--grid",
        action="append",
        default=[],
        metavar="KEY=V1,V2",
        help="values to cross, e.g. model.loss=bce,hinge (short for model.init_args.loss); a key "
        "applies to the configs whose class takes it",
    )
    what.add_argument(
        "--search",
        action="append",
        default=[],
        metavar="KEY=LOW:HIGH[:log]|A,B",
        help="a search dimension, e.g. model.lr_g=1e-4:1e-3:log or model.loss=bce,hinge",
    )
    what.add_argument("--trials", type=int, default=None, help="configurations a search samples")
    what.add_argument(
        "--seeds",
        default=None,
        help="seed_everything values, each a repeat of every configuration (0,1 or 0-4; default: each config's own)",
    )
    what.add_argument("--sampler", default="tpe", choices=SAMPLERS, help="sampler of a search (default tpe)")
    what.add_argument(
        "--pruner",
        default=None,
        choices=PRUNERS,
        help="stop trials early on the objective (default: none for a grid, median for a search)",
    )
    what.add_argument(
        "--pruner-startup-trials",
        type=int,
        default=5,
        help="trials the median pruner lets finish before pruning (default 5)",
    )
    budget = parser.add_argument_group("shared budget and evaluation schedule")
    exclusive = budget.add_mutually_exclusive_group()
    exclusive.add_argument(
        "--generator-steps", type=int, default=None, help="train every trial for N generator updates"
    )
    exclusive.add_argument("--epochs", type=int, default=None, help="train every trial for N epochs")
    budget.add_argument(
        "--eval-every", type=int, default=None, help="evaluate every N generator steps (the end is always evaluated)"
    )
    metrics = parser.add_argument_group("metrics and objective")
    metrics.add_argument("--metrics", default="fid", help="metric callbacks: fid, shapes or fid,shapes (default fid)")
    metrics.add_argument(
        "--objective",
        default="fid",
        help="recorded metric to optimise and prune on: fid, kid, is, fsd... (default fid)",
    )
    metrics.add_argument(
        "--direction",
        default=None,
        choices=("minimize", "maximize"),
        help="default: minimize distances (fid, fsd, kid, tv), maximize scores",
    )
    metrics.add_argument("--num-samples", type=int, default=1000, help="generated images per evaluation (default 1000)")
    metrics.add_argument("--num-real", type=int, default=None, help="real images (default: the whole split)")
    metrics.add_argument("--split", default="train", choices=("train", "val"), help="split of the real images")
    metrics.add_argument("--metrics-batch-size", type=int, default=64, help="images per batch (default 64)")
    metrics.add_argument("--sample-seed", type=int, default=0, help="base seed of the evaluation samples (default 0)")
    metrics.add_argument(
        "--is",
        dest="inception_score",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="Inception Score with fid (default on)",
    )
    metrics.add_argument("--kid", action=argparse.BooleanOptionalAction, default=True, help="KID with fid (default on)")
    metrics.add_argument(
        "--kid-subset-size", type=int, default=None, help="KID subset size (default min(1000, samples))"
    )
    metrics.add_argument("--kid-subsets", type=int, default=100, help="KID subsets (default 100)")
    metrics.add_argument("--is-splits", type=int, default=10, help="IS splits (default 10)")
    metrics.add_argument("--weights", default=None, help="FID Inception weights file")
    metrics.add_argument("--no-download", action="store_true", help="fail instead of downloading Inception weights")
    metrics.add_argument(
        "--feature-extractor",
        default=None,
        metavar="MODULE:FACTORY",
        help="custom feature network for fid (values not comparable with published ones)",
    )
    metrics.add_argument("--cache-dir", default=None, help="real-statistics cache")
    where = parser.add_argument_group("storage, workers and outputs")
    where.add_argument("--out", default="runs/sweep", help="report folder, and the journal file's (default runs/sweep)")
    where.add_argument(
        "--storage",
        default=None,
        help="Optuna storage: sqlite:///sweep.db, postgresql://..., mysql://... or a journal file path "
        "(default OUT/study.journal)",
    )
    where.add_argument("--study-name", default="sweep", help="study name in the storage (default sweep)")
    where.add_argument("--runs-dir", default=None, help="folder of the trials' run folders (default OUT/runs)")
    where.add_argument(
        "--workers", type=int, default=None, help="local worker processes (default: one per visible GPU, else 1)"
    )
    where.add_argument(
        "--accelerator", default=None, help="trainer accelerator for every trial (default: each config's)"
    )
    where.add_argument(
        "--devices",
        default=None,
        help="trainer devices per trial, e.g. 2 for DDP inside each trial (default: each config's)",
    )
    where.add_argument(
        "--in-process",
        action="store_true",
        help="train trials inside the worker process instead of one process each (debugging)",
    )
    where.add_argument(
        "--stale-after",
        type=float,
        default=300.0,
        help="seconds without a heartbeat after which a RUNNING trial counts as dead (default 300)",
    )
    where.add_argument("--retry-failed", action="store_true", help="run failed trials again")
    where.add_argument("--rerun-stale", action="store_true", help="rerun trials made by another library version")
    where.add_argument("--report-only", action="store_true", help="train nothing; rebuild the report from the storage")
    where.add_argument(
        "--no-report", dest="report", action="store_false", help="write no report (workers of --workers)"
    )
    where.add_argument("--no-plots", dest="plots", action="store_false", help="skip the PNG plots")
    where.add_argument("--run-trial", type=int, default=None, help=argparse.SUPPRESS)  # the trial process entry
    return parser


def _devices_setting(text: str | None) -> object:
    if text is None:
        return None
    if "," in text or text.startswith("["):
        return [int(part) for part in text.strip("[]").split(",") if part.strip()]
    return text if text == "auto" else int(text)


def _settings(args: argparse.Namespace):
    from lightning_gen.sweep import SweepSettings

    return SweepSettings(
        generator_steps=args.generator_steps,
        epochs=args.epochs,
        eval_every=args.eval_every,
        metrics=tuple(part.strip() for part in args.metrics.split(",") if part.strip()),
        objective=args.objective,
        direction=args.direction,
        num_samples=args.num_samples,
        num_real=args.num_real,
        split=args.split,
        metrics_batch_size=args.metrics_batch_size,
        sample_seed=args.sample_seed,
        inception_score=args.inception_score,
        kid=args.kid,
        kid_subset_size=args.kid_subset_size,
        kid_subsets=args.kid_subsets,
        is_splits=args.is_splits,
        weights=args.weights,
        download=not args.no_download,
        feature_extractor=args.feature_extractor,
        cache_dir=args.cache_dir,
        accelerator=args.accelerator,
        devices=_devices_setting(args.devices),
    )


def _gpu_groups(workers: int | None, devices: object) -> list[str | None]:
    """``CUDA_VISIBLE_DEVICES`` of each local worker: one GPU each (or ``devices`` GPUs for DDP trials)."""
    import torch

    count = torch.cuda.device_count()
    if count == 0:
        return [None] * (workers or 1)
    per_worker = devices if isinstance(devices, int) and devices > 0 else 1
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    ids = [part for part in visible.split(",") if part.strip()] if visible else [str(i) for i in range(count)]
    groups = [",".join(ids[i : i + per_worker]) for i in range(0, len(ids) - per_worker + 1, per_worker)]
    if workers is not None and workers > len(groups):
        raise ValueError(
            f"--workers {workers} with {per_worker} GPU(s) per trial needs {workers * per_worker} GPUs; "
            f"{count} are visible. Lower --workers, or run workers on more machines against one --storage."
        )
    return groups[: workers or len(groups)]


def _launch_workers(argv: Sequence[str], groups: list[str | None], log_dir: Path) -> int:
    """Start one worker process per group with the same command, wait for all, return the worst exit code."""
    base = [
        sys.executable,
        "-m",
        "lightning_gen.cli",
        "sweep",
        *_without_option(argv, "--workers"),
        "--workers",
        "1",
        "--no-report",
    ]
    log_dir.mkdir(parents=True, exist_ok=True)
    children = []
    for index, group in enumerate(groups):
        env = dict(os.environ)
        if group is not None:
            env["CUDA_VISIBLE_DEVICES"] = group
        log_path = log_dir / f"worker{index}.log"
        with open(log_path, "ab") as log:
            children.append((subprocess.Popen(base, env=env, stdout=log, stderr=subprocess.STDOUT), log_path))
        where = f"GPUs {group}" if group is not None else "CPU"
        print(f"worker {index} ({where}): {shlex.join(base)} (log: {log_path})", file=sys.stderr)
    codes = [child.wait() for child, _ in children]
    for (_, log_path), code in zip(children, codes):
        if code not in (0, 1):  # 1 only means that some trial failed, which the report shows
            print(f"lightning-gen sweep: a worker exited with {code}; see {log_path}", file=sys.stderr)
    return max(codes)


def _without_option(argv: Sequence[str], option: str) -> list[str]:
    """``argv`` without ``option VALUE`` / ``option=VALUE``."""
    out, skip = [], False
    for arg in argv:
        if skip:
            skip = False
        elif arg == option:
            skip = True
        elif not arg.startswith(option + "="):
            out.append(arg)
    return out


def _summary(frozen) -> str:
    attrs = frozen.user_attrs
    what = ", ".join(f"{k}={v}" for k, v in frozen.params.items()) or attrs.get("config_label", "")
    text = f"trial {frozen.number} ({what}, seed {attrs.get('seed')}): {frozen.state.name}"
    if frozen.value is not None:
        text += f", value {frozen.value:.4g}"
    if attrs.get("error"):
        text += f": {attrs['error'].splitlines()[0]}"
    return text


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``lightning-gen sweep``: 0 when every trial this run saw ended well, 1 when some failed, 2 on
    bad usage."""
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    args = parser.parse_args(argv)
    # Imported once the arguments parsed, so that usage errors answer without loading Optuna.
    from lightning_gen.cli import run_lightning_cli
    from lightning_gen.sweep import (
        JOURNAL_FILE,
        SweepSpec,
        create_or_join,
        enqueue_reruns,
        enqueue_retries,
        open_sweep,
        parse_grid,
        parse_search,
        parse_seeds,
        run_worker,
        stale_trials,
        write_report,
    )
    from lightning_gen.sweep.trial import in_process_executor, run_trial_in_process, subprocess_executor
    out = Path(args.out)
    location = args.storage or str(out / JOURNAL_FILE)
    runs_dir = Path(args.runs_dir) if args.runs_dir else out / "runs"
    if args.run_trial is not None:
        return run_trial_in_process(location, args.study_name, args.run_trial, runs_dir, run_lightning_cli)
    command = "lightning-gen sweep " + shlex.join(a for a in argv if a not in ("--report-only", "--no-report"))
    if args.report_only:
        try:
            sweep = open_sweep(location, args.study_name)
        except KeyError:
            print(f"lightning-gen sweep: error: no study {args.study_name!r} in {location}.", file=sys.stderr)
            return 2
        paths = write_report(sweep, out, command=command, plots=args.plots)
        print("wrote " + ", ".join(str(p) for p in paths.values()), file=sys.stderr)
        return 0
    if not args.config:
        parser.error("give at least one --config (or --report-only to tabulate an existing sweep)")
    if args.generator_steps is None and args.epochs is None:
        parser.error("give the shared budget: --generator-steps N or --epochs N")
    try:
        spec = SweepSpec(
            configs=tuple(args.config),
            settings=_settings(args),
            grid=parse_grid(args.grid),
            search=parse_search(args.search),
            trials=args.trials,
            seeds=tuple(parse_seeds(args.seeds)) if args.seeds else None,
        )
        groups = _gpu_groups(args.workers, spec.settings.devices)
        if args.plots and args.report:
            from lightning_gen.sweep.report import _figure

            _figure(1, 1)  # fail now, not after hours of training, when matplotlib is missing
    except (ValueError, FileNotFoundError, ImportError) as error:
        print(f"lightning-gen sweep: error: {error}", file=sys.stderr)
        return 2
    try:
        # Created (and a grid enqueued) here, once, before any worker starts, so the workers find it ready.
        sweep = create_or_join(
            spec,
            location,
            args.study_name,
            pruner=args.pruner,
            sampler=args.sampler,
            pruner_startup_trials=args.pruner_startup_trials,
        )
    except (ValueError, TimeoutError) as error:
        print(f"lightning-gen sweep: error: {error}", file=sys.stderr)
        return 2
    if len(groups) > 1:
        code = _launch_workers(argv, groups, runs_dir)
    else:
        if groups[0] is not None and "CUDA_VISIBLE_DEVICES" not in os.environ:
            os.environ["CUDA_VISIBLE_DEVICES"] = groups[0]  # this worker's share, inherited by its trial processes
        if args.retry_failed:
            enqueue_retries(sweep)
        stale = stale_trials(sweep)
        if args.rerun_stale:
            enqueue_reruns(sweep)
        elif stale:
            versions = sorted({str(t.user_attrs.get("library_version")) for t in stale})
            print(
                f"lightning-gen sweep: {len(stale)} finished trial(s) were made by lightning-gen "
                f"{', '.join(versions)}; "
                f"pass --rerun-stale to redo them with this version.",
                file=sys.stderr,
            )
        execute = (
            in_process_executor(runs_dir, run_lightning_cli)
            if args.in_process
            else subprocess_executor(runs_dir, runs_dir / "logs")
        )
        ran = run_worker(
            sweep,
            execute,
            stale_after=args.stale_after,
            on_trial_end=lambda t: print(_summary(t), file=sys.stderr, flush=True),
        )
        states = [sweep.study.get_trials(deepcopy=False)[n].state.name for n in ran]
        code = 1 if "FAIL" in states else 0
    if args.report:
        paths = write_report(sweep, out, command=command, plots=args.plots)
        print("wrote " + ", ".join(str(p) for p in paths.values()), file=sys.stderr)
    return code
