"""What the review page asks for, answered from a run, its decisions and thumbnails (no HTTP here).

:class:`ReviewApp` pages and filters the ranked suspects, records decisions through the
:class:`~selfadapt.apps.review.store.DecisionStore` and keeps the reviewer's place; the HTTP
server (:mod:`.server`) and the self-contained page (:mod:`.static_page`) both build on it.

>>> app = ReviewApp(load_run("runs/digits"))  # doctest: +SKIP
>>> app.items({"status": "todo", "limit": "2"})["items"][0]["rank"]  # doctest: +SKIP
1
"""
from __future__ import annotations

from collections import Counter
from importlib import resources

import numpy as np

from selfadapt.apps.review.store import DECISIONS, DecisionStore, Sample
from selfadapt.apps.review.suspects import ReviewRun, load_run  # noqa: F401  (load_run: for the example)
from selfadapt.apps.review.thumbnails import Thumbnails
from selfadapt.errors import SelfAdaptError

PAGE_SIZE, MAX_PAGE = 50, 500
STATUS = {"all": None, "todo": (0,), "done": (1,), "skipped": (2,)}  # codes: 0 undecided, 1 decided, 2 skipped
FILTER_KEYS = ("given", "suggested", "cls", "status")


class ReviewApp:
    """The run's suspects, decisions (``RUN_DIR/review.csv``) and thumbnails."""

    def __init__(self, run: ReviewRun):
        self.run = run
        self.row_of = {s: r for r, s in enumerate(run.data.dataset.train.source_index.tolist())}
        self.position = {k: p for p, k in enumerate(run.suspects.keys.tolist())}
        self.suggested_all = run.targets.argmax(axis=1)
        self.store = DecisionStore(run.path / "review.csv", run.classes, self.sample)
        self.thumbnails = Thumbnails(run.data.images) if run.is_image else None
        pairs = Counter(zip(run.suspects.given.tolist(), run.suspects.suggested.tolist()))
        self.pairs = [[g, t, n] for (g, t), n in pairs.most_common()]  # the filter's choices, most frequent first

    def sample(self, key: int) -> Sample | None:
        """The store's view of training sample ``key`` (its source index); ``None`` if unknown."""
        row = self.row_of.get(key)
        if row is None:
            return None
        classes = self.run.classes
        return Sample(self.run.file(row), classes[int(self.run.data.labels[row])], classes[int(self.suggested_all[row])])

    def meta(self) -> dict:
        """Everything the page needs once: classes, filter choices, counts, where the reviewer was."""
        s, run = self.run.suspects, self.run
        return {"run": run.path.name, "dataset": run.config.data.dataset, "source": run.source,
                "classes": run.classes, "kind": "image" if run.is_image else "features",
                "files": run.data.dataset.train.files is not None, "originals": run.image_path(0) is not None,
                "text_fields": sorted(run.texts), "suspects": len(s), "page_size": PAGE_SIZE,
                "pairs": self.pairs,
                "counts": self.counts(), "state": self.store.read_state()}

    def counts(self, rows: dict | None = None) -> dict:
        """How many suspects have each decision, and how many are left to do."""
        rows = self.store.rows() if rows is None else rows
        counted = Counter(r["decision"] for k, r in rows.items() if k in self.position)
        done = {d: counted.get(d, 0) for d in DECISIONS}
        return {**done, "total": len(self.position), "todo": len(self.position) - sum(done.values())}

    def items(self, query: dict) -> dict:
        """A page of suspects matching the filters in ``query`` (strings, as in a URL): ``given``,
        ``suggested``, ``cls`` (class indices), ``status`` (all, todo, done, skipped), then
        ``offset`` and ``limit``, or ``around`` (a sample index, or ``todo``: the page holding it)."""
        rows = self.store.rows()
        status = np.zeros(len(self.position), dtype=np.int8)
        for key, row in rows.items():
            if key in self.position:
                status[self.position[key]] = 2 if row["decision"] == "skip" else 1
        matching = self._matching(query, status)
        limit = min(_integer(query, "limit", PAGE_SIZE), MAX_PAGE)
        offset = _integer(query, "offset", 0)
        around = query.get("around")
        if around not in (None, ""):
            at = self._find(matching, status, around)
            offset = at - at % limit if at is not None else 0
        shown = matching[offset: offset + limit]
        items = [self._item(int(p), rows) for p in shown]
        return {"total": len(matching), "offset": offset, "limit": limit, "items": items, "counts": self.counts(rows)}

    def decide(self, body: dict) -> dict:
        """Record a decision posted by the page: ``{index, decision, label, version}`` (``decision``
        null clears it). Returns the new row and the counts."""
        if not isinstance(body, dict):
            raise SelfAdaptError("a decision is a JSON object {index, decision, label, version}")
        index, version = body.get("index"), body.get("version", 0)
        label = body.get("label")
        if not _is_int(index) or not _is_int(version) or not (label is None or isinstance(label, str)):
            raise SelfAdaptError("index and version must be integers, label a class name or null")
        row = self.store.decide(index, body.get("decision"), label, version=version)
        return {"item": row, "counts": self.counts()}

    def save_state(self, body: dict) -> None:
        """Keep the reviewer's place: ``{cursor: sample index or null, filters: {...}}``."""
        if not isinstance(body, dict) or not (body.get("cursor") is None or _is_int(body.get("cursor"))):
            raise SelfAdaptError("state is {cursor: sample index or null, filters: {...}}")
        filters = body.get("filters") or {}
        if not isinstance(filters, dict) or not all(k in FILTER_KEYS and isinstance(v, (str, int, type(None)))
                                                    for k, v in filters.items()):
            raise SelfAdaptError(f"filters take only {', '.join(FILTER_KEYS)}")
        self.store.write_state({"cursor": body.get("cursor"), "filters": filters})

    def _matching(self, query: dict, status: np.ndarray) -> np.ndarray:
        classes = len(self.run.classes)
        chosen = {k: _class(query, k, classes) for k in ("given", "suggested", "cls")}
        name = query.get("status") or "all"
        if name not in STATUS:
            raise SelfAdaptError(f"status must be one of {', '.join(STATUS)}")
        return self.run.suspects.query(**chosen, status=status, wanted=STATUS[name])

    def _find(self, matching: np.ndarray, status: np.ndarray, around: str) -> int | None:
        """Where in ``matching`` the sample ``around`` (or the first undecided one) is."""
        if around == "todo":
            hits = np.flatnonzero(status[matching] == 0)
        elif around.isdigit():
            hits = np.flatnonzero(matching == self.position.get(int(around), -1))
        else:
            raise SelfAdaptError(f"around must be a sample index or todo, got {around!r}")
        return int(hits[0]) if len(hits) else None

    def _item(self, position: int, rows: dict) -> dict:
        item = self.run.describe(position)
        row = rows.get(item["index"])
        item["decision"] = row
        item["version"] = row["version"] if row else 0
        return item


def page_file(name: str) -> bytes:
    """One of the page's own files, shipped in the package (``selfadapt/apps/review/page/``)."""
    return resources.files("selfadapt.apps.review").joinpath("page", name).read_bytes()


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _integer(query: dict, key: str, default: int) -> int:
    text = query.get(key)
    if text in (None, ""):
        return default
    if not str(text).isdigit():
        raise SelfAdaptError(f"{key} must be a non-negative integer, got {text!r}")
    return int(text)


def _class(query: dict, key: str, classes: int) -> int | None:
    text = query.get(key)
    if text in (None, ""):
        return None
    if not str(text).isdigit() or int(text) >= classes:
        raise SelfAdaptError(f"{key} must be a class index below {classes}, got {text!r}")
    return int(text)
