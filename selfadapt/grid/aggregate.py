"""Tabulating a grid: ``results.csv``, ``results.md`` and ``plots/`` from its finished runs.

Generic: every metric the runs report becomes a column (mean and sample std over seeds), every
primary metric a table and a per-epoch figure per noise cell, and a figure against each numeric
axis. The applications' own tables and figures come from their reports
(:class:`selfadapt.grid.reports.GridReport`), which this module calls without knowing them.

Example: ``aggregate("runs/fmnist")`` after ``run_grid(..., "runs/fmnist")``.
"""
from __future__ import annotations

import csv
import json
import os
import statistics
from pathlib import Path

from selfadapt.data.corruption import INPUT_CORRUPTIONS
from selfadapt.engine.rundir import atomic_write_bytes, read_metrics
from selfadapt.errors import SelfAdaptError
from selfadapt.grid.reports import GridReport, GridResults, mean_curve
from selfadapt.grid.spec import Grid, cell_name, load_grid, row_label
from selfadapt.grid.state import run_state

ID_COLUMNS = ("method", "noise", "level")


COUNT_COLUMNS = ("n_seeds", "n_seeds_expected", "missing_seeds")


def aggregate(out: str | Path, reports: list[GridReport] | tuple = ()) -> Path:
    """Tabulate the finished runs of the grid in ``out`` (``out/grid.toml``) and plot them.

    Writes ``results.csv`` (one row per method x axes x noise cell; every metric the runs report
    as mean and sample std over seeds, ``n/a`` below two seeds), ``results.md`` and ``plots/``.
    Runs that are missing, unfinished or failed are listed, never averaged. Each of ``reports``
    adds its tables and figures.
    """
    out = Path(out)
    if not (out / "grid.toml").is_file():
        raise SelfAdaptError(f"{out} holds no grid (no grid.toml); run `selfadapt bench GRID --out {out}` first")
    grid = load_grid(out / "grid.toml")
    finished, missing = {}, {}
    failed = json.loads((out / "failed.json").read_text()) if (out / "failed.json").is_file() else {}
    for run in grid.runs:
        folder = out / "runs" / run.name
        state = run_state(run, out)
        if state == "finished":
            finished[run.name] = (json.loads((folder / "summary.json").read_text()),
                                  read_metrics(folder / "metrics.jsonl"))
        elif run.name in failed:
            missing[run.name] = f"failed: {failed[run.name]}"
        else:
            missing[run.name] = "not started" if state == "new" else \
                f"unfinished ({len(read_metrics(folder / 'metrics.jsonl'))} of {run.config.engine.epochs} epochs)"
    values = {name: _summary_values(summary, reports) for name, (summary, _) in finished.items()}
    rows = [_row(grid, row, kind, level, values) for kind, level in grid.cells for row in grid.rows]
    rows = [r for r in rows if r is not None]
    metrics = _metric_keys(values)
    _write_csv(out / "results.csv", rows, list(grid.axes), metrics)
    results = GridResults(grid, out, finished, rows)
    _plots(results)
    extra = [line for report in reports for line in report.write(results)]
    atomic_write_bytes(out / "results.md", _markdown(grid, out, rows, missing, finished, extra).encode())
    return out


def _summary_values(summary: dict, reports) -> dict[str, float]:
    """The numbers a summary reports: final and best metrics, what the reports pick, noise, time."""
    values = {k: v for k, v in summary.items() if (k.startswith("final_") or k.startswith("best_"))
              and not k.endswith("_epoch") and isinstance(v, (int, float)) and not isinstance(v, bool)}
    for report in reports:
        values.update(report.values(summary) if report.values else {})
    realised = (summary.get("noise") or {}).get("realised_error_rate")
    if realised is not None:
        values["realised_noise_rate"] = realised
    values["train_seconds"] = summary.get("seconds")
    return {k: v for k, v in values.items() if v is not None}


def _metric_keys(values: dict[str, dict]) -> list[str]:
    keys = {}
    for numbers in values.values():
        keys.update(dict.fromkeys(numbers))
    order = lambda k: (not k.startswith("final_"), not k.startswith("best_"), k)  # noqa: E731
    return sorted(keys, key=order)


def _row(grid: Grid, row: tuple, kind: str, level: str, values: dict[str, dict]) -> dict | None:
    runs = [r for r in grid.runs if r.row == row and (r.noise, r.level) == (kind, level)]
    if not runs:
        return None
    done = [values[r.name] for r in runs if r.name in values]
    method, axes = row
    out = {"method": method, "noise": kind, "level": level, **{k: v for k, v in axes},
           "n_seeds": len(done), "n_seeds_expected": len(runs),
           "missing_seeds": " ".join(str(r.seed) for r in runs if r.name not in values)}
    for key in {k for d in done for k in d}:
        numbers = [d[key] for d in done if key in d]
        out[f"{key}_mean"] = statistics.fmean(numbers)
        out[f"{key}_std"] = statistics.stdev(numbers) if len(numbers) >= 2 else None   # sample std (ddof=1)
    return out


def _write_csv(path: Path, rows: list[dict], axes: list[str], metrics: list[str]) -> None:
    columns = [*ID_COLUMNS, *axes, *COUNT_COLUMNS, *(f"{m}_{s}" for m in metrics for s in ("mean", "std"))]
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=columns)
        writer.writeheader()
        for row in rows:
            writer.writerow({c: "n/a" if row.get(c) is None else row[c] for c in columns})
    os.replace(tmp, path)


def primary_metrics(finished: dict) -> list[tuple[str, bool]]:
    """(metric, higher is better) of the runs' primary metrics, in first-seen order."""
    seen = {}
    for summary, _ in finished.values():
        if summary.get("primary_metric"):
            seen.setdefault(summary["primary_metric"], summary.get("higher_is_better", True))
    return list(seen.items())


def _markdown(grid: Grid, out: Path, rows: list[dict], missing: dict, finished: dict, extra: list[str]) -> str:
    history = json.loads((out / "bench.json").read_text()) if (out / "bench.json").is_file() else []
    command = history[-1]["command"] if history else f"selfadapt bench GRID --out {out}"
    lines = [f"# Benchmark grid: {grid.name}", "", f"Command: `{command}`", "",
             f"Settings: {_describe(grid.settings)}"]
    lines += [f"Settings for {m}: {_describe(v)}" for m, v in grid.method_settings.items()]
    lines += [f"Axes: {_describe(grid.axes)}" for _ in [0] if grid.axes]
    lines += [f"Seeds: {', '.join(map(str, grid.seeds))} (each sets seed, data_seed and noise_seed)", ""]
    for h in (h for h in history if h["runs_trained"]):
        lines.append(f"Hardware: {h['processor']}, {h['cpu_count']} CPUs, {h['torch_threads_per_run']} torch "
                     f"thread(s) per run, {h['parallel_runs']} run(s) at a time, device {h['device']}, "
                     f"torch {h['torch']}; {h['runs_trained']} runs trained in {h['wall_seconds']:.0f} s wall "
                     f"({h['finished_at']}){_code(h.get('provenance'))}")
    seconds = sum(r.get("train_seconds_mean", 0) * r["n_seeds"] for r in rows if r["n_seeds"])
    lines += ["", f"Training time summed over finished runs: {seconds:.0f} s.", "",
              "Mean ± sample std over seeds, in %; `(k/n)` marks cells with only k of n seeds finished. "
              "*Final* is the last epoch, the number to report. *Best* is the best epoch chosen on the "
              "evaluated (test) set itself, as the original code did: optimistic, not a fair model selection.", ""]
    for kind in dict.fromkeys(kind for kind, _ in grid.cells):
        levels = [level for k, level in grid.cells if k == kind]
        cell_rows = [r for r in rows if r["noise"] == kind]
        header = [_level_header(kind, level, cell_rows) for level in levels]
        for metric, _ in primary_metrics(finished):
            for which, title in (("final", "final (last epoch)"), ("best", "best epoch (optimistic)")):
                lines += [f"## {_kind_title(kind)}: {metric}, {title}", "", "| run | " + " | ".join(header) + " |",
                          "|---|" + "---|" * len(levels)]
                for method, axes in grid.rows:
                    cells = [_cell(next((r for r in cell_rows if r["method"] == method and r["level"] == level
                                         and all(r.get(k) == v for k, v in axes)), None), f"{which}_{metric}")
                             for level in levels]
                    lines.append(f"| {row_label(method, axes)} | " + " | ".join(cells) + " |")
                lines.append("")
    lines += extra
    lines += ["## Missing or unfinished runs", ""]
    lines += [f"- {name}: {why}" for name, why in missing.items()] or ["None: every run finished."]
    return "\n".join(lines) + "\n"


def _code(origin: dict | None) -> str:
    """``; code: selfadapt 0.2.0, commit abc123 (+ uncommitted changes 9f8e...)`` from a provenance record."""
    if not origin:
        return ""
    text = f"; code: selfadapt {origin['selfadapt']}"
    if origin.get("git_commit"):
        text += f", commit {origin['git_commit'][:12]}"
    if origin.get("uncommitted_changes_sha256"):
        text += f" + uncommitted changes {origin['uncommitted_changes_sha256'][:12]}"
    return text


def _describe(values: dict) -> str:
    return ", ".join(f"{k}={json.dumps(v)}" for k, v in values.items()) or "defaults"


def _kind_title(kind: str) -> str:
    return "clean labels" if kind == "none" else f"{kind} noise"


def _level_header(kind: str, level: str, rows: list[dict]) -> str:
    """Column title: the rate or variant and the measured share of wrong labels (corrupted images)."""
    if kind == "none":
        return "clean"
    realised = next((r["realised_noise_rate_mean"] for r in rows
                     if r["level"] == level and r.get("realised_noise_rate_mean") is not None), None)
    what = "images corrupted" if kind in INPUT_CORRUPTIONS else "labels wrong"
    return level if realised is None else f"{level} ({100 * realised:.1f}% {what})"


def _cell(row: dict | None, key: str) -> str:
    if row is None or row.get(f"{key}_mean") is None:
        return "n/a"
    mean, std = row[f"{key}_mean"], row.get(f"{key}_std")
    text = f"{100 * mean:.2f} ± " + ("n/a" if std is None else f"{100 * std:.2f}")
    return text if row["n_seeds"] == row["n_seeds_expected"] else f"{text} ({row['n_seeds']}/{row['n_seeds_expected']})"


def _plots(results: GridResults) -> None:
    """Per noise cell, each primary metric per epoch by run row; per numeric axis, the final primary
    metric against the axis."""
    from selfadapt.plots import plot_curves, plot_metric_against

    grid, primaries = results.grid, primary_metrics(results.finished)
    for kind, level in grid.cells:
        by_row = results.cell_metrics(kind, level)
        for metric, _ in primaries if by_row else ():
            plot_curves({label: mean_curve(runs, metric) for label, runs in by_row.items()},
                        results.plots / f"{_file_word(metric)}-{cell_name(kind, level)}.png",
                        ylabel=f"{metric} (mean over seeds)", title=results.cell_title(kind, level))
    for axis, values in grid.axes.items():
        if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
            continue
        for metric, _ in primaries:
            series = {}
            for r in results.rows:
                if r.get(axis) is None or r.get(f"final_{metric}_mean") is None:
                    continue
                others = [(k, r[k]) for k in grid.axes if k != axis and r.get(k) is not None]
                label = " ".join([row_label(r["method"], others), cell_name(r["noise"], r["level"])])
                series.setdefault(label, []).append((r[axis], r[f"final_{metric}_mean"], r.get(f"final_{metric}_std")))
            if series:
                plot_metric_against(series, results.plots / f"{_file_word(metric)}-vs-{axis}.png", xlabel=axis,
                                    ylabel=f"final {metric} (mean ± std over seeds)", title=grid.name)


def _file_word(metric: str) -> str:
    """``test_accuracy`` -> ``accuracy`` (file names of the original plots), others unchanged."""
    return "accuracy" if metric == "test_accuracy" else metric.replace("_", "-")
