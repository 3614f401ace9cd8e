"""The evidence behind SAT's automatic start epoch and momentum (``selfadapt.auto_start``).

For each development setting of a TOML file (never the validation settings), one invocation measures:

1. **peaks**: cross-entropy on the training data minus a held-out share (as the automatic rule holds
   it out), and after every epoch, in eval mode, the accuracy on the held-out samples against
   their *given* (noisy) labels and against their true labels, and the clean test accuracy. Does
   the noisy held-out accuracy peak where the clean accuracies peak?
2. **fixed**: SAT from a fixed start epoch, for a sweep of start epochs (momentum by the residue rule):
   how sensitive is the finder's F1 to the start epoch, and where is its best?
3. **auto**: SAT with the automatic rule for each combination of ``--patience`` and ``--residue``.

Every SAT row gives flags against the known truth (precision, recall, F1), the ROC AUC of the score
``1 - t[given]``, the start epoch and momentum, and the final test accuracy. Results go to
``OUT/<setting>.json``; finished settings are skipped when the command is run again.

Example (the development runs of docs/results/label-issues.md)::

    nice -n 10 python benchmarks/auto_start_rule.py docs/results/label-issues/dev-settings.toml \\
        --threads 1 --out runs/auto-start-dev
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

from selfadapt.auto_start import momentum_for, stratified_holdout
from selfadapt.data.loader import DeviceLoader
from selfadapt.engine import Trainer
from selfadapt.evaluators import Evaluator, predict_logits
from selfadapt.evaluators.accuracy import TestAccuracy
from selfadapt.experiment import build_run
from selfadapt.label_issues import label_issue_scores, ranking_scores, suspected_label_errors
from selfadapt.objectives import SelfAdaptiveTraining
from selfadapt.objectives.base import LogitLoss
from selfadapt.settings import RunConfig, load_toml


class HeldOutCrossEntropy(nn.Module):
    """Cross-entropy on the samples outside ``held_out`` (the automatic rule's CE phase, for ever)."""

    def __init__(self, held_out: torch.Tensor):
        super().__init__()
        self.register_buffer("held_out", held_out)

    def forward(self, logits, targets, index, epoch):
        keep = ~self.held_out[index]
        per_sample = nn.functional.cross_entropy(logits.float(), targets, reduction="none")
        return (per_sample * keep).sum() / keep.sum().clamp_min(1)


class HeldOutCurves(Evaluator):
    """Eval-mode accuracy of the held-out samples against their given and their true labels."""

    name = "held-out"

    def __init__(self, held_out: torch.Tensor, clean_labels: torch.Tensor):
        super().__init__()
        self.rows, self.clean = torch.nonzero(held_out).flatten(), clean_labels[held_out]

    def __call__(self, model, objective, data, epoch):
        loader = DeviceLoader(data.train.images[self.rows], data.train.labels[self.rows], batch_size=1024,
                              device=data.train.device)
        predicted = predict_logits(model, objective, loader).argmax(1).cpu()
        return {"holdout_noisy_accuracy": (predicted == loader.labels.cpu()).float().mean().item(),
                "holdout_clean_accuracy": (predicted == self.clean).float().mean().item()}


def held_out_share(n: int, holdout: float = 0.1, min_holdout: int = 200) -> float:
    return min(max(holdout, min_holdout / n), 0.25)  # as selfadapt.auto_start.AutoStart


def peaks(config: RunConfig) -> dict:
    parts = build_run(config, device="cpu", verbose=False)
    data = parts.data
    held = stratified_holdout(data.labels, held_out_share(len(data.labels)), config.data_seed)
    objective = LogitLoss(HeldOutCrossEntropy(held))
    evaluators = [TestAccuracy(), HeldOutCurves(held, data.clean_labels)]
    engine = dataclasses.replace(config.engine, progress=False)
    history = Trainer(parts.model, objective, parts.train_loader, engine, evaluators=evaluators,
                      eval_data=parts.eval_data).fit()
    curves = {k: [m[k] for m in history] for k in ("test_accuracy", "holdout_noisy_accuracy", "holdout_clean_accuracy")}
    return {"curves": curves, "peak_epoch": {k: int(np.argmax(v)) for k, v in curves.items()},
            "held_out": int(held.sum())}


def sat_run(config: RunConfig, *, start_epoch, momentum, patience: int = 3, residue: float = 0.01) -> dict:
    parts = build_run(config, device="cpu", verbose=False)
    data, epochs = parts.data, config.engine.epochs
    sat = SelfAdaptiveTraining(data.labels, data.dataset.num_classes, momentum=momentum, start_epoch=start_epoch,
                               epochs=epochs, patience=patience, residue=residue, seed=config.data_seed)
    engine = dataclasses.replace(config.engine, progress=False)
    start = time.perf_counter()
    history = Trainer(parts.model, LogitLoss(sat), parts.train_loader, engine,
                      evaluators=[TestAccuracy(every=epochs)], eval_data=parts.eval_data).fit()
    seconds = time.perf_counter() - start
    targets, given = sat.targets.cpu(), data.labels.cpu()
    from sklearn.metrics import roc_auc_score
    flagged = suspected_label_errors(targets, given).index
    return {**label_issue_scores(flagged, data.label_errors.cpu()),
            "roc_auc": float(roc_auc_score(data.label_errors.cpu().numpy(), ranking_scores(targets, given).numpy())),
            "start_epoch": sat.start_epoch, "momentum": sat.momentum, "test_accuracy": history[-1]["test_accuracy"],
            "holdout_accuracy": [m.get("sat_holdout_accuracy") for m in history if "sat_holdout_accuracy" in m],
            "seconds": seconds}


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("settings", help="TOML file: [settings.NAME] tables of run settings, each with fixed_starts = [...]")
    p.add_argument("--patience", type=int, nargs="+", default=[2, 3, 5])
    p.add_argument("--residue", type=float, nargs="+", default=[0.01, 0.05, 0.1, 0.2])
    p.add_argument("--only", nargs="+", default=None, help="run only these settings")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", default="runs/auto-start-dev")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    for name, values in load_toml(args.settings, "settings file")["settings"].items():
        if args.only and name not in args.only:
            continue
        file = out / f"{name}.json"
        if file.exists():
            print(f"{name}: done already ({file})")
            continue
        values = dict(values)
        fixed_starts = values.pop("fixed_starts", [])
        fixed_momenta = values.pop("fixed_momenta", [None])  # None: the residue rule
        config = RunConfig.from_flat({**values, "method": "sat", "device": "cpu", "progress": False})
        epochs = config.engine.epochs
        started = time.perf_counter()
        result = {"settings": values, "command": "python " + " ".join(sys.argv), "peaks": peaks(config)}
        print(f"{name}: peak epochs {result['peaks']['peak_epoch']}", flush=True)
        result["fixed"] = []
        for start in fixed_starts:
            for momentum in fixed_momenta:
                row = sat_run(config, start_epoch=start,
                              momentum=momentum_for(epochs - start) if momentum is None else momentum)
                result["fixed"].append(row)
                print(f"{name}: fixed start {start}, momentum {row['momentum']:.3f}: F1 {row['f1']:.4f} "
                      f"(P {row['precision']:.3f}, R {row['recall']:.3f}), test {row['test_accuracy']:.4f}",
                      flush=True)
        result["auto"] = []
        for patience in args.patience:
            for residue in args.residue:
                row = sat_run(config, start_epoch="auto", momentum="auto", patience=patience, residue=residue)
                result["auto"].append({"patience": patience, "residue": residue, **row})
                print(f"{name}: auto patience {patience} residue {residue}: start {row['start_epoch']}, momentum "
                      f"{row['momentum']:.3f}: F1 {row['f1']:.4f} (P {row['precision']:.3f}, R {row['recall']:.3f}), "
                      f"test {row['test_accuracy']:.4f}", flush=True)
        result["seconds"] = time.perf_counter() - started
        file.write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
