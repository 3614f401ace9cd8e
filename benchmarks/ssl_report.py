"""The self-supervised table and collapse curves of a finished grid (``selfadapt bench`` output).

Prints a markdown table (mean ± sample std over seeds of the final kNN and linear-probe accuracy,
the collapse monitor at the last epoch, training seconds) and writes ``OUT/plots/collapse-std.png``
and ``OUT/plots/effective-rank.png``: the collapse monitor per epoch, one curve per method (mean
over seeds).

    python benchmarks/ssl_report.py runs/ssl-cifar10-subset-cpu
"""
from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

from selfadapt.grid import _row_label, load_grid, mean_curve
from selfadapt.plots import plot_curves
from selfadapt.rundir import read_metrics

COLUMNS = [("final_knn_accuracy", "kNN acc. %", 100), ("final_linear_accuracy", "linear acc. %", 100),
           ("final_collapse_std", "collapse std x sqrt(D)", 1), ("final_effective_rank", "effective rank", 1),
           ("seconds", "wall s per run", 1)]


def _cell(values: list[float], scale: float) -> str:
    if not values:
        return "n/a"
    spread = statistics.stdev(values) * scale if len(values) > 1 else 0.0
    return f"{statistics.fmean(values) * scale:.2f} ± {spread:.2f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", help="the grid's output directory")
    out = Path(parser.parse_args().out)
    grid = load_grid(out / "grid.toml")
    print("| run | seeds | " + " | ".join(title for _, title, _ in COLUMNS) + " |")
    print("|---|---|" + "---|" * len(COLUMNS))
    curves = {}
    for row in grid.rows:
        folders = [out / "runs" / r.name for r in grid.runs if r.row == row]
        folders = [f for f in folders if (f / "summary.json").is_file()]
        summaries = [json.loads((f / "summary.json").read_text()) for f in folders]
        label = _row_label(*row)
        cells = [_cell([s[key] for s in summaries if s.get(key) is not None], scale) for key, _, scale in COLUMNS]
        print(f"| {label} | {len(summaries)} | " + " | ".join(cells) + " |")
        curves[label] = [read_metrics(f / "metrics.jsonl") for f in folders]
    plots = out / "plots"
    plots.mkdir(exist_ok=True)
    for key, name in (("collapse_std", "collapse-std"), ("effective_rank", "effective-rank")):
        plot_curves({label: mean_curve(runs, key) for label, runs in curves.items() if runs},
                    plots / f"{name}.png", ylabel=f"{key} (mean over seeds)", title=f"{grid.name}: {key} per epoch")
        print(f"wrote {plots / name}.png")


if __name__ == "__main__":
    main()
