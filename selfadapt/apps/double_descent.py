"""Double-descent figures and tables of a benchmark grid: error against a model-size axis and epoch.

:func:`write_double_descent` is called by the grid's aggregation (``selfadapt bench GRID``) and
writes, for runs that log ``test_accuracy`` and a train accuracy on the given, noisy labels:
``train_accuracy_given_eval`` (the ``memorisation`` evaluator's: eval mode, the un-augmented
training set, every ``--memorisation-every`` epochs and after the last) where every run has it, else,
labelled as such, ``train_accuracy_given`` (the engine's running train-mode accuracy over each
epoch's augmented batches, while the weights move; runs trained before the evaluator measured it):

- ``error-vs-<axis>.png`` per numeric axis (model-wise: ``width``): final test error and final
  train error against the axis, mean ± std over seeds, with the interpolation threshold of
  cross-entropy (:func:`interpolation_threshold`) marked;
- ``error-vs-epoch-<cell>[-<axis>=<value>...].png`` per noise cell and axes values (epoch-wise):
  test and train error against the epoch on a log axis, every run row of that cell on one figure;
- ``double-descent.md``: per numeric axis, the errors behind the figure, the interpolation
  threshold and the size of the test-error peak (:func:`peak_contrast`).

The grids ``docs/grids/double-descent-*.toml`` draw the model-wise and epoch-wise curves.
"""
from __future__ import annotations

import math
import statistics
from pathlib import Path

from selfadapt.grid.reports import GridReport, GridResults
from selfadapt.grid.spec import cell_name, row_label, text

# Train error at or below this counts as interpolating: the noisy labels are fitted.
INTERPOLATION_TOLERANCE = 0.01
INTERPOLATING_METHOD = "ce"
TEST = "test_accuracy"
TRAIN = "train_accuracy_given_eval"          # memorisation evaluator: eval mode, un-augmented training set
TRAIN_RUNNING = "train_accuracy_given"      # the engine's running train-mode accuracy over augmented batches
TRAIN_WHAT = {TRAIN: "eval mode, un-augmented training set",
              TRAIN_RUNNING: "running train-mode accuracy over augmented batches: runs without the eval-mode one"}
TRAIN_AXIS = {TRAIN: "train error, given labels (eval mode)", TRAIN_RUNNING: "train error, given labels (running)"}


def train_metric(runs: list[list[dict]]) -> str:
    """:data:`TRAIN` where every run's metrics have it, else :data:`TRAIN_RUNNING` (older runs).

    >>> train_metric([[{"train_accuracy_given": 0.9, "train_accuracy_given_eval": 0.95}]])
    'train_accuracy_given_eval'
    >>> train_metric([[{"train_accuracy_given": 0.9}], [{"train_accuracy_given_eval": 0.95}]])
    'train_accuracy_given'
    """
    return TRAIN if all(any(m.get(TRAIN) is not None for m in metrics) for metrics in runs) else TRAIN_RUNNING


def interpolation_threshold(points: list[tuple[float, float]], tolerance: float = INTERPOLATION_TOLERANCE
                            ) -> float | None:
    """The smallest x from which the train error stays at or below ``tolerance`` for every larger x.

    ``points`` are ``(x, train error)``; ``None`` when even the largest x does not interpolate.

    >>> interpolation_threshold([(8, 0.2), (16, 0.0), (32, 0.03), (64, 0.0), (128, 0.004)])
    64
    """
    threshold = None
    for x, error in sorted(points, reverse=True):
        if error > tolerance:
            break
        threshold = x
    return threshold


def peak_contrast(points: list[tuple[float, float]], factor: float = 4.0) -> dict | None:
    """The highest interior local maximum of ``(x, error)`` points and how far it stands above the
    points nearest (in log scale) to ``x / factor`` and ``x * factor`` (a clear peak, by our criterion,
    stands at least 3 points above both); ``None`` without an interior local maximum.

    >>> peak_contrast([(4, 0.25), (8, 0.22), (16, 0.24), (32, 0.31), (64, 0.28), (128, 0.22), (256, 0.2)])
    {'peak': 32, 'error': 0.31, 'left': 8, 'left_error': 0.22, 'right': 128, 'right_error': 0.22}
    """
    points = sorted(points)
    peaks = [points[i] for i in range(1, len(points) - 1)
             if points[i][1] >= points[i - 1][1] and points[i][1] >= points[i + 1][1]]
    if not peaks:
        return None
    x, error = max(peaks, key=lambda p: p[1])

    def nearest(target):
        return min(points, key=lambda p: abs(math.log(p[0] / target)))
    (left, left_error), (right, right_error) = nearest(x / factor), nearest(x * factor)
    return {"peak": x, "error": error, "left": left, "left_error": left_error, "right": right,
            "right_error": right_error}


def clear_peak(peak: dict, margin: float = 0.03) -> bool:
    """Whether the peak is clear: it stands ``margin`` (3 points) above both of its comparison widths."""
    return peak["error"] - peak["left_error"] >= margin and peak["error"] - peak["right_error"] >= margin


def error_points(rows: list[dict], axis: str, metric: str) -> list[tuple[float, float, float | None]]:
    """``(axis value, mean error, std)`` of the final ``metric`` (an accuracy) over the given result rows."""
    points = []
    for row in rows:
        if row.get(axis) is None or row.get(f"final_{metric}_mean") is None:
            continue
        points.append((row[axis], 1.0 - row[f"final_{metric}_mean"], row.get(f"final_{metric}_std")))
    return sorted(points)


def epoch_error_points(runs: list[list[dict]], metric: str) -> list[tuple[int, float, float | None]]:
    """``(epochs trained, mean error, std)`` per epoch over the runs' metrics (std from two runs on): after
    0-based epoch ``e``, ``e + 1`` epochs are trained (the log axis of the epoch-wise figure)."""
    points = []
    for epoch in range(max((len(m) for m in runs), default=0)):
        values = [1.0 - m[epoch][metric] for m in runs if epoch < len(m) and m[epoch].get(metric) is not None]
        if values:
            points.append((epoch + 1, statistics.fmean(values),
                           statistics.stdev(values) if len(values) >= 2 else None))
    return points


def double_descent(results: GridResults) -> list[str]:
    """Writes the figures and ``double-descent.md`` of the module docstring; adds nothing to
    ``results.md``."""
    write_double_descent(results.grid, results.out, results.finished, results.rows)
    return []


def write_double_descent(grid, out: Path, finished: dict, rows: list[dict]) -> list[Path]:
    """The model-wise and epoch-wise figures and the table of a grid's finished runs in ``out``
    (see the module docstring); nothing for runs that do not log both errors."""
    from selfadapt.plots import plot_panels

    folder = out / "plots"
    written, tables = [], []
    tested = {name: metrics for name, (_, metrics) in finished.items() if any(m.get(TEST) is not None for m in metrics)}
    train = train_metric(list(tested.values()))
    logged = {name: metrics for name, metrics in tested.items() if any(m.get(train) is not None for m in metrics)}
    if not logged:
        return written
    train_title = TRAIN_AXIS[train]
    for axis, values in grid.axes.items():
        if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
            continue
        test, train_points, marks = {}, {}, {}
        for kind, level in grid.cells:
            cell_rows = [r for r in rows if (r["noise"], r["level"]) == (kind, level) and r["n_seeds"]]
            for label in dict.fromkeys(_axis_series_label(r, grid.axes, axis) for r in cell_rows):
                mine = [r for r in cell_rows if _axis_series_label(r, grid.axes, axis) == label]
                label = f"{label} {cell_name(kind, level)}" if len(grid.cells) > 1 else label
                test[label] = error_points(mine, axis, TEST)
                train_points[label] = error_points(mine, axis, train)
                if mine[0]["method"] == INTERPOLATING_METHOD:
                    threshold = interpolation_threshold([(x, e) for x, e, _ in train_points[label]])
                    if threshold is not None:
                        marks[f"{label} interpolation threshold (train error <= "
                              f"{100 * INTERPOLATION_TOLERANCE:g}% from here on)"] = threshold
        test = {k: v for k, v in test.items() if v}
        if test:
            tables += _axis_table(grid.name, axis, test, train_points, marks, TRAIN_WHAT[train])
            written.append(plot_panels(
                [("final test error (mean ± std over seeds)", test),
                 (f"final {train_title}", {k: v for k, v in train_points.items() if v})],
                folder / f"error-vs-{axis}.png", xlabel=axis, title=f"{grid.name}: model-wise", marks=marks))
    for kind, level in grid.cells:
        by_axes = {}
        for run in grid.runs:
            if (run.noise, run.level) == (kind, level) and run.name in logged:
                others = tuple((k, v) for k, v in run.axes if k in grid.axes)
                by_axes.setdefault(others, {}).setdefault(run.method, []).append(logged[run.name])
        for axes, by_method in by_axes.items():
            suffix = "".join(f"-{k}={text(v)}" for k, v in axes)
            marks = {f"{method}: targets from 0-based epoch {start}": start + 1 for method, start in _starts(
                [r for r in grid.runs if r.name in logged and (r.noise, r.level) == (kind, level)
                 and tuple((k, v) for k, v in r.axes if k in grid.axes) == axes], finished).items()}
            title = f"{grid.name}: {row_label(cell_name(kind, level), axes)}, epoch-wise"
            written.append(plot_panels(
                [("test error (mean ± std over seeds)", {m: epoch_error_points(r, TEST) for m, r in by_method.items()}),
                 (train_title, {m: epoch_error_points(r, train) for m, r in by_method.items()})],
                folder / f"error-vs-epoch-{cell_name(kind, level)}{suffix}.png", xlabel="epochs trained", title=title,
                marks=marks))
    if tables:
        (out / "double-descent.md").write_text("\n".join(tables) + "\n")
        written.append(out / "double-descent.md")
    return written


def _axis_table(name: str, axis: str, test: dict, train: dict, marks: dict, train_what: str) -> list[str]:
    """Markdown: final test / train error (%) per axis value and series, the threshold, the peaks."""
    def cell(points, x):
        found = [(m, s) for px, m, s in points if px == x]
        if not found:
            return "n/a"
        mean, std = found[0]
        return f"{100 * mean:.2f}" + (f" ± {100 * std:.2f}" if std is not None else "")
    xs = sorted({x for points in test.values() for x, _, _ in points})
    lines = [f"## {name}: final error against {axis} (%, mean ± sample std over seeds)", "",
             f"Train error on the given labels: {train_what}.", "",
             f"| {axis} | " + " | ".join(f"{label} test | {label} train (given labels)" for label in test) + " |",
             "|---:|" + "---|---|" * len(test)]
    lines += [f"| {x:g} | " + " | ".join(f"{cell(test[label], x)} | {cell(train.get(label, []), x)}"
                                         for label in test) + " |" for x in xs]
    lines.append("")
    lines += [f"{label}: {axis} {x:g}." for label, x in marks.items()] or \
        [f"No interpolation threshold: the train error of {INTERPOLATING_METHOD} stays above "
         f"{100 * INTERPOLATION_TOLERANCE:g}%."]
    for label, points in test.items():
        peak = peak_contrast([(x, m) for x, m, _ in points])
        lines.append(f"{label}: no interior peak of the test error." if peak is None else
                     f"{label}: test-error peak {100 * peak['error']:.2f}% at {axis} {peak['peak']:g}; "
                     f"{100 * (peak['error'] - peak['left_error']):+.2f} points against {axis} {peak['left']:g}, "
                     f"{100 * (peak['error'] - peak['right_error']):+.2f} against {axis} {peak['right']:g} "
                     f"({'' if clear_peak(peak) else 'not '}a clear peak: >= 3 points above both).")
    return lines + [""]


def _starts(runs, finished: dict) -> dict[str, int]:
    """Method -> the 0-based epoch its targets start (SAT's ``settings_used``), where a run records one."""
    starts = {}
    for run in runs:
        start = finished[run.name][0].get("settings_used", {}).get("sat_start_epoch")
        if start is not None:
            starts.setdefault(run.method, start)
    return starts


def _axis_series_label(row: dict, axes: dict, axis: str) -> str:
    """The method and the values of the other axes: one line of an error-vs-axis figure."""
    parts = [row["method"], *(f"{k}={row[k]}" for k in axes if k != axis and row.get(k) is not None)]
    return " ".join(parts)


GRID_REPORTS = [GridReport("double-descent", double_descent)]
