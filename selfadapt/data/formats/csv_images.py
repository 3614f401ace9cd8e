"""``csv:PATH``: images anywhere, listed in a CSV file with their labels.

The file has a header with columns ``path`` and ``label``; paths are relative to the CSV's folder
(absolute paths work too). Labels are class names, or integers ``0..C-1``; classes are sorted
(names alphabetically, integers numerically) and every class must have a sample. Every listed
image is training data (there is no test split). Bad rows are one clear error naming the row
(unreadable images can be skipped instead: ``--skip-unreadable``)::

    path,label
    cats/001.jpg,cat
    dogs/017.png,dog
"""
from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import torch

from selfadapt.data.image_files import read_images, readable_images
from selfadapt.data.types import DataFormat, Dataset, ImageSet, LoadOptions, with_stats
from selfadapt.errors import SelfAdaptError


def load_csv_images(path: str, options: LoadOptions = LoadOptions()) -> Dataset:
    """The CSV at ``path`` as a :class:`~selfadapt.data.types.Dataset` (all rows in ``train``);
    with ``options.skip_unreadable`` the rows whose image cannot be read are left out (and listed)."""

    file = Path(path).expanduser()
    if not file.is_file():
        raise SelfAdaptError(f"CSV file {file} {'is a folder' if file.exists() else 'does not exist'}; "
                             "expected a CSV with columns path,label")
    paths, labels = _read_rows(file)
    if options.skip_unreadable:
        kept = readable_images([file.parent / p for p in paths], file.parent)
        paths, labels = [p for p, ok in zip(paths, kept) if ok], [y for y, ok in zip(labels, kept) if ok]
        if not paths:
            raise SelfAdaptError(f"{file}: no listed image could be read")
    classes = _classes(labels)
    index = {c: k for k, c in enumerate(classes)}
    root = file.parent
    images = torch.from_numpy(np.ascontiguousarray(read_images([(root / p) for p in paths], root)))
    label_tensor = torch.tensor([index[c] for c in labels], dtype=torch.int64)
    train = ImageSet(images, label_tensor, torch.arange(len(paths)), list(paths))
    test = ImageSet(images[:0], label_tensor[:0], torch.arange(0), [])
    return with_stats(f"csv:{path}", train, test, classes)


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
            target = (file.parent / row["path"])
            if not target.is_file():
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
