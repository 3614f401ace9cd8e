"""A run directory's suspected label errors, rebuilt from its config and targets: what the review shows.

A run of ``selfadapt find-label-issues`` lists its suspects in ``label_issues.csv``; for a run of
``selfadapt train`` the suspects are the samples whose target's argmax differs from the given label.
Either way they are ranked by score ``1 - t[given]`` (most suspicious first), and the other likely
classes come from the targets. The training data is rebuilt with
:func:`selfadapt.experiment.prepare_data` from ``config.json`` (same subset, same injected noise),
so the page shows the labels the run was trained on.

>>> run = load_run("runs/digits")  # doctest: +SKIP
>>> run.suspects.keys[:3], run.classes[run.suspects.suggested[0]]  # doctest: +SKIP
"""
from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from selfadapt.config.run import RunConfig
from selfadapt.data.label_overrides import data_root
from selfadapt.errors import SelfAdaptError
from selfadapt.experiment import PreparedData, prepare_data

TOP_CLASSES = 4  # likely classes shown per sample


@dataclass
class Suspects:
    """The samples to review, most suspicious first; every array has one entry per suspect."""

    keys: np.ndarray        # source index: the sample's position in the full training split
    rows: np.ndarray        # row in the run's training data (and in targets.npy)
    given: np.ndarray
    suggested: np.ndarray
    confidence: np.ndarray  # target probability of the suggested class
    score: np.ndarray       # 1 - target probability of the given class

    def __len__(self) -> int:
        return len(self.keys)

    def query(self, *, given: int | None = None, suggested: int | None = None, cls: int | None = None,
              status: np.ndarray | None = None, wanted: tuple[int, ...] | None = None) -> np.ndarray:
        """Positions (ranks, 0-based) of the suspects that match every filter given: the given and
        suggested class, a class on either side, and a status code in ``wanted`` (``status`` holds
        one code per suspect).

        >>> s = Suspects(*(np.array(v) for v in ([7, 8, 9], [0, 1, 2], [1, 1, 2], [2, 0, 2], [.9, .8, .7], [.9, .8, .7])))
        >>> s.query(given=1).tolist(), s.query(cls=0).tolist(), s.query(given=1, suggested=0).tolist()
        ([0, 1], [1], [1])
        """
        keep = np.ones(len(self), dtype=bool)
        if given is not None:
            keep &= self.given == given
        if suggested is not None:
            keep &= self.suggested == suggested
        if cls is not None:
            keep &= (self.given == cls) | (self.suggested == cls)
        if wanted is not None and status is not None:
            keep &= np.isin(status, wanted)
        return np.flatnonzero(keep)


@dataclass
class ReviewRun:
    """A run directory with its training data, targets and suspects."""

    path: Path
    config: RunConfig
    data: PreparedData
    targets: np.ndarray           # training rows x classes
    suspects: Suspects
    source: str                   # where the suspects come from: label_issues.csv or targets.npy
    texts: dict[str, np.ndarray]  # features: data: text arrays of the npz, by source index

    @property
    def classes(self) -> list[str]:
        return self.data.dataset.classes

    @property
    def is_image(self) -> bool:
        return not self.data.images.dtype.is_floating_point

    @property
    def truth(self) -> np.ndarray | None:
        """The true labels per training row where they are known (injected noise, CIFAR-N)."""
        return self.data.clean_labels.numpy() if self.data.truth_known else None

    def file(self, row: int) -> str:
        """The sample's file relative to the data set's folder, or its id (features), or ``""``."""
        files = self.data.dataset.train.files
        return files[row] if files else ""

    def image_path(self, row: int) -> Path | None:
        """The sample's image file on disk (``imagefolder:`` and ``csv:`` data), else ``None``."""
        root, name = data_root(self.config.data.dataset), self.file(row)
        return root / name if root is not None and name and self.is_image else None

    def describe(self, position: int) -> dict:
        """The suspect at rank ``position`` as the page shows it (JSON-ready)."""
        s, row = self.suspects, int(self.suspects.rows[position])
        probs = self.targets[row]
        top = np.argsort(-probs, kind="stable")[:TOP_CLASSES]
        key = int(s.keys[position])
        item = {"index": key, "rank": position + 1, "file": self.file(row), "given": int(s.given[position]),
                "suggested": int(s.suggested[position]), "confidence": round(float(s.confidence[position]), 4),
                "score": round(float(s.score[position]), 4),
                "top": [[int(c), round(float(probs[c]), 4)] for c in top]}
        if self.texts:
            item["text"] = {name: str(values[key]) for name, values in self.texts.items()}
        return item


def load_run(path: str | Path) -> ReviewRun:
    """Read a run directory of ``find-label-issues`` or ``train`` and rebuild its training data."""
    path = Path(path)
    config_file = path / "config.json"
    if not config_file.is_file():
        raise SelfAdaptError(f"{path} is not a run directory (no config.json); give the --out of "
                             "`selfadapt find-label-issues` or `selfadapt train`")
    try:
        config = RunConfig.from_dict(json.loads(config_file.read_text()))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise SelfAdaptError(f"{config_file} is damaged: {e}") from None
    if not (path / "targets.npy").is_file():
        raise SelfAdaptError(f"{path} has no targets.npy: the run is unfinished, or its method keeps no targets "
                             "(train with sat, or run find-label-issues)")
    data = prepare_data(config, verbose=False)
    targets = _read_targets(path / "targets.npy", len(data.labels), data.dataset.num_classes)
    given = data.labels.numpy()
    issues = path / "label_issues.csv"
    rows = _listed_rows(issues, data) if issues.is_file() else None
    suspects = rank_suspects(targets, given, data.dataset.train.source_index.numpy(), rows)
    texts = _texts(config.data.dataset) if config.data.dataset.lower().startswith("features:") else {}
    return ReviewRun(path, config, data, targets, suspects, "label_issues.csv" if rows is not None else "targets.npy",
                     texts)


def rank_suspects(targets: np.ndarray, given: np.ndarray, source_index: np.ndarray,
                  rows: np.ndarray | None = None) -> Suspects:
    """The suspects among ``rows`` (default: every row whose target's argmax is not its given label),
    most suspicious first by ``1 - t[given]`` (ties keep row order).

    >>> t = np.array([[0.9, 0.1], [0.3, 0.7], [0.2, 0.8]])
    >>> rank_suspects(t, np.array([0, 0, 0]), np.array([10, 11, 12])).keys.tolist()
    [12, 11]
    """
    every = np.arange(len(given))
    suggested, confidence = targets.argmax(axis=1), targets.max(axis=1)
    score = 1.0 - targets[every, given]
    if rows is None:
        rows = np.flatnonzero(suggested != given)
    rows = rows[np.argsort(-score[rows], kind="stable")]
    return Suspects(source_index[rows], rows, given[rows], suggested[rows], confidence[rows], score[rows])


def _read_targets(file: Path, n: int, num_classes: int) -> np.ndarray:
    try:
        targets = np.load(file, allow_pickle=False)
    except (OSError, ValueError) as e:
        raise SelfAdaptError(f"cannot read {file}: {e}") from None
    if targets.ndim != 2 or targets.shape[0] < n or targets.shape[1] != num_classes:
        raise SelfAdaptError(f"{file} holds {targets.shape} targets, but the run's data has {n} training samples of "
                             f"{num_classes} classes: the data changed since the run")
    return targets[:n].astype(np.float32, copy=False)


def _listed_rows(file: Path, data: PreparedData) -> np.ndarray:
    """Training rows of the samples ``label_issues.csv`` lists, checked against the rebuilt data."""
    row_of = {s: r for r, s in enumerate(data.dataset.train.source_index.tolist())}
    rows = []
    with open(file, newline="") as f:
        for line, entry in enumerate(csv.DictReader(f), start=2):
            try:
                row = row_of[int(entry["index"])]
            except (KeyError, ValueError, TypeError):
                raise SelfAdaptError(f"{file} line {line}: no training sample {entry.get('index')!r} in the run's "
                                     "data: the data changed since the run") from None
            if int(entry["given_label"]) != int(data.labels[row]):
                raise SelfAdaptError(f"{file} line {line}: given label {entry['given_label']} but the rebuilt data "
                                     f"says {int(data.labels[row])}: the data changed since the run")
            rows.append(row)
    return np.asarray(rows, dtype=np.int64)


def _texts(dataset: str) -> dict[str, np.ndarray]:
    """Every 1-d text array of a features: npz other than ``ids`` and ``classes`` (e.g. ``texts``)."""
    with np.load(Path(dataset.split(":", 1)[1]).expanduser(), allow_pickle=False) as npz:
        arrays = {name: npz[name] for name in npz.files if name not in ("X", "X_test", "ids", "classes")}
    n = len(arrays["y"])
    return {name: a for name, a in arrays.items() if a.dtype.kind in "US" and a.shape == (n,)}
