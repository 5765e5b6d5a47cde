"""The sweep's report, built from the study alone: ``results.csv``, ``results.md`` and PNG plots.

Everything comes from the trials' states and user attributes, so ``--report-only`` rebuilds the report from the
storage on any machine that reaches it, with no run folder in sight. A trial that was retried (its worker died, or
``--retry-failed``) or rerun (``--rerun-stale``) is superseded by its newest attempt: tables and plots show the
newest attempt of each configuration and seed, and the failures stay listed with their errors.
"""

from __future__ import annotations

import csv
import math
import os
import statistics
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from optuna.trial import FrozenTrial

from lightning_gen.sweep import study as _study
from lightning_gen.sweep.study import SweepStudy, _latest_attempts

__all__ = ["TrialResult", "collect_results", "write_report"]

_FIXED_COLUMNS = ("trial", "state", "config", "settings", "seed", "generator_step", "epoch", "global_step")
_TAIL_COLUMNS = (
    "train_seconds", "train_images", "images_per_second", "wall_seconds", "parameters", "library_version", "stale",
    "superseded", "retry_of", "rerun_of", "error",
)  # fmt: skip
# Metrics worth a column in results.md when recorded (every recorded metric is in results.csv).
_HEADLINE = ("fid", "fsd", "validity", "shape_tv", "colour_tv", "kid", "is", "precision", "recall", "coverage")
_NOT_METRICS = {"generator_step", "epoch", "global_step", "train_seconds", "train_images", "wall_seconds"}


def _finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


@dataclass
class TrialResult:
    """One trial as the report sees it.

    Attributes:
        number: Optuna trial number.
        state: ``complete``, ``pruned``, ``fail``, ``running`` or ``waiting``.
        config: Config label.
        settings: Changed settings, e.g. ``"loss=hinge, n_critic=2"`` (``"-"`` when none).
        seed: ``seed_everything`` of the trial (``None``: the config's own).
        evaluations: One dict per evaluation point (``generator_step`` and every recorded metric).
        attrs: The trial's other user attributes (version, timings, error...).
        superseded: A newer attempt of the same configuration and seed exists.
    """

    number: int
    state: str
    config: str
    settings: str
    seed: int | None
    evaluations: list[dict[str, Any]] = field(default_factory=list)
    attrs: dict[str, Any] = field(default_factory=dict)
    superseded: bool = False

    @property
    def group(self) -> tuple[str, str]:
        return (self.config, self.settings)

    def values(self, metric: str) -> list[tuple[int, float]]:
        return [(e["generator_step"], e[metric]) for e in self.evaluations if _finite(e.get(metric))]

    def best(self, metric: str, minimize: bool) -> tuple[int, float] | None:
        values = self.values(metric)
        if not values:
            return None
        return (min if minimize else max)(values, key=lambda pair: pair[1])

    def final(self, metric: str) -> float | None:
        value = self.evaluations[-1].get(metric) if self.evaluations else None
        return value if _finite(value) else None

    @property
    def images_per_second(self) -> float | None:
        seconds, images = self.attrs.get("train_seconds"), self.attrs.get("train_images")
        return images / seconds if seconds and images else None

    @property
    def stale(self) -> bool:
        version = self.attrs.get("library_version")
        return self.state in ("complete", "pruned") and version is not None and version != _study.current_version()


def collect_results(sweep: SweepStudy) -> list[TrialResult]:
    """Every trial of the sweep, oldest first, marked superseded where a newer attempt exists."""
    latest = {frozen.number for frozen in _latest_attempts(sweep).values()}
    results = []
    for frozen in sweep.trials():
        results.append(_result(sweep, frozen, superseded=frozen.number not in latest))
    return results


def _result(sweep: SweepStudy, frozen: FrozenTrial, superseded: bool) -> TrialResult:
    attrs = dict(frozen.user_attrs)
    params = dict(frozen.params)
    label = attrs.get("config_label") or params.get("config") or next(iter(sweep.info["config_paths"]))
    shown = [f"{name}={_short(value)}" for name, value in params.items() if name in sweep.varied and name != "config"]
    return TrialResult(
        number=frozen.number,
        state=frozen.state.name.lower(),
        config=label,
        settings=", ".join(shown) if shown else "-",
        seed=attrs.get("seed"),
        evaluations=sorted(attrs.pop("evaluations", []) or [], key=lambda e: e["generator_step"]),
        attrs=attrs,
        superseded=superseded,
    )


def _short(value: Any) -> str:
    return f"{value:.3g}" if isinstance(value, float) else str(value)


def _metric_names(results: Sequence[TrialResult], objective: str) -> list[str]:
    names = {key for r in results for e in r.evaluations for key in e if key not in _NOT_METRICS}
    return [objective] * (objective in names) + sorted(names - {objective})


def _fmt(value: Any, digits: int = 2) -> str:
    return f"{value:.{digits}f}" if _finite(value) else "-"


def _duration(seconds: Any) -> str:
    if not _finite(seconds):
        return "-"
    minutes, secs = divmod(int(round(seconds)), 60)
    return f"{minutes}m{secs:02d}s" if minutes else f"{secs}s"


def _mean_std(values: Sequence[float]) -> str:
    if not values:
        return "-"
    if len(values) == 1:
        return f"{values[0]:.2f}"
    return f"{statistics.mean(values):.2f} +- {statistics.stdev(values):.2f}"


def _groups(results: Sequence[TrialResult]) -> dict[tuple[str, str], list[TrialResult]]:
    groups: dict[tuple[str, str], list[TrialResult]] = {}
    for result in results:
        if not result.superseded:
            groups.setdefault(result.group, []).append(result)
    return groups


def _group_name(key: tuple[str, str]) -> str:
    return key[0] if key[1] == "-" else f"{key[0]}: {key[1]}"


# -------------------------------------------------------------------------------------------------------- csv


def _csv_rows(results: Sequence[TrialResult], metrics: list[str]) -> list[dict[str, Any]]:
    rows = []
    for result in results:
        base = {
            "trial": result.number, "state": result.state, "config": result.config, "settings": result.settings,
            "seed": result.seed, "parameters": result.attrs.get("parameters"),
            "library_version": result.attrs.get("library_version"), "stale": result.stale,
            "superseded": result.superseded, "retry_of": result.attrs.get("retry_of"),
            "rerun_of": result.attrs.get("rerun_of"), "error": (result.attrs.get("error") or "").splitlines()[0:1],
        }  # fmt: skip
        base["error"] = base["error"][0] if base["error"] else ""
        for evaluation in result.evaluations or [{}]:
            row = dict(base)
            row.update({key: evaluation.get(key) for key in (*_FIXED_COLUMNS[5:], *metrics)})
            seconds, images = evaluation.get("train_seconds"), evaluation.get("train_images")
            row.update(train_seconds=seconds, train_images=images, wall_seconds=evaluation.get("wall_seconds"))
            row["images_per_second"] = round(images / seconds, 2) if seconds and images else None
            rows.append(row)
    return rows


# ---------------------------------------------------------------------------------------------------- markdown


def _markdown(
    sweep: SweepStudy, results: Sequence[TrialResult], metrics: list[str], command: str | None, plots: dict[str, Path]
) -> str:
    settings = sweep.settings
    objective, minimize = settings.objective, settings.resolved_direction == "minimize"
    current = [r for r in results if not r.superseded]
    lines = [f"# Sweep `{sweep.study.study_name}`", ""]
    if command:
        lines += ["Produced by:", "", "```bash", command, "```", ""]
    budget = f"{settings.generator_steps} generator steps" if settings.generator_steps else f"{settings.epochs} epochs"
    schedule = f"every {settings.eval_every} generator steps and at the end" if settings.eval_every else "at the end"
    kind = (
        f"A {sweep.info['sampler'].upper()} search of {sweep.info.get('trials')} configurations"
        if sweep.kind == "search" else "A grid"
    )  # fmt: skip
    seeds = ", ".join(str(s) for s in sweep.seeds) if sweep.seeds != [None] else "each config's own"
    lines += [
        f"**Study.** {kind} over {', '.join(sweep.varied) or 'the configs'}; seeds {seeds}; objective `{objective}` "
        f"({'lower' if minimize else 'higher'} is better), pruner `{sweep.info['pruner']}`; storage "
        f"`{sweep.storage_location}`.",
        "",
        f"**Budget and schedule.** Every trial trains for {budget} and is evaluated {schedule} with the metrics "
        f"{', '.join(settings.metrics)}: {settings.num_samples} generated images from seeds {settings.sample_seed}+ "
        f"(the same latents for every trial) against {settings.num_real or 'all'} real images of the "
        f"`{settings.split}` split"
        + (
            f", features from `{settings.feature_extractor}` (not comparable with published FIDs)"
            if settings.feature_extractor
            else ""
        )
        + ". Images/s is training throughput (evaluation excluded); wall time includes evaluation.",
        "",
    ]
    preferred = [name for name in _HEADLINE if name in metrics and name != objective]
    shown = ([objective] if objective in metrics else []) + preferred[:3]
    columns = ["trial", "config", "changed settings", "seed", "state", f"best {objective} (step)"]
    columns += [f"final {name}" for name in shown] + ["images/s", "wall time", "version"]
    lines += ["## Trials", "", "| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for result in current:
        best = result.best(objective, minimize)
        cells = [
            str(result.number), result.config, result.settings, str(result.seed if result.seed is not None else "-"),
            result.state + (" (stale)" if result.stale else ""), f"{best[1]:.2f} ({best[0]})" if best else "-",
            *[_fmt(result.final(name), 4 if name.startswith("kid") else 2) for name in shown],
            _fmt(result.images_per_second, 0), _duration(result.attrs.get("wall_seconds")),
            str(result.attrs.get("library_version", "-")),
        ]  # fmt: skip
        lines.append("| " + " | ".join(cells) + " |")
    lines.append("")

    groups = _groups(results)
    ranked = []
    for key, members in groups.items():
        finals = [v for r in members if (v := r.final(objective)) is not None and r.state == "complete"]
        bests = [b[1] for r in members if (b := r.best(objective, minimize)) is not None]
        ranked.append((key, members, finals, bests))
    ranked.sort(key=lambda item: (not item[2], (1 if minimize else -1) * statistics.mean(item[2]) if item[2] else 0))
    lines += [
        "## Configurations, best first",
        "",
        "Mean +- standard deviation over seeds of the completed trials; a difference smaller than the spreads is not "
        "a ranking.",
        "",
        f"| config | changed settings | complete / trials | final {objective} | best {objective} | images/s |",
        "|---|---|---|---|---|---|",
    ]
    for (label, settings_text), members, finals, bests in ranked:
        complete = sum(r.state == "complete" for r in members)
        speeds = [s for r in members if (s := r.images_per_second)]
        lines.append(
            f"| {label} | {settings_text} | {complete}/{len(members)} | {_mean_std(finals)} | {_mean_std(bests)} | "
            f"{_fmt(statistics.mean(speeds), 0) if speeds else '-'} |"
        )
    lines.append("")
    if plots:
        lines += ["## Plots", ""] + [f"![{name}]({path.name})" for name, path in plots.items()] + [""]
    stale = [r for r in current if r.stale]
    if stale:
        versions = sorted({str(r.attrs.get("library_version")) for r in stale})
        lines += [
            f"**{len(stale)} trial(s) were made by lightning-gen {', '.join(versions)}, "
            f"not {_study.current_version()}** "
            f"(trials {', '.join(str(r.number) for r in stale)}). Rerun the command with `--rerun-stale` to redo them.",
            "",
        ]
    failed = [r for r in results if r.state == "fail"]
    if failed:
        lines += ["## Failed trials", ""]
        for result in failed:
            retried = next((r.number for r in results if r.attrs.get("retry_of") == result.number), None)
            error = (result.attrs.get("error") or "no error recorded").splitlines()[0]
            note = f" (retried as trial {retried})" if retried is not None else ""
            lines.append(f"- trial {result.number} ({_group_name(result.group)}, seed {result.seed}){note}: {error}")
        lines.append("")
    pending = [r for r in current if r.state in ("running", "waiting")]
    if pending:
        lines += [
            f"{len(pending)} trial(s) not finished yet: rerun the same command (or more workers) to run them.",
            "",
        ]
    return "\n".join(lines)


# -------------------------------------------------------------------------------------------------------- plots


def _figure(width: float, height: float) -> Any:
    try:
        from matplotlib.figure import Figure
    except ImportError as error:
        raise ImportError(
            "Plotting the sweep needs matplotlib: pip install 'lightning-gen[plot]' (or --no-plots)."
        ) from error
    # A bare Figure renders with the Agg canvas on savefig, whatever pyplot backend the user has selected.
    return Figure(figsize=(width, height), layout="constrained")


def _colours(keys: Sequence[tuple[str, str]]) -> dict[tuple[str, str], Any]:
    from matplotlib import colormaps

    palette = colormaps["tab10" if len(keys) <= 10 else "tab20"]
    return {key: palette(i % palette.N) for i, key in enumerate(keys)}


def _plot_vs_steps(results: Sequence[TrialResult], metric: str, path: Path) -> Path:
    groups = {k: m for k, m in _groups(results).items() if any(r.values(metric) for r in m)}
    colours = _colours(list(groups))
    figure = _figure(9, 5)
    axes = figure.subplots()
    for key, members in groups.items():
        by_step: dict[int, list[float]] = {}
        for result in members:
            for step, value in result.values(metric):
                by_step.setdefault(step, []).append(value)
        steps = sorted(by_step)
        axes.plot(steps, [statistics.mean(by_step[s]) for s in steps], marker="o", markersize=3, color=colours[key],
                  label=_group_name(key))  # fmt: skip
        if len(members) > 1:
            axes.fill_between(steps, [min(by_step[s]) for s in steps], [max(by_step[s]) for s in steps],
                              color=colours[key], alpha=0.15)  # fmt: skip
    axes.set_xlabel("generator steps")
    axes.set_ylabel(metric)
    axes.set_title(f"{metric} against generator steps (mean over seeds, band: min-max)")
    axes.grid(alpha=0.3)
    axes.legend(fontsize="small", loc="upper left", bbox_to_anchor=(1.01, 1.0))
    figure.savefig(path, dpi=110)
    return path


def _plot_best(results: Sequence[TrialResult], metric: str, minimize: bool, path: Path) -> Path:
    groups = {
        key: values for key, members in _groups(results).items()
        if (values := [b[1] for r in members if (b := r.best(metric, minimize)) is not None])
    }  # fmt: skip
    order = sorted(groups, key=lambda k: (1 if minimize else -1) * statistics.mean(groups[k]))
    colours = _colours(order)
    figure = _figure(8, 0.9 + 0.35 * len(order))
    axes = figure.subplots()
    positions = list(range(len(order)))
    means = [statistics.mean(groups[k]) for k in order]
    errors = [statistics.stdev(groups[k]) if len(groups[k]) > 1 else 0.0 for k in order]
    bars = axes.barh(positions, means, xerr=errors, color=[colours[k] for k in order], alpha=0.85, capsize=3)
    axes.bar_label(bars, labels=[_mean_std(groups[k]) for k in order], padding=4, fontsize="small")
    axes.margins(x=0.15)
    for position, key in zip(positions, order):
        axes.scatter(groups[key], [position] * len(groups[key]), color="black", s=8, zorder=3)
    axes.set_yticks(positions, [_group_name(k) for k in order], fontsize="small")
    axes.invert_yaxis()  # best at the top
    axes.set_xlabel(f"best {metric} over the evaluation points ({'lower' if minimize else 'higher'} is better)")
    axes.set_title(f"Best {metric} per configuration (mean, std over seeds; dots: seeds)")
    axes.grid(axis="x", alpha=0.3)
    figure.savefig(path, dpi=110)
    return path


def _plot_optuna(sweep: SweepStudy, name: str, path: Path) -> Path | None:
    """Optuna's own matplotlib plots (importance, history); ``None`` when the study cannot support them yet."""
    import matplotlib.pyplot as plt
    from optuna.visualization import matplotlib as optuna_plots

    plot = getattr(optuna_plots, f"plot_{name}")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the matplotlib backend of optuna.visualization is marked experimental
        try:
            axes = plot(sweep.study)
        except (ValueError, RuntimeError):
            return None  # e.g. fewer than two complete trials, or a parameter with a single value
    figure = axes.figure if hasattr(axes, "figure") else axes.flat[0].figure
    figure.set_size_inches(8, 5)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path


def write_report(
    sweep: SweepStudy, out_dir: str | os.PathLike, *, command: str | None = None, plots: bool = True
) -> dict[str, Path]:
    """Write ``results.csv``, ``results.md`` and (with ``plots``) the PNG plots of a sweep.

    Plots: ``<objective>_vs_steps.png`` (per configuration, mean over seeds with the min-max band) and
    ``best_<objective>.png`` (best value per configuration with the seed spread); for a search also Optuna's
    ``param_importances.png`` and ``optimization_history.png`` once enough trials are complete.

    Returns:
        ``{"csv": ..., "md": ..., <plot name>: ...}`` for the files written.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    settings = sweep.settings
    results = collect_results(sweep)
    metrics = _metric_names(results, settings.objective)
    paths = {"csv": out_dir / "results.csv", "md": out_dir / "results.md"}
    with open(paths["csv"], "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=[*_FIXED_COLUMNS, *metrics, *_TAIL_COLUMNS], extrasaction="ignore")
        writer.writeheader()
        writer.writerows(_csv_rows(results, metrics))
    drawn: dict[str, Path] = {}
    if plots and any(r.values(settings.objective) for r in results):
        objective, minimize = settings.objective, settings.resolved_direction == "minimize"
        drawn[f"{objective}_vs_steps"] = _plot_vs_steps(results, objective, out_dir / f"{objective}_vs_steps.png")
        drawn[f"best_{objective}"] = _plot_best(results, objective, minimize, out_dir / f"best_{objective}.png")
        if sweep.kind == "search":
            for name in ("param_importances", "optimization_history"):
                if (path := _plot_optuna(sweep, name, out_dir / f"{name}.png")) is not None:
                    drawn[name] = path
    paths.update(drawn)
    paths["md"].write_text(_markdown(sweep, results, metrics, command, drawn))
    return paths
