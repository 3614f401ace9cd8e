"""What an application adds to a grid's results: its own tables and figures.

An application lists its reports in ``GRID_REPORTS`` (found by :mod:`selfadapt.apps.registry`).
The grid's aggregation (:mod:`selfadapt.grid.aggregate`) names no application: it hands every
report the :class:`GridResults` of the finished runs; a report writes its files (under
``results.plots``, or beside ``results.md``) and returns the markdown it adds to ``results.md``
(nothing where the runs measured nothing it shows), and may add columns to ``results.csv``.

>>> report = GridReport("none", lambda results: [])
>>> report.name
'none'
"""
from __future__ import annotations

import statistics
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from selfadapt.grid.spec import Grid, cell_name, row_label


@dataclass
class GridResults:
    """The finished runs of a grid: ``finished`` maps a run's name to its ``summary.json`` and its
    ``metrics.jsonl`` records; ``rows`` are the rows of ``results.csv`` (mean and std over seeds)."""

    grid: Grid
    out: Path
    finished: dict[str, tuple[dict, list[dict]]]
    rows: list[dict]

    @property
    def plots(self) -> Path:
        """The folder figures go in (created on first use)."""
        folder = self.out / "plots"
        folder.mkdir(parents=True, exist_ok=True)
        return folder

    def cell_metrics(self, kind: str, level: str) -> dict[str, list[list[dict]]]:
        """Per run row (its label), the per-epoch metrics of its finished runs in one noise cell."""
        grid = self.grid
        by_row = {row_label(*row): [self.finished[r.name][1] for r in grid.runs
                                    if r.row == row and (r.noise, r.level) == (kind, level) and r.name in self.finished]
                  for row in grid.rows}
        return {label: runs for label, runs in by_row.items() if runs}

    def cell_title(self, kind: str, level: str) -> str:
        return f"{self.grid.name}: {kind}" + ("" if kind == "none" else f" {level}")

    def cell_file(self, kind: str, level: str) -> str:
        return cell_name(kind, level)


@dataclass(frozen=True)
class GridReport:
    """One application's tables and figures: ``write(results) -> markdown lines``; ``values``
    picks numbers out of a run's ``summary.json`` for ``results.csv`` (mean and std over seeds)."""

    name: str
    write: Callable[[GridResults], list[str]]
    values: Callable[[dict], dict[str, float]] | None = None


def mean_curve(runs: list[list[dict]], key: str) -> list[float | None]:
    """Per epoch, the mean of ``key`` over the runs that logged it (None where none did).

    >>> mean_curve([[{"a": 1.0}, {"a": 3.0}], [{"a": 2.0}]], "a")
    [1.5, 3.0]
    """
    length = max(len(metrics) for metrics in runs)
    out = []
    for epoch in range(length):
        values = [m[epoch][key] for m in runs if epoch < len(m) and m[epoch].get(key) is not None]
        out.append(statistics.fmean(values) if values else None)
    return out


def write_styled_curves(results: GridResults, styles: dict[str, str], labels: dict[str, str], prefix: str,
                        ylabel: str, needed: str | None = None) -> list[str]:
    """Per noise cell, one figure of several per-epoch metrics (``styles``: metric -> line style,
    ``labels``: metric -> legend) for every run row, where some run logged them (``needed``, or
    any of them); nothing to add to ``results.md``."""
    from selfadapt.plots import plot_styled_curves

    for kind, level in results.grid.cells:
        by_row = results.cell_metrics(kind, level)
        curves = {label: {key: mean_curve(runs, key) for key in styles} for label, runs in by_row.items()}
        keys = [needed] if needed else list(styles)
        if any(v is not None for c in curves.values() for key in keys for v in c[key]):
            plot_styled_curves(curves, styles, labels, results.plots / f"{prefix}-{cell_name(kind, level)}.png",
                              title=results.cell_title(kind, level), ylabel=ylabel)
    return []
