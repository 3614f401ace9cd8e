"""``svhn``: the official MATLAB files ``train_32x32.mat`` and ``test_32x32.mat`` (the "extra"
split is not read), in ``DATA_DIR/svhn/`` or ``DATA_DIR/``; label 10 is digit 0."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from selfadapt.data.formats.digits import DIGIT_CLASSES
from selfadapt.data.types import DataFormat, Dataset, LoadOptions, image_set, with_stats
from selfadapt.errors import SelfAdaptError


def _read_svhn(path: Path) -> tuple[np.ndarray, np.ndarray]:
    import scipy.io

    try:
        mat = scipy.io.loadmat(path, variable_names=["X", "y"])
    except Exception as e:  # scipy raises ValueError, MatReadError, NotImplementedError, OSError...
        raise SelfAdaptError(f"cannot read {path}: {e}") from None
    x, y = mat.get("X"), mat.get("y")
    if x is None or y is None or x.ndim != 4 or x.shape[:3] != (32, 32, 3) or y.size != x.shape[3]:
        raise SelfAdaptError(f"{path} is not an SVHN file: expected X (32, 32, 3, N) and y (N, 1)")
    labels = y.reshape(-1).astype(np.int64)
    if labels.size and (labels.min() < 0 or labels.max() > 10):
        raise SelfAdaptError(f"{path}: SVHN labels must lie in 1..10 (10 is digit 0)")
    return x.astype(np.uint8, copy=False).transpose(3, 2, 0, 1), labels % 10


def _load_svhn(root: Path, options: LoadOptions) -> Dataset:
    needed = ["train_32x32.mat", "test_32x32.mat"]
    candidates = [root / "svhn", root]
    folder = next((c for c in candidates if all((c / f).is_file() for f in needed)), None)
    if folder is None:
        raise SelfAdaptError(f"SVHN not found: put {' and '.join(needed)} in {root / 'svhn'}/ or {root}/")
    train, test = (image_set(*_read_svhn(folder / f)) for f in needed)
    return with_stats("svhn", train, test, list(DIGIT_CLASSES))


FORMATS = [DataFormat("svhn", "SVHN, official .mat files (train and test)", _load_svhn)]
