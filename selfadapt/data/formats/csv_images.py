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
import os
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
    classes = _classes(labels)
    index = {c: k for k, c in enumerate(classes)}
    source = file_source(f"csv:{file}", file.parent, paths)
    return load_collection(source, [index[c] for c in labels], len(paths), classes, options, name=f"csv:{path}",
                           root=file.parent)


def _read_rows(file: Path) -> tuple[list[str], list[str]]:
    with open(file, newline="", encoding="utf-8-sig") as f:
        reader = csv.DictReader(f)
        if not reader.fieldnames or not {"path", "label"} <= {n.strip() for n in reader.fieldnames}:
            raise SelfAdaptError(f"{file}: the header must name columns path and label, got {reader.fieldnames}")
        paths, labels, seen = [], [], {}
        for line, row in enumerate(reader, start=2):
            row = {k.strip(): (v or "").strip() for k, v in row.items() if k is not None}
            where = f"{file} line {line}"
            if not row["path"] or not row["label"]:
                raise SelfAdaptError(f"{where}: empty path or label")
            if row["path"] in seen:
                raise SelfAdaptError(f"{where}: {row['path']} is listed twice (first on line {seen[row['path']]})")
            if not os.path.isfile(os.path.join(file.parent, row["path"])):
                raise SelfAdaptError(f"{where}: image file {row['path']} does not exist (paths are relative to "
                                     f"{file.parent})")
            seen[row["path"]] = line
            paths.append(row["path"])
            labels.append(row["label"])
    if not paths:
        raise SelfAdaptError(f"{file} lists no images")
    return paths, labels


def _classes(labels: list[str]) -> list[str]:
    """Sorted class names; integer labels must be ``0..C-1`` with every class present."""
    names = sorted(set(labels))
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


FORMATS = [DataFormat("csv", "image files listed in a CSV with columns path,label", load_csv_images,
                      takes_path=True, usage="csv:FILE")]
