"""Corrected labels read from a file and laid over a data set's training labels (``--labels-from``).

The file is a CSV with a header; each row names one training sample and the class it should have:

- ``review.csv`` from ``selfadapt review`` (columns ``index, file, ..., decision, label, ...``);
  rows whose decision is ``skip`` (or whose label is empty) carry no label and are passed over;
- ``changes.csv`` from ``selfadapt apply-review`` (``index, file, given, label, ...``);
- a corrected ``path,label`` CSV (the ``csv:`` format), as apply-review writes for ``csv:`` and
  ``imagefolder:`` data.

A sample is named by ``path`` (relative to the CSV's own folder, as in ``csv:`` files), else by
``file`` (relative to the data set's folder; the id of a ``features:`` row), else by ``index`` (its
position in the full training split: the ``index`` column of ``label_scores.csv``). Labels are
class names. A sample the data set does not have, an unknown class or a sample named twice is one
error naming the line.

>>> from selfadapt.data.registry import load_dataset
>>> import tempfile, os
>>> path = os.path.join(tempfile.mkdtemp(), "review.csv")
>>> _ = open(path, "w").write("index,decision,label\\n3,relabel,7\\n5,skip,\\n")
>>> overrides = read_label_overrides(path, load_dataset("digits"))
>>> overrides.labels
{3: 7}
"""
from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import torch

from selfadapt.errors import SelfAdaptError

KEY_COLUMNS = ("path", "file", "index")


@dataclass
class LabelOverrides:
    """Corrected labels by source index (position in the data set's full training split)."""

    source: str
    labels: dict[int, int]

    def apply(self, labels: torch.Tensor, source_index: torch.Tensor, *, verbose: bool = False) -> torch.Tensor:
        """``labels`` (rows with ``source_index``) with the overridden rows replaced; rows the file
        names but this (subset of the) training set lacks are passed over.

        >>> LabelOverrides("f.csv", {2: 0}).apply(torch.tensor([1, 1, 1]), torch.tensor([0, 1, 2]))
        tensor([1, 1, 0])
        """
        out = labels.clone()
        rows = [(row, self.labels[s]) for row, s in enumerate(source_index.tolist()) if s in self.labels]
        if rows:
            index, new = torch.tensor(rows, dtype=torch.int64).T
            out[index] = new
        if verbose:
            changed = int((out != labels).sum())
            print(f"labels from {self.source}: {len(rows)} samples named, {changed} of {len(labels)} training labels "
                  "changed")
        return out


def read_label_overrides(path: str | Path, dataset) -> LabelOverrides:
    """The corrected labels in ``path`` checked against ``dataset`` (a
    :class:`~selfadapt.data.types.Dataset` whose ``train`` is the full training split)."""
    file = Path(path).expanduser()
    if not file.is_file():
        raise SelfAdaptError(f"--labels-from {file}: no such file (a review.csv, changes.csv or path,label CSV)")
    with open(file, newline="", encoding="utf-8-sig") as f:
        reader = csv.DictReader(f)
        columns = [c.strip() for c in reader.fieldnames or []]
        key = next((c for c in KEY_COLUMNS if c in columns), None)
        if "label" not in columns or key is None:
            raise SelfAdaptError(f"{file}: the header must name a label column and one of path, file, index; "
                                 f"got {', '.join(columns) or 'nothing'}")
        rows = [(line, {k.strip(): (v or "").strip() for k, v in row.items() if k is not None})
                for line, row in enumerate(reader, start=2)]
    find = _SampleFinder(dataset, file.parent)
    classes = {name: k for k, name in enumerate(dataset.classes)}
    labels, seen = {}, {}
    for line, row in rows:
        if not row.get("label") or row.get("decision") == "skip":
            continue
        where = f"{file} line {line}"
        source = find(row, where)
        if row["label"] not in classes:
            raise SelfAdaptError(f"{where}: unknown class {row['label']!r}; classes: {_listed(dataset.classes)}")
        if source in seen:
            raise SelfAdaptError(f"{where}: the sample of line {seen[source]} is named again")
        seen[source] = line
        labels[source] = classes[row["label"]]
    return LabelOverrides(str(path), labels)


class _SampleFinder:
    """Source index of the sample a row names (by ``path``, ``file`` or ``index``)."""

    def __init__(self, dataset, folder: Path):
        self.dataset, self.folder = dataset, folder
        train = dataset.train
        sources = train.source_index.tolist()
        self.known = set(sources)
        self.files = dict(zip(train.files, sources)) if train.files else {}
        self.root = data_root(dataset.name)
        self._absolute = None

    def __call__(self, row: dict, where: str) -> int:
        if row.get("path"):
            found = self.absolute().get(str((self.folder / row["path"]).resolve()))
            return self._found(found, f"file {row['path']!r} (relative to {self.folder})", where)
        if row.get("file") and self.files:
            return self._found(self.files.get(row["file"]), f"file {row['file']!r}", where)
        text = row.get("index", "")
        if not text.lstrip("-").isdigit():
            raise SelfAdaptError(f"{where}: no path, file or integer index names the sample")
        index = int(text)
        return self._found(index if index in self.known else None, f"index {index}", where)

    def absolute(self) -> dict[str, int]:
        if self._absolute is None:
            if self.root is None or not self.files:
                raise SelfAdaptError(f"a path column names image files, but {self.dataset.name} is not read from "
                                     "files: name samples by index (or file, for ids)")
            self._absolute = {str((self.root / f).resolve()): s for f, s in self.files.items()}
        return self._absolute

    def _found(self, source: int | None, what: str, where: str) -> int:
        if source is None:
            raise SelfAdaptError(f"{where}: {self.dataset.name} has no training sample with {what}")
        return source


def data_root(dataset_name: str) -> Path | None:
    """The folder a data set's ``files`` are relative to (``imagefolder:`` and ``csv:``), else ``None``.

    >>> data_root("csv:photos/labels.csv"), data_root("imagefolder:photos"), data_root("digits")
    (PosixPath('photos'), PosixPath('photos'), None)
    """
    kind, _, rest = dataset_name.partition(":")
    if kind.lower() == "imagefolder":
        return Path(rest).expanduser()
    if kind.lower() == "csv":
        return Path(rest).expanduser().parent
    return None


def _listed(names: list[str], n: int = 20) -> str:
    return ", ".join(names[:n]) + (f", ... ({len(names)} in all)" if len(names) > n else "")
