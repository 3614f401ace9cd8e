"""``csv:PATH``: images anywhere, listed in a CSV file with their labels.

The file has a header with columns ``path`` and ``label``; paths are relative to the CSV's folder
(absolute paths work too). Labels are class names, or integers ``0..C-1``; classes are sorted
(names alphabetically, integers numerically) and every class must have a sample. Every listed
image is training data (there is no test split); each is decoded once into the image cache at the
chosen size. Bad rows are one clear error naming the row (unreadable images can be skipped instead:
``--skip-unreadable``)::

    path,label
    cats/001.jpg,cat
    dogs/017.png,dog
"""
from __future__ import annotations

import csv
import sys
from collections import Counter
from pathlib import Path

from selfadapt.data.collection import file_source, load_collection
from selfadapt.data.types import DataFormat, Dataset, LoadOptions
from selfadapt.errors import SelfAdaptError


def load_csv_images(path: str, options: LoadOptions = LoadOptions()) -> Dataset:
    """The CSV at ``path`` as a :class:`~selfadapt.data.types.Dataset` (all rows in ``train``), every
    image decoded once into the image cache (:mod:`selfadapt.data.collection`); with
    ``options.skip_unreadable`` the rows whose image cannot be read are left out (and listed)."""
    file = Path(path).expanduser()
    if not file.is_file():
        raise SelfAdaptError(f"CSV file {file} {'is a folder' if file.exists() else 'does not exist'}; "
                             "expected a CSV with columns path,label")
    file = file.resolve()
    paths, labels = _read_rows(file)
    classes = class_names(labels, file)
    index = {c: k for k, c in enumerate(classes)}
    source = file_source(f"csv:{file}", file.parent, paths)
    return load_collection(source, [index[c] for c in labels], len(paths), classes, options, name=f"csv:{path}",
                           root=file.parent)


def _read_rows(file: Path) -> tuple[list[str], list[str]]:
    with open(file, newline="", encoding="utf-8-sig") as f:
        try:
            text = f.read()
        except UnicodeDecodeError as e:
            raise SelfAdaptError(f"{file} is not UTF-8 text ({_where_undecodable(file, e)}); save it as UTF-8") from None
    reader = csv.DictReader(text.splitlines(), restkey=_EXTRA)
    header = [n.strip() for n in reader.fieldnames or []]
    if not {"path", "label"} <= set(header):
        raise SelfAdaptError(f"{file}: the header must name columns path and label, got {reader.fieldnames}")
    unused = [n for n in header if n not in ("path", "label")]
    if unused:
        warn(f"{file}: column(s) {', '.join(unused)} are not read (only path and label are)")
    paths, labels, seen = [], [], {}
    for line, row in enumerate(reader, start=2):
        path, label = _row(file, line, row, len(header))
        if path in seen:
            raise SelfAdaptError(f"{file} line {line}: {path} is listed twice (first on line {seen[path]})")
        seen[path] = line
        paths.append(path)
        labels.append(label)
    if not paths:
        raise SelfAdaptError(f"{file} lists no images")
    return paths, labels


_EXTRA = "\0extra"


def _row(file: Path, line: int, row: dict, columns: int) -> tuple[str, str]:
    """One row's path and label, checked: every field filled, no extra field, the image inside the
    CSV's folder (or given as an absolute path) and present."""
    where = f"{file} line {line}"
    if row.get(_EXTRA):
        raise SelfAdaptError(f"{where} has {columns + len(row[_EXTRA])} fields, the header {columns}")
    row = {k.strip(): (v or "").strip() for k, v in row.items() if k is not None and k != _EXTRA}
    if not row["path"] or not row["label"]:
        raise SelfAdaptError(f"{where}: empty path or label")
    target = Path(row["path"])
    if not target.is_absolute() and not (file.parent / target).resolve().is_relative_to(file.parent.resolve()):
        raise SelfAdaptError(f"{where}: {row['path']} points outside the CSV's folder {file.parent}; give an "
                             "absolute path if you mean a file elsewhere")
    if not (file.parent / target).is_file():
        raise SelfAdaptError(f"{where}: image file {row['path']} does not exist (paths are relative to "
                             f"{file.parent})")
    return row["path"], row["label"]


def _where_undecodable(file: Path, error: UnicodeDecodeError) -> str:
    data = file.read_bytes()
    offset = error.start + (3 if data.startswith(b"\xef\xbb\xbf") else 0)
    line = data[:offset].count(b"\n") + 1
    return f"line {line}, byte {offset}: {data[offset:offset + 1]!r}"


def class_names(labels: list[str], file: Path | str) -> list[str]:
    """Sorted class names; integer labels must be ``0..C-1`` with every class present. One class
    cannot train; classes that look like typos of one another, or hold very few samples, are said."""
    names = sorted(set(labels))
    if len(names) < 2:
        raise SelfAdaptError(f"{file} holds one class only ({names[0]}): there is nothing to tell apart")
    _say_suspicious_classes(labels, names, file)
    if not all(label.lstrip("-").isdigit() for label in names):
        return names
    numbers = sorted(int(label) for label in names)
    if numbers[0] < 0:
        raise SelfAdaptError(f"integer labels must be >= 0, found {numbers[0]}")
    missing = sorted(set(range(numbers[-1] + 1)) - set(numbers))
    if missing:
        raise SelfAdaptError(f"integer labels must name classes 0..{numbers[-1]}, but class(es) "
                             f"{', '.join(map(str, missing[:10]))} have no sample in the training data")
    return [str(n) for n in range(numbers[-1] + 1)]


def _say_suspicious_classes(labels: list[str], names: list[str], file: Path | str) -> None:
    counts = Counter(labels)
    folded = {}
    for name in names:
        folded.setdefault("".join(name.lower().split()), []).append(name)
    for group in (g for g in folded.values() if len(g) > 1):
        warn(f"{file}: classes {', '.join(repr(n) for n in group)} differ only in case or spacing "
             f"({', '.join(str(counts[n]) for n in group)} samples): a typo makes them separate classes")
    numeric = [n for n in names if n.lstrip("-").isdigit()]
    if numeric and len(numeric) < len(names):
        warn(f"{file}: labels mix numbers ({', '.join(numeric[:5])}) and names: each is a class of its own")
    rare = [n for n in names if counts[n] < RARE_CLASS]
    if rare:
        warn(f"{file}: class(es) {', '.join(f'{n!r} ({counts[n]})' for n in rare[:10])} have fewer than "
             f"{RARE_CLASS} samples: too few to learn, and their labels cannot be judged")


def warn(message: str) -> None:
    print(f"selfadapt: warning: {message}", file=sys.stderr)


# A class with fewer samples than this is said (its labels cannot be judged against the others).
RARE_CLASS = 5


FORMATS = [DataFormat("csv", "image files listed in a CSV with columns path,label", load_csv_images,
                      takes_path=True, usage="csv:FILE", collection=True)]
