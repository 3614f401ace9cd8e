"""``RUN_DIR/review.csv``: the reviewer's decisions, one row per sample, saved at once.

Every decision rewrites the file atomically (a temporary file, then ``os.replace``), with the time
and the row's previous value. Each row carries a ``version`` (how often the sample was decided);
a decision states the version it was made on, and a stale one (another tab decided the same sample
since) is refused with :class:`Conflict` instead of silently overwriting. A lock around every
read-modify-write (a thread lock, and ``flock`` on ``.review.lock`` between processes) keeps
decisions on different samples from different tabs or servers: none is lost. The reviewer's
place (cursor and filters) lives beside it in ``review-state.json``.

Columns: ``index`` (position in the full training split, as in ``label_scores.csv``), ``file``
(relative to the data set's folder; a ``features:`` id), ``given``, ``suggested`` (class names),
``decision`` (accept, keep, relabel, skip), ``label`` (the class decided on; empty for skip),
``time`` (UTC, ISO 8601), ``previous`` (``decision:label`` before, or empty), ``version``.

>>> import tempfile, pathlib
>>> folder = pathlib.Path(tempfile.mkdtemp())
>>> store = DecisionStore(folder / "review.csv", ["cat", "dog"], lambda i: Sample("a.png", "cat", "dog"))
>>> store.decide(4, "accept", version=0)["label"]
'dog'
>>> store.decide(4, "keep", version=0)
Traceback (most recent call last):
...
selfadapt.apps.review.store.Conflict: sample 4 was decided elsewhere meanwhile (now accept:dog)
"""
from __future__ import annotations

import contextlib
import csv
import io
import json
import os
import threading
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

from selfadapt.engine.rundir import atomic_write_bytes
from selfadapt.errors import SelfAdaptError

try:
    import fcntl
except ImportError:  # Windows: the thread lock alone (one server per run)
    fcntl = None

DECISIONS = ("accept", "keep", "relabel", "skip")
COLUMNS = ("index", "file", "given", "suggested", "decision", "label", "time", "previous", "version")


@dataclass(frozen=True)
class Sample:
    """What the store needs to know of a sample: its file and its given and suggested class."""

    file: str
    given: str
    suggested: str


class Conflict(Exception):
    """A decision made on a stale version of the sample's row; ``current`` is the row now (or None)."""

    def __init__(self, index: int, current: dict | None):
        now = f"{current['decision']}:{current['label']}" if current else "undecided"
        super().__init__(f"sample {index} was decided elsewhere meanwhile (now {now})")
        self.current = current


class DecisionStore:
    """The decisions in ``path`` for samples that ``lookup(index)`` knows (``None``: unknown)."""

    def __init__(self, path: str | Path, classes: list[str], lookup: Callable[[int], Sample | None]):
        self.path = Path(path)
        self.classes, self.lookup = set(classes), lookup
        self._thread_lock = threading.Lock()
        self._rows: dict[int, dict] = {}
        self._stamp = None
        with self._locked():
            self._refresh()

    def rows(self) -> dict[int, dict]:
        """Every decision by sample index (copies; re-read when another process wrote the file)."""
        with self._locked():
            self._refresh()
            return {k: dict(v) for k, v in self._rows.items()}

    def decide(self, index: int, decision: str | None, label: str | None = None, *, version: int) -> dict | None:
        """Record ``decision`` on sample ``index`` (``None`` clears it: back to undecided), made on
        the row's ``version`` (0: undecided); returns the new row (``None`` when cleared).

        Raises :class:`~selfadapt.errors.SelfAdaptError` for an unknown sample, class or decision,
        and :class:`Conflict` when the row changed since ``version``.
        """
        sample = self.lookup(index)
        if sample is None:
            raise SelfAdaptError(f"no sample {index} in this run's training data")
        decision, label = normalise(sample, decision, label, self.classes)
        with self._locked():
            self._refresh()
            current = self._rows.get(index)
            if version != (int(current["version"]) if current else 0):
                raise Conflict(index, current)
            rows, row = dict(self._rows), None
            rows.pop(index, None)
            if decision is not None:
                row = {"index": index, "file": sample.file, "given": sample.given, "suggested": sample.suggested,
                       "decision": decision, "label": label, "time": _now(),
                       "previous": f"{current['decision']}:{current['label']}" if current else "",
                       "version": version + 1}
                rows[index] = row
            self._write(rows)  # the file first: a failed write leaves memory and disk as they were
            self._rows = rows
            return dict(row) if row else None

    def read_state(self) -> dict:
        """Where the reviewer was (``review-state.json``): ``{}`` when nothing was saved."""
        try:
            state = json.loads(self._state_path.read_text())
        except (OSError, ValueError):
            return {}
        return state if isinstance(state, dict) else {}

    def write_state(self, state: dict) -> None:
        atomic_write_bytes(self._state_path, (json.dumps(state, sort_keys=True) + "\n").encode())

    @property
    def _state_path(self) -> Path:
        return self.path.with_name("review-state.json")

    @contextlib.contextmanager
    def _locked(self):
        with self._thread_lock:
            if fcntl is None:
                yield
                return
            with open(self.path.with_name(".review.lock"), "a") as lock:
                fcntl.flock(lock, fcntl.LOCK_EX)
                try:
                    yield
                finally:
                    fcntl.flock(lock, fcntl.LOCK_UN)

    def _refresh(self) -> None:
        """Re-read the file if it changed on disk since this store last read or wrote it."""
        try:
            info = os.stat(self.path)
        except FileNotFoundError:
            self._rows, self._stamp = {}, None
            return
        stamp = (info.st_ino, info.st_mtime_ns, info.st_size)
        if stamp != self._stamp:
            self._rows, self._stamp = self._read(), stamp

    def _read(self) -> dict[int, dict]:
        rows = {}
        with open(self.path, newline="", encoding="utf-8") as f:
            reader = csv.DictReader(f)
            missing = [c for c in COLUMNS if c not in (reader.fieldnames or [])]
            if missing:
                raise SelfAdaptError(f"{self.path} is not a review.csv (no {', '.join(missing)} column)")
            for line, row in enumerate(reader, start=2):
                where = f"{self.path} line {line}"
                if not row["index"].isdigit() or not row["version"].isdigit():
                    raise SelfAdaptError(f"{where}: index and version must be integers")
                index = int(row["index"])
                sample = self.lookup(index)
                if sample is None:
                    raise SelfAdaptError(f"{where}: no sample {index} in this run's training data")
                try:
                    normalise(sample, row["decision"], row["label"] or None, self.classes)
                except SelfAdaptError as e:
                    raise SelfAdaptError(f"{where}: {e}") from None
                rows[index] = {c: row[c] for c in COLUMNS} | {"index": index, "version": int(row["version"])}
        return rows

    def _write(self, rows: dict[int, dict]) -> None:
        text = io.StringIO()
        writer = csv.DictWriter(text, fieldnames=COLUMNS, lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows.values())
        atomic_write_bytes(self.path, text.getvalue().encode())
        info = os.stat(self.path)
        self._stamp = (info.st_ino, info.st_mtime_ns, info.st_size)


def _now() -> str:
    """UTC time as JavaScript's ``toISOString`` writes it (the static page's rows match)."""
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def normalise(sample: Sample, decision: str | None, label: str | None, classes) -> tuple[str | None, str]:
    """``(decision, label)`` checked and completed: accept takes the suggested class, keep the given
    one, relabel a known class (relabel to the suggested or given class becomes accept or keep),
    skip no class; ``None`` clears.

    >>> normalise(Sample("", "cat", "dog"), "relabel", "dog", {"cat", "dog"})
    ('accept', 'dog')
    """
    if decision is None:
        return None, ""
    if decision not in DECISIONS:
        raise SelfAdaptError(f"unknown decision {decision!r}; one of {', '.join(DECISIONS)}")
    implied = {"accept": sample.suggested, "keep": sample.given, "skip": ""}
    if decision in implied:
        if label not in (None, implied[decision]):
            raise SelfAdaptError(f"{decision} means label {implied[decision]!r}, not {label!r}")
        return decision, implied[decision]
    if label not in classes:
        raise SelfAdaptError(f"unknown class {label!r}")
    if label == sample.suggested:
        return "accept", label
    return ("keep", label) if label == sample.given else ("relabel", label)
