"""``selfadapt apply-review RUN_DIR --out DIR``: the labels corrected in ``review.csv``, in the input's form.

Writes, in ``DIR``:

- ``changes.csv``: every label the review changed (``index, file, given, label, decision, time``,
  and ``true`` where the truth is known); ``selfadapt train --labels-from DIR/changes.csv`` retrains
  on it (for built-in data sets this list *is* the corrected form);
- ``labels.csv`` for ``csv:`` data (the input's rows and columns, ``label`` corrected, ``path``
  absolute, or relative to ``DIR`` for images inside it) and ``imagefolder:`` data (``path,label``
  for every training image): use it
  as ``--dataset csv:DIR/labels.csv``, or as ``--labels-from``;
- ``<name>.npz`` for ``features:`` data: the input's arrays with ``y`` corrected;
- ``apply_summary.json``: the counts and, where the truth is known (injected noise, CIFAR-N), the
  precision of the changes and the wrong labels before and after.

Samples the run trained on carry the run's given labels (any injected noise included) and the
decisions on top; the input's other rows keep their own labels. Nothing is written before the
review file and the data have been read and checked.

>>> summary = apply_review("runs/digits", "runs/digits-fixed")  # doctest: +SKIP
>>> summary["changed"], summary["precision"]  # doctest: +SKIP
(96, 0.948)
"""
from __future__ import annotations

import csv
import io
import json
from collections import Counter
from pathlib import Path

import numpy as np

from selfadapt.apps.command import Command
from selfadapt.errors import SelfAdaptError


def add_arguments(parser) -> None:
    """The flags of ``selfadapt apply-review``."""
    parser.add_argument("run_dir", metavar="RUN_DIR", help="the reviewed run (find-label-issues or train)")
    parser.add_argument("--out", required=True, metavar="DIR", help="where the corrected labels go")
    parser.add_argument("--review", default=None, metavar="FILE",
                        help="the decisions (default RUN_DIR/review.csv; e.g. a static page's download)")


def run(args) -> int:
    apply_review(args.run_dir, args.out, review=args.review)
    return 0


COMMANDS = [Command("apply-review", "write the labels corrected in a review (review.csv) for retraining",
                    add_arguments, run, "Write the labels corrected in RUN_DIR/review.csv in the input's own form "
                    "(a path,label CSV for csv: and imagefolder: data, an npz for features:, a list of changes for "
                    "built-in data sets) and a record of every change; retrain with selfadapt train --labels-from.")]


def apply_review(run_dir: str | Path, out: str | Path, *, review: str | Path | None = None) -> dict:
    """Write the corrected labels of ``run_dir``'s review into ``out`` (module docstring); returns
    the summary."""
    from selfadapt.apps.review.app import ReviewApp
    from selfadapt.apps.review.store import DecisionStore
    from selfadapt.apps.review.suspects import load_run

    run = load_run(run_dir)
    review = Path(review) if review is not None else run.path / "review.csv"
    if not review.is_file():
        raise SelfAdaptError(f"{review} does not exist: review the run first (selfadapt review {run_dir})")
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise SelfAdaptError(f"--out {out} is a file, not a folder")
    app = ReviewApp(run)
    decisions = DecisionStore(review, run.classes, app.sample).rows()
    labels = corrected_labels(run, decisions, app.row_of)
    files = {"changes.csv": _changes_csv(run, decisions, app.row_of, labels)}
    files.update(_input_form(run, labels, out))
    summary = _summary(run, decisions, labels, review, files)
    files["apply_summary.json"] = (json.dumps(summary, indent=2) + "\n").encode()
    out.mkdir(parents=True, exist_ok=True)
    from selfadapt.engine.rundir import atomic_write_bytes

    for name, body in files.items():
        atomic_write_bytes(out / name, body)
    _report(summary, run, out)
    return summary


def corrected_labels(run, decisions: dict, row_of: dict) -> np.ndarray:
    """The run's given labels per training row with every decided label laid over them."""
    labels = run.data.labels.numpy().copy()
    names = {name: k for k, name in enumerate(run.classes)}
    for key, row in decisions.items():
        if row["label"]:
            labels[row_of[key]] = names[row["label"]]
    return labels


def _changes_csv(run, decisions: dict, row_of: dict, labels: np.ndarray) -> bytes:
    truth = run.truth
    text = io.StringIO()
    writer = csv.writer(text, lineterminator="\n")
    writer.writerow(["index", "file", "given", "label", "decision", "time"] + (["true"] if truth is not None else []))
    for key, row in sorted(decisions.items()):
        r = row_of[key]
        if labels[r] != int(run.data.labels[r]):
            extra = [run.classes[int(truth[r])]] if truth is not None else []
            writer.writerow([key, row["file"], row["given"], row["label"], row["decision"], row["time"], *extra])
    return text.getvalue().encode()


def _input_form(run, labels: np.ndarray, out: Path) -> dict[str, bytes]:
    """The corrected labels as the input had them: ``labels.csv`` or an ``.npz`` (none for built-ins)."""
    kind, _, location = run.config.data.dataset.partition(":")
    kind = kind.lower()
    by_source = dict(zip(run.data.dataset.train.source_index.tolist(), labels.tolist()))
    if kind == "csv":
        return {"labels.csv": _corrected_csv(Path(location).expanduser(), run, labels, out)}
    if kind == "imagefolder":
        return {"labels.csv": _imagefolder_csv(run, by_source, out)}
    if kind == "features":
        file = Path(location).expanduser()
        return {file.with_suffix(".npz").name: _corrected_npz(file, by_source)}
    return {}


def _corrected_csv(file: Path, run, labels: np.ndarray, out: Path) -> bytes:
    """The input CSV, every row and column kept: ``label`` corrected, ``path`` relative to ``out``."""
    by_file = dict(zip(run.data.dataset.train.files, (run.classes[y] for y in labels)))
    with open(file, newline="", encoding="utf-8-sig") as f:
        reader = csv.DictReader(f)
        fields = list(reader.fieldnames or [])
        rows = list(reader)
    text = io.StringIO()
    writer = csv.DictWriter(text, fieldnames=fields, lineterminator="\n")
    writer.writeheader()
    path_key = next(k for k in fields if k.strip() == "path")
    label_key = next(k for k in fields if k.strip() == "label")
    for row in rows:
        name = (row[path_key] or "").strip()
        row[label_key] = by_file.get(name, row[label_key])
        row[path_key] = _relative(file.parent / name, out)
        writer.writerow(row)
    return text.getvalue().encode()


def _imagefolder_csv(run, by_source: dict, out: Path) -> bytes:
    """``path,label`` for every training image of the folder (the run's rows corrected)."""
    from selfadapt.data.label_overrides import data_root
    from selfadapt.data.registry import load_dataset

    config = run.config.data
    full = load_dataset(config.dataset, config.data_dir, skip_unreadable=config.skip_unreadable).train
    root = data_root(config.dataset)
    text = io.StringIO()
    writer = csv.writer(text, lineterminator="\n")
    writer.writerow(["path", "label"])
    for source, name, label in zip(full.source_index.tolist(), full.files, full.labels.tolist()):
        writer.writerow([_relative(root / name, out), run.classes[by_source.get(source, label)]])
    return text.getvalue().encode()


def _corrected_npz(file: Path, by_source: dict) -> bytes:
    """The input's arrays with ``y`` corrected."""
    with np.load(file, allow_pickle=False) as npz:
        arrays = {name: npz[name] for name in npz.files}
    y = arrays["y"].copy()
    sources = np.fromiter(by_source, dtype=np.int64, count=len(by_source))
    y[sources] = np.fromiter(by_source.values(), dtype=np.int64, count=len(by_source))
    arrays["y"] = y
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    return buffer.getvalue()


def _relative(path: Path, out: Path) -> str:
    """``path`` relative to ``out`` where it lies inside it, else absolute (``csv:`` refuses ``..``)."""
    path, out = path.resolve(), out.resolve()
    return (path.relative_to(out) if path.is_relative_to(out) else path).as_posix()


def _summary(run, decisions: dict, labels: np.ndarray, review: Path, files: dict) -> dict:
    given = run.data.labels.numpy()
    counts = Counter(r["decision"] for r in decisions.values())
    changed = labels != given
    summary = {"run": str(run.path), "review": str(review), "decisions": len(decisions),
               **{d: counts.get(d, 0) for d in ("accept", "keep", "relabel", "skip")},
               "changed": int(changed.sum()), "files": sorted(files) + ["apply_summary.json"]}
    truth = run.truth
    if truth is not None:
        right = int((labels[changed] == truth[changed]).sum())
        summary.update(changes_right=right, precision=right / int(changed.sum()) if changed.any() else None,
                       wrong_labels_before=int((given != truth).sum()), wrong_labels_after=int((labels != truth).sum()))
    return summary


def _report(summary: dict, run, out: Path) -> None:
    print(f"{summary['review']}: {summary['decisions']} decisions ({summary['accept']} accepted, {summary['keep']} kept, "
          f"{summary['relabel']} relabelled, {summary['skip']} skipped): {summary['changed']} labels changed -> "
          + ", ".join(str(out / f) for f in summary["files"]))
    if "precision" in summary:
        precision = "n/a" if summary["precision"] is None else f"{summary['precision']:.3f}"
        print(f"against the known true labels: {summary['changes_right']} of {summary['changed']} changes are right "
              f"(precision {precision}); wrong training labels {summary['wrong_labels_before']} -> "
              f"{summary['wrong_labels_after']}")
    how = f"--labels-from {out / 'changes.csv'}"
    if "labels.csv" in summary["files"]:
        how += f" (or --dataset csv:{out / 'labels.csv'})"
    print(f"retrain on them: selfadapt train <the run's flags> {how}")
