"""Scoring and writing suspected label errors (SAT's free by-product)."""
from __future__ import annotations

import csv
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


def write_label_issues_csv(path, issues, *, source_index: torch.Tensor, classes: list[str],
                           files: list[str] | None = None) -> int:
    """Write SAT's suspected label errors, most confident first, as CSV; return the row count.

    Columns: ``index`` (position in the full training set as the data set orders it), ``file``
    (empty when the data set has no files), ``given_label``, ``suggested_label``, their class names
    and ``confidence`` (the corrected target's probability of the suggested label).
    """
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["index", "file", "given_label", "suggested_label", "given_class", "suggested_class",
                         "confidence"])
        for position, given, suggested, confidence in zip(issues.index.tolist(), issues.given_label.tolist(),
                                                          issues.suggested_label.tolist(), issues.confidence.tolist()):
            writer.writerow([int(source_index[position]), files[position] if files else "", given, suggested,
                             classes[given], classes[suggested], f"{confidence:.6f}"])
    return len(issues.index)
