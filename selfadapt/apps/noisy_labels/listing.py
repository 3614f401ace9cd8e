"""What the finder writes for people: ``label_issues.csv`` rows and the most frequent confusions."""
from __future__ import annotations

import csv
from collections import Counter

import torch

from selfadapt.label_errors import LabelIssues


def frequent_pairs(issues: LabelIssues, classes: list[str], n: int = 5) -> list[tuple[str, str, int]]:
    """The ``n`` most frequent (given class, suggested class, count) among ``issues``.

    >>> frequent_pairs(LabelIssues(*torch.tensor([[0, 1, 2], [0, 0, 1], [1, 1, 0], [0.9, 0.8, 0.7]])), ["a", "b"])
    [('a', 'b', 2), ('b', 'a', 1)]
    """
    pairs = Counter(zip(issues.given_label.tolist(), issues.suggested_label.tolist()))
    return [(classes[int(g)], classes[int(s)], count) for (g, s), count in pairs.most_common(n)]


_COLUMNS = ["index", "file", "given_label", "suggested_label", "given_class", "suggested_class", "confidence"]


def write_label_issues_csv(path, issues, *, source_index: torch.Tensor, classes: list[str],
                           files: list[str] | None = None, scores: torch.Tensor | None = None) -> int:
    """Write suspected label errors in the order given as CSV; return the row count.

    Columns: ``index`` (position in the full training set as the data set orders it), ``file``
    (empty when the data set has no files), ``given_label``, ``suggested_label``, their class names
    and ``confidence`` (the corrected target's probability of the suggested label); with ``scores``
    (one per training row, :func:`ranking_scores`) also ``score``.
    """
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(_COLUMNS + (["score"] if scores is not None else []))
        for position, given, suggested, confidence in zip(issues.index.tolist(), issues.given_label.tolist(),
                                                          issues.suggested_label.tolist(), issues.confidence.tolist()):
            row = [int(source_index[position]), files[position] if files else "", given, suggested,
                   classes[given], classes[suggested], f"{confidence:.6f}"]
            writer.writerow(row + ([f"{float(scores[position]):.6f}"] if scores is not None else []))
    return len(issues.index)
