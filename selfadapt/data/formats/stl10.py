"""``stl10``: the official binary files (each image stored column-major) in ``DATA_DIR/stl10_binary/``
or ``DATA_DIR/stl10/stl10_binary/``, with the 100,000-image unlabeled split for ``--unlabeled``."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from selfadapt.data.types import DataFormat, Dataset, LoadOptions, check_labels, image_set, with_stats
from selfadapt.errors import SelfAdaptError

_STL10_IMAGE_BYTES = 3 * 96 * 96


def _find_stl10(root: Path, needed: list[str]) -> Path:
    candidates = [root / "stl10_binary", root / "stl10" / "stl10_binary"]
    for folder in candidates:
        if all((folder / f).is_file() for f in needed):
            return folder
    raise SelfAdaptError(f"STL-10 not found: put stl10_binary/ (with {', '.join(needed)}) in {root}/ or "
                         f"{root / 'stl10'}/")


def _read_stl10_images(path: Path) -> torch.Tensor:
    size = path.stat().st_size
    if size % _STL10_IMAGE_BYTES:
        raise SelfAdaptError(f"{path} holds {size} bytes, not a whole number of 3x96x96 images (truncated?)")
    raw = np.memmap(path, dtype=np.uint8, mode="r").reshape(-1, 3, 96, 96)
    out = torch.empty(raw.shape, dtype=torch.uint8)
    for start in range(0, len(raw), 4096):  # in chunks: the unlabeled split is 2.8 GB
        out[start:start + 4096] = torch.from_numpy(np.ascontiguousarray(raw[start:start + 4096].transpose(0, 1, 3, 2)))
    return out


def _load_stl10(root: Path, options: LoadOptions) -> Dataset:
    needed = ["train_X.bin", "train_y.bin", "test_X.bin", "test_y.bin", "class_names.txt"]
    folder = _find_stl10(root, needed)
    classes = [line.strip() for line in (folder / "class_names.txt").read_text().splitlines() if line.strip()]
    splits = []
    for split in ("train", "test"):
        images = _read_stl10_images(folder / f"{split}_X.bin")
        labels = np.fromfile(folder / f"{split}_y.bin", dtype=np.uint8).astype(np.int64) - 1
        if len(labels) != len(images):
            raise SelfAdaptError(f"{folder / f'{split}_X.bin'} holds {len(images)} images but "
                                 f"{folder / f'{split}_y.bin'} {len(labels)} labels")
        check_labels(labels, len(classes), f"{folder / f'{split}_y.bin'} (labels 1..{len(classes)})")
        splits.append(image_set(images, labels))
    return with_stats("stl10", splits[0], splits[1], classes)


def _load_unlabeled(root: Path) -> torch.Tensor:
    """STL-10's 100,000 unlabeled images (``unlabeled_X.bin``) as ``uint8 (N, 3, 96, 96)``."""
    return _read_stl10_images(_find_stl10(root, ["unlabeled_X.bin"]) / "unlabeled_X.bin")


FORMATS = [DataFormat("stl10", "STL-10, official binary files (and the unlabeled split)", _load_stl10,
                      unlabeled=_load_unlabeled)]
