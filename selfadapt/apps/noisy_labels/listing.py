"""What the finder writes for people: ``label_issues.csv`` rows and the most frequent confusions."""
from __future__ import annotations

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
                           files: list[str] | None = None, scores: torch.Tensor | None = None,
                           rows: int = 65536) -> int:
    """Write suspected label errors in the order given as CSV; return the row count.

    Columns: ``index`` (position in the full training set as the data set orders it), ``file``
    (empty when the data set has no files), ``given_label``, ``suggested_label``, their class names
    and ``confidence`` (the corrected target's probability of the suggested label); with ``scores``
    (one per training row, :func:`ranking_scores`) also ``score``. The bytes are those of Python's
    ``csv`` writer (quoting, ``\\r\\n``), built column by column for blocks of ``rows`` rows: a
    million rows take seconds and never a million strings at once.
    """
    names = _csv_column(classes)
    header = _COLUMNS + (["score"] if scores is not None else [])
    source_index = source_index.cpu()
    scores = None if scores is None else scores.float().cpu()
    with open(path, "w", newline="") as f:
        f.write(",".join(header) + "\r\n")
        for start in range(0, len(issues.index), rows):
            block = LabelIssues(*(column[start:start + rows].cpu() for column in issues))
            f.writelines(",".join(row) + "\r\n" for row in zip(*_csv_columns(block, source_index, names, files, scores)))
    return len(issues.index)


def _csv_columns(issues: LabelIssues, source_index, names, files, scores) -> list[list[str]]:
    position, given, suggested = issues.index, issues.given_label.tolist(), issues.suggested_label.tolist()
    columns = [list(map(str, source_index[position].tolist())),
               _csv_column([files[p] for p in position.tolist()]) if files else [""] * len(given),
               list(map(str, given)), list(map(str, suggested)), [names[g] for g in given], [names[s] for s in suggested],
               list(map("{:.6f}".format, issues.confidence.float().tolist()))]
    if scores is not None:
        columns.append(list(map("{:.6f}".format, scores[position].tolist())))
    return columns


def _csv_column(texts: list[str]) -> list[str]:
    """``texts`` as the csv module writes them: quoted, quotes doubled, where one holds , " or a
    line break (one scan of the whole column first: most columns need nothing).

    >>> _csv_column(["a", "b,c"])
    ['a', '"b,c"']
    """
    joined = "\x00".join(texts)
    if not any(ch in joined for ch in ',"\r\n'):
        return texts
    return ['"' + t.replace('"', '""') + '"' if any(ch in t for ch in ',"\r\n') else t for t in texts]
