"""Self-supervised learning's table and figures for benchmark grids.

For runs that measured a representation (the ``knn`` or ``linear-probe`` evaluators):

- ``results.md``: mean ± sample std over seeds of the final kNN and linear-probe accuracy, the
  collapse monitor at the last epoch and the training seconds, per run row (all noise cells);
- ``plots/collapse-std.png`` and ``plots/effective-rank.png``: the collapse monitor per epoch, one
  curve per run row (mean over seeds).
"""
from __future__ import annotations

import statistics

from selfadapt.grid.reports import GridReport, GridResults, mean_curve
from selfadapt.grid.spec import row_label

COLUMNS = [("final_knn_accuracy", "kNN acc. %", 100), ("final_linear_accuracy", "linear acc. %", 100),
           ("final_collapse_std", "collapse std x sqrt(D)", 1), ("final_effective_rank", "effective rank", 1),
           ("seconds", "wall s per run", 1)]
MONITORS = (("collapse_std", "collapse-std"), ("effective_rank", "effective-rank"))


def _cell(values: list[float], scale: float) -> str:
    """``mean ± sample std`` of ``values`` times ``scale`` (``± 0.00`` for one value).

    >>> _cell([0.5, 0.7], 100)
    '60.00 ± 14.14'
    """
    if not values:
        return "n/a"
    spread = statistics.stdev(values) * scale if len(values) > 1 else 0.0
    return f"{statistics.fmean(values) * scale:.2f} ± {spread:.2f}"


def representation_table(results: GridResults) -> list[str]:
    """The table of the module docstring, and the collapse figures; nothing without kNN or probe runs."""
    grid = results.grid
    summaries = {name: summary for name, (summary, _) in results.finished.items()
                 if summary.get("final_knn_accuracy") is not None or summary.get("final_linear_accuracy") is not None}
    if not summaries:
        return []
    lines = ["## Representations (mean ± sample std over seeds)", "",
             "| run | seeds | " + " | ".join(title for _, title, _ in COLUMNS) + " |",
             "|---|---|" + "---|" * len(COLUMNS)]
    curves = {}
    for row in grid.rows:
        names = [r.name for r in grid.runs if r.row == row and r.name in summaries]
        mine = [summaries[n] for n in names]
        cells = [_cell([s[key] for s in mine if s.get(key) is not None], scale) for key, _, scale in COLUMNS]
        lines.append(f"| {row_label(*row)} | {len(mine)} | " + " | ".join(cells) + " |")
        curves[row_label(*row)] = [results.finished[n][1] for n in names]
    _collapse_figures(results, {label: runs for label, runs in curves.items() if runs})
    return lines + [""]


def _collapse_figures(results: GridResults, curves: dict[str, list[list[dict]]]) -> None:
    from selfadapt.plots import plot_curves

    for key, name in MONITORS:
        if any(m.get(key) is not None for runs in curves.values() for metrics in runs for m in metrics):
            plot_curves({label: mean_curve(runs, key) for label, runs in curves.items()},
                        results.plots / f"{name}.png", ylabel=f"{key} (mean over seeds)",
                        title=f"{results.grid.name}: {key} per epoch")


GRID_REPORTS = [GridReport("self-supervised", representation_table)]
