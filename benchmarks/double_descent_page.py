"""The model-wise double-descent table and figure of docs/results/double-descent/ from finished runs.

Reads the runs of ``selfadapt bench docs/grids/double-descent-model-cpu.toml --out GRID_OUT`` and,
with ``--earlier-ce DIR``, cross-entropy runs made before the grid by the width search (one
directory ``ce-w<width>-s<seed>`` per run, the same setting; an older build of the library whose
training reproduces bit for bit). Where both hold a run, the grid's is used and the two final test
errors must agree. Writes ``runs.csv`` (one line per run, with its source), ``model-wise.md`` (the
table, the interpolation threshold and the size of each test-error peak), ``model-wise.png`` and,
for each of ``--epoch-widths``, ``epoch-wise-width=W.png`` (test and train error per epoch, log axis).

    python benchmarks/double_descent_page.py --grid-out runs/dd-model-cpu \\
        --earlier-ce /work/ddwork/runs/S2-fmnist-mlp-n16k-r0.2-e300 --out docs/results/double-descent \\
        --epoch-widths 32,256
"""
from __future__ import annotations

import argparse
import csv
import json
import re
import statistics
from pathlib import Path

from selfadapt.apps.double_descent import (
    TEST,
    TRAIN_AXIS,
    TRAIN_WHAT,
    clear_peak,
    epoch_error_points,
    interpolation_threshold,
    peak_contrast,
    train_metric,
)
from selfadapt.grid.spec import load_grid
from selfadapt.grid.state import run_state
from selfadapt.plots import plot_panels


def final_train_error(folder: Path) -> tuple[float, str]:
    """The run's last train error on the given labels and which measure it is (see TRAIN_WHAT)."""
    metrics = [json.loads(line) for line in (folder / "metrics.jsonl").read_text().splitlines()]
    key = train_metric([metrics])
    return 1 - [m[key] for m in metrics if m.get(key) is not None][-1], key


def grid_runs(out: Path, grid_file: Path) -> list[dict]:
    records = []
    for run in load_grid(grid_file).runs:
        folder = out / "runs" / run.name
        if not (folder / "metrics.jsonl").is_file() or run_state(run, out) != "finished":
            continue
        summary = json.loads((folder / "summary.json").read_text())
        used = summary.get("settings_used", {})
        records.append({"method": run.method, "width": dict(run.axes)["width"], "seed": run.seed,
                        "test_error": 1 - summary["final_test_accuracy"],
                        **dict(zip(("train_error_given", "train_error_measure"), final_train_error(folder))),
                        "sat_momentum": used.get("sat_momentum", ""), "sat_start_epoch": used.get("sat_start_epoch", ""),
                        "train_seconds": round(summary["seconds"], 1), "source": f"grid {out.name}",
                        "folder": str(folder)})
    return records


def earlier_ce_runs(folder: Path) -> list[dict]:
    records = []
    for run in sorted(folder.glob("ce-w*-s*")):
        if not (run / "summary.json").is_file():
            continue
        width, seed = map(int, re.fullmatch(r"ce-w(\d+)-s(\d+)", run.name).groups())
        summary = json.loads((run / "summary.json").read_text())
        records.append({"method": "ce", "width": width, "seed": seed, "test_error": 1 - summary["final_test_accuracy"],
                        **dict(zip(("train_error_given", "train_error_measure"), final_train_error(run))),
                        "sat_momentum": "", "sat_start_epoch": "", "train_seconds": round(summary["seconds"], 1),
                        "source": f"width search {folder.name} (older build)", "folder": str(run)})
    return records


def merge(grid: list[dict], earlier: list[dict], widths: set) -> tuple[list[dict], int]:
    """Grid runs, plus earlier runs where the grid has none, and how many runs both hold (their test
    errors must agree)."""
    key = lambda r: (r["method"], r["width"], r["seed"])  # noqa: E731
    mine = {key(r): r for r in grid}
    both = 0
    for r in earlier:
        if key(r) in mine:
            assert abs(mine[key(r)]["test_error"] - r["test_error"]) < 1e-9, f"{key(r)} does not reproduce"
            both += 1
        elif r["width"] in widths:
            mine[key(r)] = r
    return sorted(mine.values(), key=lambda r: (r["method"], r["width"], r["seed"])), both


def series(records: list[dict], method: str, field: str) -> list[tuple[int, float, float | None]]:
    by_width = {}
    for r in records:
        if r["method"] == method:
            by_width.setdefault(r["width"], []).append(r[field])
    return [(w, statistics.fmean(v), statistics.stdev(v) if len(v) > 1 else None) for w, v in sorted(by_width.items())]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--grid-out", type=Path, required=True)
    parser.add_argument("--grid", type=Path, default=Path("docs/grids/double-descent-model-cpu.toml"))
    parser.add_argument("--earlier-ce", type=Path)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--epoch-widths", default="", help="widths of the epoch-wise figures, e.g. 32,256")
    args = parser.parse_args()
    widths = set(load_grid(args.grid).axes["width"])
    grid = grid_runs(args.grid_out, args.grid)
    records, reproduced = merge(grid, earlier_ce_runs(args.earlier_ce) if args.earlier_ce else [], widths)
    args.out.mkdir(parents=True, exist_ok=True)
    with open(args.out / "runs.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=[k for k in records[0] if k != "folder"], extrasaction="ignore")
        writer.writeheader()
        writer.writerows(records)
    methods = [m for m in ("ce", "sat") if any(r["method"] == m for r in records)]
    test = {m: series(records, m, "test_error") for m in methods}
    train = {m: series(records, m, "train_error_given") for m in methods}
    marks = {}
    threshold = interpolation_threshold([(w, e) for w, e, _ in train.get("ce", [])])
    if threshold is not None:
        marks["CE interpolation threshold (train error <= 1% from here on)"] = threshold

    def cell(points, width, method, field):
        found = [(m, s) for w, m, s in points if w == width]
        n = sum(1 for r in records if r["method"] == method and r["width"] == width)
        if not found:
            return "n/a"
        mean, std = found[0]
        return f"{100 * mean:.2f}" + (f" ± {100 * std:.2f}" if std is not None else "") + \
            (f" ({n})" if field == "test_error" else "")
    lines = ["| width | " + " | ".join(f"{m.upper()} test error (seeds) | {m.upper()} train error" for m in methods)
             + " | SAT momentum, start epoch |", "|---:|" + "---|---|" * len(methods) + "---|"]
    for width in sorted({r["width"] for r in records}):
        sat = next((r for r in records if r["method"] == "sat" and r["width"] == width), None)
        lines.append(f"| {width} | " + " | ".join(
            f"{cell(test[m], width, m, 'test_error')} | {cell(train[m], width, m, 'train')}" for m in methods)
            + (f" | {sat['sat_momentum']:.4f}, {sat['sat_start_epoch']} |" if sat else " | |"))
    lines += ["", f"CE runs retrained by the grid and also in the width search: {reproduced}, all with identical "
                  "final test error." if args.earlier_ce else ""]
    if threshold is not None:
        lines.append(f"CE's interpolation threshold (mean train error on the given labels <= 1% from this width on): {threshold}.")
    for m in methods:
        peak = peak_contrast([(w, e) for w, e, _ in test[m]])
        lines.append(f"{m.upper()}: no interior peak of the mean test error." if peak is None else
                     f"{m.upper()}: mean test-error peak {100 * peak['error']:.2f}% at width {peak['peak']}; "
                     f"{100 * (peak['error'] - peak['left_error']):+.2f} points against width {peak['left']}, "
                     f"{100 * (peak['error'] - peak['right_error']):+.2f} against width {peak['right']}"
                     f" ({'' if clear_peak(peak) else 'not '}a clear peak: >= 3 points above both).")
    measures = sorted({r["train_error_measure"] for r in records})
    lines.append(f"Train error on the given labels: {'; '.join(TRAIN_WHAT[m] for m in measures)}.")
    (args.out / "model-wise.md").write_text("\n".join(lines) + "\n")
    axis = TRAIN_AXIS[measures[0]] if len(measures) == 1 else "train error, given labels (mixed measures)"
    plot_panels([("final test error (mean ± std over seeds)", test), (f"final {axis}", train)], args.out / "model-wise.png",
                xlabel="MLP width (hidden units per layer)", marks=marks,
                title="Fashion-MNIST 16k, 20% symmetric noise, 300 epochs of Adam: CE against SAT")
    for width in (int(w) for w in args.epoch_widths.split(",") if w):
        curves = {}
        for m in methods:
            runs = [[json.loads(line) for line in (Path(r["folder"]) / "metrics.jsonl").read_text().splitlines()]
                    for r in records if r["method"] == m and r["width"] == width]
            if runs:
                curves[f"{m.upper()} ({len(runs)} seed{'s' if len(runs) > 1 else ''})"] = runs
        sat = next((r for r in records if r["method"] == "sat" and r["width"] == width), None)
        key = train_metric([run for runs in curves.values() for run in runs])
        plot_panels([("test error (mean ± std over seeds)", {k: epoch_error_points(v, TEST) for k, v in curves.items()}),
                     (TRAIN_AXIS[key], {k: epoch_error_points(v, key) for k, v in curves.items()})],
                    args.out / f"epoch-wise-width={width}.png", xlabel="epoch",
                    marks={f"SAT targets from epoch {sat['sat_start_epoch'] + 1}": sat["sat_start_epoch"] + 1} if sat else None,
                    title=f"Epoch-wise, MLP width {width}: CE against SAT")
    print((args.out / "model-wise.md").read_text())


if __name__ == "__main__":
    main()
