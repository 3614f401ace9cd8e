"""Softmax response in float32 the former way (``1 - max softmax``) against ours (``-expm1`` of the
max log-softmax, taken from ``log1p``) on a finished run's test set: how many scores tie, and the
AURC / E-AURC of each ranking.

    python benchmarks/softmax_response_ties.py runs/selective-fashion-mnist-cpu-start/runs/ce-none-s0
"""
from __future__ import annotations

import sys

import numpy as np
import torch

from selfadapt.config.run import RunConfig
from selfadapt.engine.rundir import load_checkpoint
from selfadapt.evaluators.base import predict_logits
from selfadapt.evaluators.selective_metrics import aurc, eaurc
from selfadapt.experiment import build_run
from selfadapt.objectives.selective import softmax_scores


def duplicates(scores: np.ndarray) -> int:
    """How many scores equal an earlier one (n minus the number of distinct values)."""
    return len(scores) - len(np.unique(scores))


def main(paths: list[str]) -> None:
    for path in paths:
        state = load_checkpoint(path)
        parts = build_run(RunConfig.from_dict(state["config"]), device="cpu", verbose=False)
        parts.model.load_state_dict(state["model"])
        parts.objective.load_state_dict(state["objective"])
        logits = predict_logits(parts.model, parts.objective, parts.eval_data.test)
        wrong = (logits.argmax(1) != parts.eval_data.test.labels).numpy()
        former = (1.0 - torch.softmax(logits.float(), 1).max(1).values).double().numpy()
        ours = softmax_scores(logits)["sr"].double().numpy()
        print(f"{path}: {len(ours)} test samples, error {100 * wrong.mean():.2f}%")
        for name, scores in (("1 - max softmax (former)", former), ("-expm1(max log-softmax) (ours)", ours)):
            print(f"  {name}: {duplicates(scores)} duplicated scores, {(scores == 0).sum()} exactly 0; "
                  f"AURC {100 * aurc(scores, wrong):.6f}%, E-AURC {100 * eaurc(scores, wrong):.6f}%")


if __name__ == "__main__":
    main(sys.argv[1:])
