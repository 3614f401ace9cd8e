"""``cifar10`` and ``cifar100``: the official python pickles, from a folder or the official archive.

Looked for in ``DATA_DIR/cifar-10-batches-py/`` or ``DATA_DIR/cifar-10-python.tar.gz`` (read
straight from the archive, never extracted; CIFAR-100 likewise), and downloaded there if absent
(md5 checked). Pickles are read without running code (:mod:`selfadapt.data.safe_pickle`).
"""
from __future__ import annotations

import tarfile
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from selfadapt.data.files import DownloadError, download
from selfadapt.data.safe_pickle import load_array_pickle
from selfadapt.data.types import DataFormat, Dataset, LoadOptions, check_labels, image_set
from selfadapt.errors import SelfAdaptError

# Official archives; read at call time, so tests may point them at a local file:// archive.
CIFAR10_URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
CIFAR10_MD5 = "c58f30108f718f92721af3b95e74349a"
CIFAR100_URL = "https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz"
CIFAR100_MD5 = "eb9058c3a382ffc7106e4002c42a8d85"

# Per-channel statistics on the [0, 1] scale: the values the original code normalises with
# (every other data set computes its own from the training images).
CIFAR10_MEAN, CIFAR10_STD = (0.4914, 0.4822, 0.4465), (0.2023, 0.1994, 0.2010)
CIFAR100_MEAN, CIFAR100_STD = (0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762)


def _unpickle(data: bytes, where: str) -> dict:
    try:
        obj = load_array_pickle(data)
    except Exception as e:  # a corrupt pickle can raise almost anything
        raise SelfAdaptError(f"cannot read {where}: {e}") from None
    if not isinstance(obj, dict):
        raise SelfAdaptError(f"{where} is not a CIFAR pickle (holds a {type(obj).__name__}, not a dict)")
    return obj


@dataclass(frozen=True)
class _CifarLayout:
    title: str          # "CIFAR-10"
    folder: str         # folder inside the archive
    archive: str        # archive file name
    train: tuple[str, ...]
    test: str
    meta: str
    label_key: bytes
    names_key: bytes


_CIFAR10 = _CifarLayout("CIFAR-10", "cifar-10-batches-py", "cifar-10-python.tar.gz",
                        tuple(f"data_batch_{k}" for k in range(1, 6)), "test_batch", "batches.meta",
                        b"labels", b"label_names")


_CIFAR100 = _CifarLayout("CIFAR-100", "cifar-100-python", "cifar-100-python.tar.gz",
                         ("train",), "test", "meta", b"fine_labels", b"fine_label_names")


def _cifar_members(layout: _CifarLayout, root: Path, url: str, md5: str, allow_download: bool) -> dict[str, dict]:
    """Every pickle of the dataset, unpickled, by file name."""
    wanted = [*layout.train, layout.test, layout.meta]
    folder = root / layout.folder
    if folder.is_dir():
        missing = [f for f in wanted if not (folder / f).is_file()]
        if missing:
            raise SelfAdaptError(f"{layout.title}: {folder} lacks {', '.join(missing)}")
        return {f: _unpickle((folder / f).read_bytes(), str(folder / f)) for f in wanted}
    archive = root / layout.archive
    hint = f"put {layout.archive} or {layout.folder}/ in {root}"
    if not archive.is_file():
        if not allow_download:
            raise SelfAdaptError(f"{layout.title} not found in {root}; {hint} (or allow the download)")
        try:
            download(url, archive, md5)
        except DownloadError as e:
            raise SelfAdaptError(f"{layout.title} not found in {root} and the download failed ({e}); {hint}") from None
    members = {}
    try:
        with tarfile.open(archive, "r:*") as tar:
            for member in tar:
                parent, _, base = member.name.removeprefix("./").rpartition("/")
                if member.isfile() and parent == layout.folder and base in wanted:
                    members[base] = _unpickle(tar.extractfile(member).read(), f"{archive}:{member.name}")
    except (tarfile.TarError, OSError, EOFError, zlib.error) as e:
        raise SelfAdaptError(f"cannot read {archive}: {e}") from None
    missing = [f"{layout.folder}/{f}" for f in wanted if f not in members]
    if missing:
        raise SelfAdaptError(f"{archive} lacks {', '.join(missing)}")
    return members


def _cifar_batch(batch: dict, layout: _CifarLayout, where: str, num_classes: dict) -> tuple[np.ndarray, dict]:
    """The images ``(n, 3, 32, 32)`` of one batch and its label arrays by key."""
    keys = [layout.label_key] + ([b"coarse_labels"] if layout is _CIFAR100 else [])
    missing = [k.decode() for k in [b"data", *keys] if k not in batch]
    if missing:
        raise SelfAdaptError(f"{where} is not a {layout.title} batch (no {', '.join(missing)})")
    data = batch[b"data"]
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3072:
        raise SelfAdaptError(f"{where}: data must be a uint8 array of shape (n, 3072)")
    labels = {}
    for k in keys:
        labels[k] = np.asarray(batch[k], dtype=np.int64)
        if labels[k].shape != (len(data),):
            raise SelfAdaptError(f"{where} has {len(data)} images but {labels[k].size} {k.decode()}")
        check_labels(labels[k], num_classes[k], where)
    return data.reshape(-1, 3, 32, 32), labels


def _load_cifar(layout: _CifarLayout, root: Path, url: str, md5: str, allow_download: bool) -> Dataset:
    members = _cifar_members(layout, root, url, md5, allow_download)
    names = members[layout.meta].get(layout.names_key)
    if not isinstance(names, list) or not names:
        raise SelfAdaptError(f"{layout.title} {layout.meta} has no {layout.names_key.decode()}")
    classes = [n.decode("latin1") if isinstance(n, bytes) else str(n) for n in names]
    num_classes = {layout.label_key: len(classes)}
    if layout is _CIFAR100:
        num_classes[b"coarse_labels"] = len(members[layout.meta].get(b"coarse_label_names") or [])
    splits = []
    for files in (layout.train, (layout.test,)):
        parts = [_cifar_batch(members[f], layout, f"{layout.title} {f}", num_classes) for f in files]
        images = np.concatenate([p[0] for p in parts])
        labels = {k: np.concatenate([p[1][k] for p in parts]) for k in parts[0][1]}
        splits.append((image_set(images, labels[layout.label_key]), labels))
    (train, train_labels), (test, _) = splits
    if layout is _CIFAR10:
        return Dataset("cifar10", train, test, classes, CIFAR10_MEAN, CIFAR10_STD)
    coarse = torch.as_tensor(train_labels[b"coarse_labels"])
    return Dataset("cifar100", train, test, classes, CIFAR100_MEAN, CIFAR100_STD, coarse_train_labels=coarse)


def _load_cifar10(root: Path, options: LoadOptions) -> Dataset:
    return _load_cifar(_CIFAR10, root, CIFAR10_URL, CIFAR10_MD5, options.download)


def _load_cifar100(root: Path, options: LoadOptions) -> Dataset:
    return _load_cifar(_CIFAR100, root, CIFAR100_URL, CIFAR100_MD5, options.download)


FORMATS = [
    DataFormat("cifar10", "CIFAR-10, official python pickles (downloaded if absent)", _load_cifar10, downloads=True),
    DataFormat("cifar100", "CIFAR-100, official python pickles, fine and coarse labels (downloaded if absent)",
               _load_cifar100, downloads=True),
]
