"""The untrained-encoder baseline of a self-supervised grid: kNN and linear-probe accuracy of a
randomly initialised backbone, for each seed of the grid, under exactly the grid's data settings.

The encoder is built as the grid's first method builds it (same model, width and init seed), then
the grid's evaluators run once without any training. Prints one line per seed and the mean.

    python benchmarks/ssl_random_init.py docs/grids/ssl-cifar10-subset-cpu.toml
"""
from __future__ import annotations

import argparse
import statistics

import torch

from selfadapt.experiment import build_run
from selfadapt.grid.spec import load_grid


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("grid", help="a self-supervised grid file")
    args = parser.parse_args()
    grid = load_grid(args.grid)
    first = grid.methods[0]
    results = []
    for run in (r for r in grid.runs if r.method == first and r.axes == grid.runs[0].axes):
        parts = build_run(run.config, device=run.config.engine.device, verbose=False)
        metrics = {}
        for evaluator in parts.evaluators:
            metrics.update(evaluator(parts.model, parts.objective, parts.eval_data, epoch=0))
        results.append(metrics)
        shown = ", ".join(f"{k} {v:.4f}" for k, v in metrics.items() if isinstance(v, float))
        print(f"random-init seed {run.seed}: {shown}", flush=True)
    for key in ("knn_accuracy", "linear_accuracy"):
        values = [m[key] for m in results if m.get(key) is not None]
        if values:
            spread = statistics.stdev(values) if len(values) > 1 else 0.0
            print(f"random-init {key}: mean {statistics.mean(values):.4f} +- {spread:.4f} over {len(values)} seeds")


if __name__ == "__main__":
    torch.set_num_threads(1)
    main()
