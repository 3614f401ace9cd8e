"""Wall time of examples/lightning_sat.py against the same training in selfadapt's own engine (CPU).

Same data (the example's digits with 30% injected label noise), model (its MLP), epochs, batch size,
optimiser (SGD 0.1, momentum 0.9, wd 5e-4, cosine per epoch) and SAT settings (automatic start and
momentum); each side trains, then measures test accuracy and label-error precision/recall. Runs
alternate (Lightning, engine, Lightning, ...) in one process with one thread; the ratio is of the
medians. A hand-written loop over the example's DataLoader is timed beside them, to tell Lightning's own
cost from the DataLoader's. A fresh interpreter's import time of each stack is measured apart.

    python benchmarks/lightning_vs_engine.py [--repeats 3] [--epochs 30]
"""
from __future__ import annotations

import argparse
import logging
import runpy
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch
from torch.utils.data import DataLoader, TensorDataset

from selfadapt import IndexedDataset, SelfAdaptiveTraining
from selfadapt.config.provenance import processor_name
from selfadapt.config.sections import EngineSettings
from selfadapt.data.loader import DeviceLoader
from selfadapt.engine.trainer import Trainer
from selfadapt.objectives import LogitLoss

EXAMPLE = runpy.run_path(str(Path(__file__).resolve().parent.parent / "examples" / "lightning_sat.py"))


def engine_run(epochs: int, batch_size: int, seed: int = 0) -> dict:
    """What the example does, through selfadapt's Trainer and DeviceLoader."""
    torch.manual_seed(seed)
    data = EXAMPLE["make_data"](seed=seed)
    model = EXAMPLE["make_net"]()
    sat = SelfAdaptiveTraining(data["y"], num_classes=10, start_epoch="auto", momentum="auto", epochs=epochs)
    loader = DeviceLoader(data["x"], data["y"], batch_size=batch_size, shuffle=True, seed=seed)
    config = EngineSettings(epochs=epochs, optimizer="sgd", lr=0.1, momentum=0.9, weight_decay=5e-4,
                            schedule="cosine", device="cpu", progress=False)
    Trainer(model, LogitLoss(sat), loader, config).fit()
    return _scores(model, sat, data)


def plain_loop_run(epochs: int, batch_size: int, seed: int = 0) -> dict:
    """The same training as a hand-written loop over the example's DataLoader (no framework): what
    separates Lightning's own cost from the DataLoader's."""
    torch.manual_seed(seed)
    data = EXAMPLE["make_data"](seed=seed)
    model = EXAMPLE["make_net"]()
    sat = SelfAdaptiveTraining(data["y"], num_classes=10, start_epoch="auto", momentum="auto", epochs=epochs)
    loader = DataLoader(IndexedDataset(TensorDataset(data["x"], data["y"])), batch_size=batch_size, shuffle=True)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=5e-4)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, epochs)
    for epoch in range(epochs):
        for x, y, index in loader:
            loss = sat(model(x), y, index, epoch)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        sat.end_epoch(epoch)
        schedule.step()
    return _scores(model, sat, data)


def _scores(model, sat, data) -> dict:
    with torch.no_grad():
        accuracy = (model.eval()(data["x_test"]).argmax(1) == data["y_test"]).float().mean().item()
    issues = sat.suspected_label_errors()
    hits = int(data["wrong"][issues.index].sum())
    return {"test_accuracy": accuracy, "precision": hits / max(len(issues.index), 1),
            "recall": hits / int(data["wrong"].sum()), "start_epoch": sat.start_epoch}


def lightning_run(epochs: int, batch_size: int) -> dict:
    return EXAMPLE["main"](epochs, batch_size, verbose=False)


def import_seconds(module: str) -> float:
    """Median over 3 fresh interpreters of ``import module``."""
    code = f"import time; t = time.perf_counter(); import {module}; print(time.perf_counter() - t)"
    return statistics.median(float(subprocess.check_output([sys.executable, "-c", code], text=True))
                             for _ in range(3))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--batch-size", type=int, default=64)
    args = parser.parse_args()
    torch.set_num_threads(1)
    logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)
    runs = {"lightning": lightning_run, "engine": engine_run, "plain loop": plain_loop_run}
    times, results = {k: [] for k in runs}, {}
    for _ in range(args.repeats):
        for name, run in runs.items():
            start = time.perf_counter()
            results[name] = run(args.epochs, args.batch_size)
            times[name].append(time.perf_counter() - start)
    print(f"{processor_name()}, torch {torch.__version__}, 1 thread, "
          f"{args.epochs} epochs of 1297 digits, batch {args.batch_size}, {args.repeats} alternating repeats")
    for name in runs:
        r = results[name]
        print(f"{name:10s}: median {statistics.median(times[name]):6.2f} s (runs {', '.join(f'{t:.2f}' for t in times[name])}); "
              f"test accuracy {r['test_accuracy']:.4f}, SAT start {r['start_epoch']}, label errors precision "
              f"{r['precision']:.3f} recall {r['recall']:.3f}")
    median = {name: statistics.median(t) for name, t in times.items()}
    print(f"ratio lightning / engine: {median['lightning'] / median['engine']:.2f}; plain loop with the same "
          f"DataLoader / engine: {median['plain loop'] / median['engine']:.2f}")
    print(f"import in a fresh interpreter: lightning.pytorch {import_seconds('lightning.pytorch'):.2f} s, "
          f"selfadapt.engine.trainer {import_seconds('selfadapt.engine.trainer'):.2f} s")


if __name__ == "__main__":
    main()
