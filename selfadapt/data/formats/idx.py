"""``mnist`` and ``fashion-mnist``: the official IDX files, gzipped or not.

Looked for in ``DATA_DIR/<name>/``, ``DATA_DIR/MNIST/raw/`` (``FashionMNIST/raw/``), ``DATA_DIR/``
and, for Fashion-MNIST, ``/usr/share/datasets/fashion-mnist`` (Debian's ``dataset-fashion-mnist``).
"""
from __future__ import annotations

import gzip
import sys
import zlib
from pathlib import Path

import numpy as np

from selfadapt.data.files import first_dir_with
from selfadapt.data.formats.digits import DIGIT_CLASSES
from selfadapt.data.types import DataFormat, Dataset, LoadOptions, check_labels, image_set, with_stats
from selfadapt.errors import SelfAdaptError

FASHION_CLASSES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                   "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]
DEBIAN_FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")


_IDX_FILES = ["train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"]


def _read_idx(path: Path, ndim: int) -> np.ndarray:
    """An unsigned-byte IDX array (gzipped or not) with ``ndim`` dimensions, sizes verified."""
    try:
        data = path.read_bytes()
        if data[:2] == b"\x1f\x8b":
            data = gzip.decompress(data)
    except (OSError, EOFError, zlib.error) as e:
        raise SelfAdaptError(f"cannot read {path}: {e}") from None
    if len(data) < 4 or data[:2] != b"\0\0" or data[2] != 0x08 or data[3] != ndim:
        raise SelfAdaptError(f"{path} is not an unsigned-byte IDX file with {ndim} dimension(s) "
                             f"(magic {data[:4].hex() or 'missing'}, expected 000008{ndim:02x})")
    header = 4 + 4 * ndim
    if len(data) < header:
        raise SelfAdaptError(f"{path} is truncated: its IDX header is incomplete")
    dims = tuple(int.from_bytes(data[4 + 4 * k: 8 + 4 * k], "big") for k in range(ndim))
    expected = header + int(np.prod(dims))
    if len(data) != expected:
        raise SelfAdaptError(f"{path} holds {len(data)} bytes, but its header {dims} needs {expected} "
                             f"(truncated or corrupt)")
    return np.frombuffer(data, np.uint8, offset=header).reshape(dims)


def _load_idx_dataset(name: str, classes: list[str], candidates: list[Path], root: Path,
                      options: LoadOptions) -> Dataset:
    folder = first_dir_with(candidates, _IDX_FILES, name, f"{root / name}/ (gzipped or not)")
    if options.data_dir_given and folder == DEBIAN_FASHION_MNIST:
        print(f"selfadapt: note: {name} is not in --data-dir {root}; read the system's copy in {folder}",
              file=sys.stderr)

    def read(stem, ndim):
        path = folder / stem if (folder / stem).is_file() else folder / f"{stem}.gz"
        return path, _read_idx(path, ndim)

    splits = []
    for prefix in ("train", "t10k"):
        image_path, images = read(f"{prefix}-images-idx3-ubyte", 3)
        label_path, labels = read(f"{prefix}-labels-idx1-ubyte", 1)
        if len(images) != len(labels):
            raise SelfAdaptError(f"{image_path} holds {len(images)} images but {label_path} {len(labels)} labels")
        check_labels(labels, len(classes), str(label_path))
        splits.append(image_set(images[:, None], labels))
    return with_stats(name, splits[0], splits[1], list(classes))


def _load_mnist(root: Path, options: LoadOptions) -> Dataset:
    return _load_idx_dataset("mnist", DIGIT_CLASSES, [root / "mnist", root / "MNIST" / "raw", root], root, options)


def _load_fashion_mnist(root: Path, options: LoadOptions) -> Dataset:
    candidates = [root / "fashion-mnist", root / "FashionMNIST" / "raw", root, DEBIAN_FASHION_MNIST]
    return _load_idx_dataset("fashion-mnist", FASHION_CLASSES, candidates, root, options)


FORMATS = [
    DataFormat("mnist", "MNIST, official IDX files", _load_mnist),
    DataFormat("fashion-mnist", "Fashion-MNIST, official IDX files (or Debian's dataset-fashion-mnist)",
               _load_fashion_mnist),
]
