"""Scoring and writing suspected label errors (SAT's free by-product)."""
from __future__ import annotations

import torch


def label_issue_scores(flagged: torch.Tensor, is_error: torch.Tensor) -> dict:
    """Precision, recall and F1 of ``flagged`` indices against a boolean mask of true label errors.

    Example
    -------
    >>> label_issue_scores(torch.tensor([0, 1]), torch.tensor([True, False, True]))
    {'flagged': 2, 'true_errors': 2, 'precision': 0.5, 'recall': 0.5, 'f1': 0.5}
    """
    is_error = torch.as_tensor(is_error, dtype=torch.bool).cpu()
    flagged = torch.as_tensor(flagged, dtype=torch.long).cpu()
    hits = int(is_error[flagged].sum())
    true_errors = int(is_error.sum())
    precision = hits / len(flagged) if len(flagged) else 0.0
    recall = hits / true_errors if true_errors else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"flagged": len(flagged), "true_errors": true_errors, "precision": precision, "recall": recall, "f1": f1}
