"""Selective classification's tables and figures for benchmark grids (``selfadapt bench``).

For the finished runs whose ``risk-coverage`` evaluator wrote ``selective_scores.npz``:

- ``selective.md`` (beside ``results.md``): per method and score, mean ± sample std over seeds of the
  selective error at 100/95/90/80/70% coverage with the honest protocol (thresholds fitted on the
  validation split, applied to the test set; the test coverage reached beside it), AURC and E-AURC;
  then the same errors under the original code's protocol (threshold fitted on the reported test
  samples), labelled;
- ``plots/risk-coverage.png``: test selective risk against coverage, one line per method ranked by
  its own score (averaged over seeds on a common coverage grid);
- ``plots/val-aurc.png``: validation AURC per epoch, per method its own score (solid) and softmax
  response (dashed), averaged over seeds: when, in training, a score starts to rank well.
"""
from __future__ import annotations

import json
import statistics
from pathlib import Path

import numpy as np

from selfadapt.engine.rundir import atomic_write_bytes
from selfadapt.evaluators.selective import SCORES_FILE
from selfadapt.evaluators.selective_metrics import risk_coverage_curve
from selfadapt.grid.reports import GridReport, GridResults
from selfadapt.grid.spec import row_label

TABLE_COVERAGES = ("100", "95", "90", "80", "70")


def finished_runs(results: GridResults) -> list[dict]:
    """``{name, label, seed, summary, metrics, scores}`` of every finished run with ``selective_scores.npz``."""
    runs = []
    for run in results.grid.runs:
        folder = results.out / "runs" / run.name
        if run.name not in results.finished or not (folder / SCORES_FILE).is_file():
            continue
        summary, metrics = results.finished[run.name]
        runs.append({"name": run.name, "label": row_label(run.method, run.axes), "seed": run.seed,
                     "summary": summary, "metrics": metrics, "scores": dict(np.load(folder / SCORES_FILE))})
    return runs


def _mean_std(values: list[float], scale: float = 100.0) -> str:
    values = [v for v in values if v is not None]
    if not values:
        return "n/a"
    std = f"{scale * statistics.stdev(values):.2f}" if len(values) >= 2 else "n/a"
    return f"{scale * statistics.fmean(values):.2f} ± {std}"


def _rows(runs: list[dict]) -> list[tuple[str, str, bool, list[dict]]]:
    """``(label, score, is the method's own score, summaries)`` per method label and score."""
    by_label: dict[str, list[dict]] = {}
    for run in runs:
        by_label.setdefault(run["label"], []).append(run)
    rows = []
    for label, group in by_label.items():
        own = str(group[0]["scores"]["primary"])
        scores = sorted({k[len("final_test_aurc_"):] for r in group for k in r["summary"]
                         if k.startswith("final_test_aurc_")}, key=lambda s: (s != own, s))
        rows += [(label, score, score == own, [r["summary"] for r in group]) for score in scores]
    return rows


def markdown(runs: list[dict], command: str = "") -> str:
    """The tables of :func:`write_report` (percent)."""
    seeds = sorted({r["seed"] for r in runs})
    lines = ["# Selective classification: risk-coverage on the test set", ""]
    if command:
        lines += [f"Command: `{command}`", ""]
    lines += [f"Seeds: {', '.join(map(str, seeds))}. Mean ± sample std over seeds, in %. *own*: the score "
              "the method ranks by (abstain probability, `g`, or softmax response `sr`); the others are "
              "the same model ranked differently. `sr` = 1 - max softmax over the C class logits, "
              "`entropy` of that softmax.", "",
              "## Honest protocol: thresholds fitted on the validation split, applied to the test set", "",
              "Selective error at target coverage (the test coverage actually reached in brackets), AURC, E-AURC.", "",
              "| method | score | " + " | ".join(f"{c}%" for c in TABLE_COVERAGES) + " | AURC | E-AURC | n |",
              "|---|---|" + "---|" * (len(TABLE_COVERAGES) + 3)]
    for label, score, own, summaries in _rows(runs):
        cells = []
        for c in TABLE_COVERAGES:
            error = _mean_std([s.get(f"final_selective_error_{c}_{score}") for s in summaries])
            reached = [s.get(f"final_coverage_{c}_{score}") for s in summaries]
            reached = [v for v in reached if v is not None]
            cells.append(f"{error} ({100 * statistics.fmean(reached):.1f})" if reached else error)
        aurc = _mean_std([s.get(f"final_test_aurc_{score}") for s in summaries])
        eaurc = _mean_std([s.get(f"final_test_eaurc_{score}") for s in summaries])
        lines.append(f"| {label} | {score}{' (own)' if own else ''} | " + " | ".join(cells)
                     + f" | {aurc} | {eaurc} | {len(summaries)} |")
    lines += ["", "## Paper protocol (for comparison with published tables only)", "",
              "The original code's: the test outputs shuffled with seed 10, the first 2,000 set aside, the "
              "threshold bisected on the remaining test samples themselves to within 0.3 points of the "
              "target coverage, and the error reported on those same samples.", "",
              "| method | score | " + " | ".join(f"{c}%" for c in TABLE_COVERAGES) + " |",
              "|---|---|" + "---|" * len(TABLE_COVERAGES)]
    for label, score, own, summaries in _rows(runs):
        cells = [_mean_std([s.get(f"final_paper_selective_error_{c}_{score}") for s in summaries])
                 for c in TABLE_COVERAGES]
        lines.append(f"| {label} | {score}{' (own)' if own else ''} | " + " | ".join(cells) + " |")
    lines += ["", "## Test error without abstaining and training time", "",
              "| method | test error | seconds per run |", "|---|---|---|"]
    for label in dict.fromkeys(r["label"] for r in runs):
        summaries = [r["summary"] for r in runs if r["label"] == label]
        error = _mean_std([1 - s["final_test_accuracy"] for s in summaries if "final_test_accuracy" in s])
        seconds = statistics.fmean(s.get("seconds", 0.0) for s in summaries)
        lines.append(f"| {label} | {error} | {seconds:.0f} |")
    return "\n".join(lines) + "\n"


def mean_curve(runs: list[dict], score: str, grid: np.ndarray) -> np.ndarray:
    """Selective risk at the coverages ``grid`` (fractions), averaged over ``runs``."""
    curves = []
    for run in runs:
        coverage, risk = risk_coverage_curve(run["scores"][f"score_{score}"], run["scores"]["wrong"])
        curves.append(np.interp(grid, coverage, risk))
    return np.mean(curves, axis=0)


def plot_risk_coverage(runs: list[dict], path: Path) -> Path:
    """One line per method label, ranked by its own score, over coverage 10% to 100%."""
    from selfadapt.plots import plt

    grid = np.linspace(0.1, 1.0, 181)
    fig, ax = plt.subplots(figsize=(6.5, 4.5), dpi=120)
    for label in dict.fromkeys(r["label"] for r in runs):
        group = [r for r in runs if r["label"] == label]
        own = str(group[0]["scores"]["primary"])
        ax.plot(100 * grid, 100 * mean_curve(group, own, grid), label=f"{label} ({own}, {len(group)} seeds)")
    return _save(fig, ax, path, "coverage (%)", "selective error on the test set (%)",
                 "risk-coverage (each method ranked by its own score)")


def plot_validation_aurc(runs: list[dict], path: Path) -> Path:
    """Per method label: mean validation AURC per epoch of its own score (solid) and of ``sr`` (dashed)."""
    from selfadapt.plots import plt

    fig, ax = plt.subplots(figsize=(6.5, 4.5), dpi=120)
    for i, label in enumerate(dict.fromkeys(r["label"] for r in runs)):
        group = [r for r in runs if r["label"] == label]
        own = str(group[0]["scores"]["primary"])
        for score, style in [(own, "-")] + ([("sr", "--")] if own != "sr" else []):
            series = [[m.get(f"val_aurc_{score}") for m in r["metrics"]] for r in group]
            epochs = [e for e in range(min(map(len, series))) if all(s[e] is not None for s in series)]
            if epochs:
                ax.plot(epochs, [100 * statistics.fmean(s[e] for s in series) for e in epochs], style,
                        color=f"C{i}", label=f"{label} ({score})")
    return _save(fig, ax, path, "epoch", "validation AURC (%)",
                 "validation AURC: own score (solid), softmax response (dashed)")


def _save(fig, ax, path: Path, xlabel: str, ylabel: str, title: str) -> Path:
    from selfadapt.plots import plt

    ax.set(xlabel=xlabel, ylabel=ylabel, title=title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def selective_report(results: GridResults) -> list[str]:
    """``selective.md`` beside ``results.md``, ``plots/risk-coverage.png`` and ``plots/val-aurc.png``,
    for the finished runs that wrote ``selective_scores.npz``; a pointer to them in ``results.md``."""
    runs = finished_runs(results)
    if not runs:
        return []
    history = json.loads((results.out / "bench.json").read_text()) if (results.out / "bench.json").is_file() else []
    atomic_write_bytes(results.out / "selective.md", markdown(runs, history[-1]["command"] if history else "").encode())
    plot_risk_coverage(runs, results.plots / "risk-coverage.png")
    plot_validation_aurc(runs, results.plots / "val-aurc.png")
    return ["## Selective classification", "",
            "Risk-coverage tables (honest and paper protocols): [selective.md](selective.md); figures "
            "`plots/risk-coverage.png` and `plots/val-aurc.png`.", ""]


GRID_REPORTS = [GridReport("selective", selective_report)]
