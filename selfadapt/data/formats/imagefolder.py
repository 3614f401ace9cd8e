"""``imagefolder:PATH``: ``PATH/train/<class>/*`` (+ ``PATH/test/`` or ``PATH/val/``), or ``PATH/<class>/*``.

Class folders are sorted by name; images within a class by their path (subfolders included).
Files are images by their extension; other files are ignored and counted once. Every image is
decoded once into the image cache at the chosen size (:mod:`selfadapt.data.collection`); an
unreadable image stops the read with the file named, or is left out and listed with
``--skip-unreadable``. Samples are named by their path relative to ``PATH``.
"""
from __future__ import annotations

import os
from pathlib import Path

from selfadapt.data.collection import file_source, load_collection, note_ignored, scan_folder
from selfadapt.data.decode import IMAGE_SUFFIXES
from selfadapt.data.types import DataFormat, Dataset, LoadOptions
from selfadapt.errors import SelfAdaptError


def _scan_classes(folder: Path, root: Path, others: list[str]) -> dict[str, list[str]]:
    """Class name -> its images (paths relative to ``root``); non-images are added to ``others``."""
    with os.scandir(folder) as entries:
        class_dirs = sorted(e.name for e in entries if e.is_dir() and not e.name.startswith("."))
    if not class_dirs:
        raise SelfAdaptError(f"{folder} holds no class folders; expected {folder}/<class>/<image files>")
    found = {}
    for name in class_dirs:
        images, ignored = scan_folder(folder / name, root)
        others += ignored
        if not images:
            raise SelfAdaptError(f"class folder {folder / name} holds no images ({', '.join(IMAGE_SUFFIXES)})")
        found[name] = images
    return found


def _load_imagefolder(path: str, options: LoadOptions) -> Dataset:
    root = Path(path).expanduser()
    if not root.is_dir():
        problem = "is a file, not a folder" if root.exists() else "does not exist"
        raise SelfAdaptError(f"image folder {root} {problem}; expected {root}/train/<class>/<images> "
                             f"or {root}/<class>/<images>")
    root = root.resolve()
    others: list[str] = []
    has_train = (root / "train").is_dir()
    train_found = _scan_classes(root / "train" if has_train else root, root, others)
    classes = list(train_found)
    test_dir = next((root / d for d in ("test", "val") if (root / d).is_dir()), None) if has_train else None
    test_found = _scan_classes(test_dir, root, others) if test_dir is not None else {}
    if test_dir is not None and list(test_found) != classes:
        raise SelfAdaptError(f"{test_dir} has classes {sorted(test_found)} but {root / 'train'} has {classes}; "
                             f"they must match")
    if options.verbose:
        note_ignored(others, root)
    keys, labels = [], []
    for found in (train_found, test_found):
        for k, name in enumerate(classes):
            keys += found.get(name, [])
            labels += [k] * len(found.get(name, []))
    n_train = sum(len(files) for files in train_found.values())
    source = file_source(f"imagefolder:{root}", root, keys)
    return load_collection(source, labels, n_train, classes, options, name=f"imagefolder:{path}", root=root)


FORMATS = [DataFormat("imagefolder", "image files in one folder per class", _load_imagefolder, takes_path=True,
                      collection=True)]
