"""``features:FILE.npz``: feature vectors or embeddings from any model, with their labels.

Arrays: ``X`` (N x D, finite numbers) and ``y`` (N integers ``0..C-1``, every class present);
optional ``X_test`` and ``y_test`` (a test split), ``ids`` (N unique names, written into the
label-issue CSVs instead of row numbers) and ``classes`` (C names). Each vector is kept as a
``D x 1 x 1`` float "image", so the ``linear`` and ``mlp`` models train on it (normalised per
feature inside the model, from the training set's mean and std); use ``--augment none``.

>>> import numpy as np, tempfile, os
>>> path = os.path.join(tempfile.mkdtemp(), "emb.npz")
>>> np.savez(path, X=np.random.rand(6, 3), y=[0, 1, 2, 0, 1, 2], classes=["a", "b", "c"])
>>> data = load_features(path)
>>> data.train.images.shape, data.classes, len(data.mean), len(data.test)
(torch.Size([6, 3, 1, 1]), ['a', 'b', 'c'], 3, 0)
"""
from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np
import torch

from selfadapt.data.types import DataFormat, Dataset, ImageSet, LoadOptions
from selfadapt.errors import SelfAdaptError


def load_features(path: str, options: LoadOptions = LoadOptions()) -> Dataset:
    """The ``.npz`` at ``path`` as a :class:`~selfadapt.data.types.Dataset` (module docstring)."""
    file = Path(path).expanduser()
    if not file.is_file():
        raise SelfAdaptError(f"features file {file} {'is a folder' if file.exists() else 'does not exist'}; "
                             "expected an .npz with arrays X and y")
    arrays = _read_npz(file)
    missing = [name for name in ("X", "y") if name not in arrays]
    if missing:
        raise SelfAdaptError(f"{file} lacks array(s) {', '.join(missing)}; it has {', '.join(arrays) or 'none'}")
    x, y = _vectors(arrays["X"], f"{file}: X"), _labels(arrays["y"], f"{file}: y")
    if len(x) != len(y):
        raise SelfAdaptError(f"{file}: X has {len(x)} rows but y has {len(y)} labels")
    names = [str(c) for c in arrays["classes"].tolist()] if "classes" in arrays else None
    num_classes = len(names) if names is not None else int(y.max()) + 1
    _check_classes(y, num_classes, names, f"{file}: y")
    ids = _ids(arrays, len(x), file)
    train = ImageSet(torch.from_numpy(x)[:, :, None, None], torch.from_numpy(y), torch.arange(len(y)), ids)
    if ("X_test" in arrays) != ("y_test" in arrays):
        raise SelfAdaptError(f"{file}: X_test and y_test come together; it has only one of them")
    if "X_test" in arrays:
        x_test, y_test = _vectors(arrays["X_test"], f"{file}: X_test"), _labels(arrays["y_test"], f"{file}: y_test")
        if x_test.shape[1] != x.shape[1] or len(x_test) != len(y_test):
            raise SelfAdaptError(f"{file}: X_test must be {len(y_test)} x {x.shape[1]} (as X), got {x_test.shape}")
        if len(y_test) and y_test.max() >= num_classes:
            raise SelfAdaptError(f"{file}: y_test row {int(np.argmax(y_test >= num_classes))} has label "
                                 f"{int(y_test.max())}, outside the {num_classes} classes")
        test = ImageSet(torch.from_numpy(x_test)[:, :, None, None], torch.from_numpy(y_test), torch.arange(len(y_test)))
    else:
        test = ImageSet(train.images[:0], train.labels[:0], torch.arange(0))
    std = x.std(axis=0)
    return Dataset(f"features:{path}", train, test, names or [str(c) for c in range(num_classes)],
                   tuple(x.mean(axis=0).tolist()), tuple(np.where(std > 0, std, 1.0).tolist()))


def _read_npz(file: Path) -> dict[str, np.ndarray]:
    """Every array of an ``.npz`` (no pickled objects); anything else is one clear error."""
    try:
        loaded = np.load(file, allow_pickle=False)
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as e:
        reason = "it is empty" if file.stat().st_size == 0 else str(e) or type(e).__name__
        raise SelfAdaptError(f"cannot read {file} as an .npz of arrays (no pickled objects): {reason}") from None
    if not isinstance(loaded, np.lib.npyio.NpzFile):
        raise SelfAdaptError(f"{file} holds a single array ({loaded.dtype} {loaded.shape}), not an .npz with arrays "
                             "X and y: save them with numpy.savez(path, X=..., y=...)")
    with loaded as npz:
        return {name: npz[name] for name in npz.files}


def _vectors(x: np.ndarray, where: str) -> np.ndarray:
    if x.ndim != 2 or not np.issubdtype(x.dtype, np.number) or np.iscomplexobj(x):
        raise SelfAdaptError(f"{where} must be a 2-d array of real numbers (N x D), got {x.dtype} {x.shape}")
    bad = ~np.isfinite(x).all(axis=1)
    if bad.any():
        raise SelfAdaptError(f"{where} row {int(np.argmax(bad))} holds NaN or infinite values "
                             f"({int(bad.sum())} such row(s))")
    huge = (np.abs(x) > np.finfo(np.float32).max).any(axis=1)
    if huge.any():
        raise SelfAdaptError(f"{where} row {int(np.argmax(huge))} holds values beyond float32's range "
                             f"(|x| > {np.finfo(np.float32).max:.3g}; {int(huge.sum())} such row(s)): rescale them")
    return np.ascontiguousarray(x, dtype=np.float32)


def _labels(y: np.ndarray, where: str) -> np.ndarray:
    if y.ndim != 1 or not np.issubdtype(y.dtype, np.integer):
        raise SelfAdaptError(f"{where} must be a 1-d array of integer class indices, got {y.dtype} {y.shape}")
    if len(y) and y.min() < 0:
        raise SelfAdaptError(f"{where} row {int(np.argmin(y))} has label {int(y.min())}; labels must be >= 0")
    return y.astype(np.int64)


def _check_classes(y: np.ndarray, num_classes: int, names: list[str] | None, where: str) -> None:
    if not len(y):
        raise SelfAdaptError(f"{where} is empty")
    if y.max() >= num_classes:
        raise SelfAdaptError(f"{where} row {int(np.argmax(y >= num_classes))} has label {int(y.max())}, outside "
                             f"the {num_classes} classes")
    absent = sorted(set(range(num_classes)) - set(np.unique(y).tolist()))
    if absent:
        shown = ", ".join(names[c] if names else str(c) for c in absent[:10])
        raise SelfAdaptError(f"{where}: class(es) {shown} have no sample in the training data")


def _ids(arrays: dict, n: int, file: Path) -> list[str] | None:
    if "ids" not in arrays:
        return None
    ids = [str(i) for i in arrays["ids"].tolist()]
    if len(ids) != n:
        raise SelfAdaptError(f"{file}: ids has {len(ids)} entries for {n} rows")
    seen = {}
    for row, name in enumerate(ids):
        if name in seen:
            raise SelfAdaptError(f"{file}: id {name!r} is used by rows {seen[name]} and {row}; ids must be unique")
        seen[name] = row
    return ids


FORMATS = [DataFormat("features", "feature vectors X with labels y in an .npz (embeddings)", load_features,
                      takes_path=True, usage="features:FILE.npz", feature_vectors=True)]
