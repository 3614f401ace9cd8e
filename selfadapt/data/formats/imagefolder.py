"""``imagefolder:PATH``: ``PATH/train/<class>/*`` (+ ``PATH/test/`` or ``PATH/val/``), or ``PATH/<class>/*``.

Class folders are sorted by name; images within a class by their path. Unreadable images stop the
read with the file named, or are left out and listed with ``--skip-unreadable``.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from selfadapt.data.image_files import IMAGE_SUFFIXES, read_images, readable_images
from selfadapt.data.types import DataFormat, Dataset, ImageSet, LoadOptions, with_stats
from selfadapt.errors import SelfAdaptError


def _scan_classes(folder: Path, root: Path) -> dict[str, list[Path]]:
    class_dirs = sorted(d for d in folder.iterdir() if d.is_dir() and not d.name.startswith("."))
    if not class_dirs:
        raise SelfAdaptError(f"{folder} holds no class folders; expected {folder}/<class>/<image files>")
    found = {}
    for d in class_dirs:
        files = sorted((p for p in d.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES
                        and not p.name.startswith(".")), key=lambda p: p.relative_to(d).as_posix())
        if not files:
            raise SelfAdaptError(f"class folder {d} holds no images ({', '.join(IMAGE_SUFFIXES)})")
        found[d.name] = files
    return found


def _load_imagefolder(path: str, options: LoadOptions) -> Dataset:
    root = Path(path).expanduser()
    if not root.is_dir():
        problem = "is a file, not a folder" if root.exists() else "does not exist"
        raise SelfAdaptError(f"image folder {root} {problem}; expected {root}/train/<class>/<images> "
                             f"or {root}/<class>/<images>")
    has_train = (root / "train").is_dir()
    train_found = _scan_classes(root / "train" if has_train else root, root)
    classes = list(train_found)
    test_dir = next((root / d for d in ("test", "val") if (root / d).is_dir()), None) if has_train else None
    test_found = _scan_classes(test_dir, root) if test_dir is not None else {}
    if test_dir is not None and list(test_found) != classes:
        raise SelfAdaptError(f"{test_dir} has classes {sorted(test_found)} but {root / 'train'} has {classes}; "
                             f"they must match")

    def flatten(found):
        files = [p for c in classes for p in found.get(c, [])]
        labels = [k for k, c in enumerate(classes) for _ in found.get(c, [])]
        if options.skip_unreadable:
            kept = readable_images(files, root)
            files, labels = [f for f, ok in zip(files, kept) if ok], [y for y, ok in zip(labels, kept) if ok]
        return files, labels

    (train_files, train_labels), (test_files, test_labels) = flatten(train_found), flatten(test_found)
    images = torch.from_numpy(np.ascontiguousarray(read_images(train_files + test_files, root)))

    def image_set(sl, files, labels):
        return ImageSet(images[sl].contiguous(), torch.as_tensor(labels, dtype=torch.int64),
                        torch.arange(len(files)), [p.relative_to(root).as_posix() for p in files])

    n = len(train_files)
    train = image_set(slice(0, n), train_files, train_labels)
    test = image_set(slice(n, None), test_files, test_labels)
    return with_stats(f"imagefolder:{path}", train, test, classes)


FORMATS = [DataFormat("imagefolder", "image files in one folder per class", _load_imagefolder, takes_path=True)]
