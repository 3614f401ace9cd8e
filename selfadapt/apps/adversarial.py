"""Adversarial training's figure for benchmark grids: robust overfitting.

``plots/robust-overfitting-<cell>.png``: clean and PGD accuracy on the same test images per epoch,
one colour per run row, where the runs measured PGD accuracy (the ``pgd`` evaluator). TRADES+SAT
is meant to keep the PGD curve from falling late in training, where TRADES' does.
"""
from __future__ import annotations

from selfadapt.grid.reports import GridReport, GridResults, write_styled_curves

ROBUST_STYLES = {"pgd_clean_accuracy": "--", "pgd_accuracy": "-"}
ROBUST_LABELS = {"pgd_clean_accuracy": "clean", "pgd_accuracy": "PGD"}


def robust_overfitting(results: GridResults) -> list[str]:
    return write_styled_curves(results, ROBUST_STYLES, ROBUST_LABELS, "robust-overfitting",
                               ylabel="test accuracy (mean over seeds)", needed="pgd_accuracy")


GRID_REPORTS = [GridReport("robust-overfitting", robust_overfitting)]
