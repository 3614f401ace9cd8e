"""What a data set is once read: uint8 images (or feature vectors) with labels, in memory (or, for an
image collection larger than memory, on disk: :class:`~selfadapt.data.diskimages.DiskImages`).

A :class:`Dataset` has a ``train`` and a ``test`` :class:`ImageSet`: ``uint8`` images
``(N, C, H, W)``, ``int64`` labels and, per sample, its index in the official split
(``source_index``), so corruptions, per-sample SAT targets and external label files (CIFAR-N)
line up with the official order. A :class:`DataFormat` declares one way of reading a data set
(a name such as ``cifar10``, or a prefix form such as ``imagefolder:PATH``); the readers live in
:mod:`selfadapt.data.formats`, the lookup in :mod:`selfadapt.data.registry`.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from selfadapt.data.diskimages import take
from selfadapt.errors import SelfAdaptError


@dataclass(eq=False, repr=False)
class ImageSet:
    """Images of one split with their labels, kept as ``uint8`` tensors on the CPU.

    Parameters
    ----------
    images : torch.Tensor or DiskImages
        ``uint8``, ``(N, C, H, W)``; :class:`~selfadapt.data.diskimages.DiskImages` (read on demand
        from the image cache) where the decoded set does not fit the memory budget or ``--stream``.
    labels : torch.Tensor
        ``int64``, ``(N,)``.
    source_index : torch.Tensor
        ``int64``, ``(N,)``: the index of each sample in the official (or full) split.
    files : list of str, optional
        The file each sample was read from (image folders), else ``None``.

    Example
    -------
    >>> s = ImageSet(torch.zeros(4, 1, 2, 2, dtype=torch.uint8), torch.tensor([0, 1, 0, 1]),
    ...              torch.arange(4))
    >>> s.select([3, 1]).source_index
    tensor([3, 1])
    """

    images: torch.Tensor
    labels: torch.Tensor
    source_index: torch.Tensor
    files: list[str] | None = None

    def __post_init__(self):
        if self.images.dtype not in (torch.uint8, torch.float32) or self.images.dim() != 4:
            raise SelfAdaptError(f"images must be uint8 (N, C, H, W) (float32 for feature vectors), got {self.images.dtype} "
                                 f"{tuple(self.images.shape)}")
        n = self.images.shape[0]
        for field in ("labels", "source_index"):
            value = getattr(self, field)
            if value.dtype != torch.int64 or tuple(value.shape) != (n,):
                raise SelfAdaptError(f"{field} must be int64 of shape ({n},), got {value.dtype} "
                                     f"{tuple(value.shape)}")
        if self.files is not None and len(self.files) != n:
            raise SelfAdaptError(f"files must name {n} files, got {len(self.files)}")
        self.images = self.images.contiguous()

    def __len__(self) -> int:
        return self.images.shape[0]

    def __repr__(self) -> str:
        return f"ImageSet(n={len(self)}, image_shape={tuple(self.images.shape[1:])})"

    def select(self, indices) -> ImageSet:
        """The rows ``indices`` (integers or a boolean mask), all fields kept aligned."""
        index = torch.as_tensor(indices)
        if index.dtype == torch.bool:
            if tuple(index.shape) != (len(self),):
                raise SelfAdaptError(f"a boolean mask must have {len(self)} entries, got {tuple(index.shape)}")
            index = index.nonzero().flatten()
        index = index.to(torch.int64).flatten()
        if index.numel() and not (-len(self) <= int(index.min()) and int(index.max()) < len(self)):
            raise SelfAdaptError(f"indices must lie in [0, {len(self)}), got {int(index.min())}..{int(index.max())}")
        files = None if self.files is None else [self.files[i] for i in index.tolist()]
        return ImageSet(take(self.images, index), self.labels[index], self.source_index[index], files)


@dataclass(eq=False, repr=False)
class Dataset:
    """A train and a test :class:`ImageSet` with class names and normalisation statistics.

    ``mean`` and ``std`` are per channel on the [0, 1] scale. ``coarse_train_labels`` holds the
    CIFAR-100 superclass of each train sample (``None`` for other datasets).

    Example
    -------
    >>> from selfadapt.data.registry import load_dataset
    >>> data = load_dataset("digits")
    >>> data.num_classes, data.in_channels, data.image_size, len(data.train), len(data.test)
    (10, 1, 8, 1297, 500)
    """

    name: str
    train: ImageSet
    test: ImageSet
    classes: list[str]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    coarse_train_labels: torch.Tensor | None = None

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def in_channels(self) -> int:
        return self.train.images.shape[1]

    @property
    def image_size(self) -> int:
        """The image height (images are square for every built-in dataset)."""
        return self.train.images.shape[2]

    def __repr__(self) -> str:
        return (f"Dataset({self.name!r}, train={len(self.train)}, test={len(self.test)}, "
                f"classes={self.num_classes}, image={self.in_channels}x{self.image_size})")


def channel_stats(images: torch.Tensor) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Exact per-channel mean and std on [0, 1] of uint8 ``(N, C, H, W)`` images, from a 256-bin
    histogram (float64), rounded to 6 decimals; 0 and 0 where there are no pixels.

    >>> channel_stats(torch.tensor([[[[0, 255]]]], dtype=torch.uint8))
    ((0.5,), (0.5,))
    """
    means, stds = [], []
    levels = torch.arange(256, dtype=torch.float64) / 255.0
    for c in range(images.shape[1]):
        counts = torch.bincount(images[:, c].reshape(-1), minlength=256).to(torch.float64)
        pixels = max(float(counts.sum()), 1.0)
        mean = float((counts * levels).sum()) / pixels
        var = float((counts * (levels - mean) ** 2).sum()) / pixels
        means.append(round(mean, 6))
        stds.append(round(var ** 0.5, 6))
    return tuple(means), tuple(stds)


def image_set(images: np.ndarray | torch.Tensor, labels) -> ImageSet:
    """An :class:`ImageSet` of ``images`` and ``labels`` in their own order (``source_index`` 0..N-1).

    >>> image_set(np.zeros((2, 1, 3, 3), np.uint8), [1, 0]).labels
    tensor([1, 0])
    """
    if isinstance(images, np.ndarray):
        if not (images.flags.c_contiguous and images.flags.writeable):
            images = np.array(images, order="C")
        images = torch.from_numpy(images)
    labels = torch.as_tensor(np.asarray(labels, dtype=np.int64))
    return ImageSet(images, labels, torch.arange(len(labels)))


def with_stats(name: str, train: ImageSet, test: ImageSet, classes: list[str], **extra) -> Dataset:
    """A :class:`Dataset` normalised by its training images' own per-channel statistics."""
    mean, std = channel_stats(train.images)
    return Dataset(name, train, test, classes, mean, std, **extra)


def check_labels(labels: np.ndarray, num_classes: int, where: str) -> None:
    """Labels must lie in ``[0, num_classes)``; otherwise one :class:`SelfAdaptError` naming ``where``."""
    if labels.size and (labels.min() < 0 or labels.max() >= num_classes):
        raise SelfAdaptError(f"{where}: labels must lie in [0, {num_classes}), found {labels.min()}..{labels.max()}")


@dataclass(frozen=True)
class LoadOptions:
    """How to read a data set, beyond where it is: whether CIFAR may be downloaded, whether image
    files that cannot be decoded are left out (listed on stderr) instead of stopping; for image
    collections (``imagefolder:``, ``csv:``, ``hf:``; :mod:`selfadapt.data.collection`) the size
    they are decoded to (``None``: chosen for ``model`` on ``device``), the cache folder, whether
    to stream from it, the ``hf:`` columns, decoding ``workers``, and whether to say what was done."""

    download: bool = True
    skip_unreadable: bool = False
    image_size: int | None = None
    cache_dir: str | None = None
    stream: bool = False
    image_column: str | None = None
    label_column: str | None = None
    model: str = "cnn"
    device: str = "cpu"
    workers: int | None = None
    verbose: bool = False
    data_dir_given: bool = False      # the user named the folder (a system copy elsewhere is then said)


@dataclass(frozen=True)
class DataFormat:
    """One way to name and read a data set.

    ``name`` is a data set's name (``cifar10``, read from ``--data-dir``) or, with
    ``takes_path=True``, a prefix written ``NAME:PATH`` (``imagefolder:photos``). ``load`` gets the
    data folder (or the path after the prefix) and :class:`LoadOptions`. ``unlabeled`` reads the
    set's unlabeled split where it has one (STL-10); ``feature_vectors`` marks vectors, not images;
    ``downloads`` marks a set that is fetched into the data folder when absent; ``collection`` a
    user's images of any size, decoded at a chosen size into the image cache (``--image-size``).
    """

    name: str
    about: str
    load: Callable[[Path | str, LoadOptions], Dataset]
    takes_path: bool = False
    usage: str = ""                                   # how a user writes it, e.g. "imagefolder:PATH"
    unlabeled: Callable[[Path], torch.Tensor] | None = None
    feature_vectors: bool = False
    downloads: bool = False                           # fetched into the data folder when absent
    collection: bool = False                          # decoded into the image cache (--image-size, --stream)

    @property
    def written(self) -> str:
        """How the data set is named on the command line."""
        return self.usage or (f"{self.name}:PATH" if self.takes_path else self.name)
