"""Suspected label errors from a table of corrected label distributions (SAT's free by-product):
flagging, ranking and scoring them against the truth where it is known."""
from __future__ import annotations

from typing import NamedTuple

import torch


class LabelIssues(NamedTuple):
    """Suspected label errors, most confident first (all tensors of the same length)."""

    index: torch.Tensor            # dataset indices
    given_label: torch.Tensor      # the label the dataset carries
    suggested_label: torch.Tensor  # argmax of the corrected target
    confidence: torch.Tensor       # max of the corrected target


def suspected_label_errors(targets: torch.Tensor, given_labels: torch.Tensor) -> LabelIssues:
    """Rows whose corrected label (argmax of ``targets``, N x C) differs from ``given_labels``,
    most confident (max of the row) first. Unlabeled rows (label -1) are never flagged.

    >>> suspected_label_errors(torch.tensor([[0.9, 0.1], [0.2, 0.8]]), torch.tensor([1, 1])).index
    tensor([0])
    """
    confidence, suggested = targets.max(dim=1)
    given_labels = given_labels.to(suggested.device)
    flagged = torch.nonzero((suggested != given_labels) & (given_labels >= 0)).squeeze(1)
    order = torch.argsort(confidence[flagged], descending=True, stable=True)
    flagged = flagged[order]
    return LabelIssues(flagged, given_labels[flagged], suggested[flagged], confidence[flagged])


def ranking_scores(targets: torch.Tensor, given_labels: torch.Tensor) -> torch.Tensor:
    """How suspicious each label is: ``1 - t_i[given_i]``, the corrected target's probability that
    the given label is wrong (0 for unlabeled rows). Sort by it to review the K most suspicious.

    >>> ranking_scores(torch.tensor([[0.9, 0.1], [0.2, 0.8]]), torch.tensor([1, 1]))
    tensor([0.9000, 0.2000])
    """
    given_labels = given_labels.to(targets.device)
    rows = torch.arange(len(given_labels), device=targets.device)
    kept = targets[rows, given_labels.clamp_min(0)].float()
    return torch.where(given_labels >= 0, 1.0 - kept, torch.zeros_like(kept))


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


def top_suspects(targets: torch.Tensor, given_labels: torch.Tensor, k: int) -> LabelIssues:
    """The ``k`` most suspicious labelled rows by :func:`ranking_scores` (flagged or not), most
    suspicious first: what a reviewer with a budget of ``k`` checks.

    >>> top_suspects(torch.tensor([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4]]), torch.tensor([1, 1, 1]), 2).index
    tensor([0, 2])
    """
    scores = ranking_scores(targets, given_labels)
    labelled = torch.nonzero(given_labels.to(scores.device) >= 0).squeeze(1)
    order = labelled[torch.argsort(scores[labelled], descending=True, stable=True)][:k]
    confidence, suggested = targets[order].max(dim=1)
    return LabelIssues(order, given_labels.to(order.device)[order], suggested, confidence)


def ranking_quality(scores: torch.Tensor, is_error: torch.Tensor, k: int) -> dict:
    """How well ``scores`` rank the true label errors: precision and recall of the ``k`` highest, and
    the ROC AUC (threshold-free; ``None`` when every or no label is wrong).

    >>> ranking_quality(torch.tensor([0.9, 0.1, 0.8, 0.2]), torch.tensor([True, False, False, True]), 2)
    {'k': 2, 'precision_at_k': 0.5, 'recall_at_k': 0.5, 'roc_auc': 0.75}
    """
    from sklearn.metrics import roc_auc_score

    scores, is_error = scores.detach().float().cpu(), torch.as_tensor(is_error, dtype=torch.bool).cpu()
    top = torch.argsort(scores, descending=True, stable=True)[:k]
    hits, errors = int(is_error[top].sum()), int(is_error.sum())
    auc = float(roc_auc_score(is_error.numpy(), scores.numpy())) if 0 < errors < len(is_error) else None
    return {"k": len(top), "precision_at_k": hits / max(len(top), 1), "recall_at_k": hits / max(errors, 1),
            "roc_auc": auc}
