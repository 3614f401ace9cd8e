"""Datasets as uint8 tensors in memory, read from the official file formats.

``load_dataset(name)`` returns a :class:`Dataset` whose ``train`` and ``test`` are
:class:`ImageSet` s: ``uint8`` images ``(N, C, H, W)``, ``int64`` labels and, per sample, its
index in the official split (``source_index``), so corruptions, per-sample SAT targets and
external label files (CIFAR-N) line up with the official order.

Where each dataset is looked for (``data_dir`` defaults to ``$SELFADAPT_DATA`` or ``./data``):

==================  ========================================================================
``digits``          scikit-learn's bundled ``load_digits`` (no files needed)
``mnist``           ``train-images-idx3-ubyte[.gz]`` etc. in ``data_dir/mnist/``,
                    ``data_dir/MNIST/raw/`` or ``data_dir/``
``fashion-mnist``   the same IDX names in ``data_dir/fashion-mnist/``,
                    ``data_dir/FashionMNIST/raw/``, ``data_dir/`` or
                    ``/usr/share/datasets/fashion-mnist`` (Debian's ``dataset-fashion-mnist``)
``cifar10``         ``data_dir/cifar-10-batches-py/`` or ``data_dir/cifar-10-python.tar.gz``
                    (read straight from the archive, never extracted); downloaded there if absent
``cifar100``        ``data_dir/cifar-100-python/`` or ``data_dir/cifar-100-python.tar.gz``
``svhn``            ``train_32x32.mat`` and ``test_32x32.mat`` in ``data_dir/svhn/`` or ``data_dir/``
``stl10``           ``stl10_binary/`` in ``data_dir/`` or ``data_dir/stl10/``
``imagefolder:P``   ``P/train/<class>/*`` (+ ``P/test/`` or ``P/val/``), or ``P/<class>/*``
``csv:FILE``        a CSV with columns ``path,label`` (``selfadapt.data.csv_images``)
``features:F.npz``  feature vectors ``X`` with labels ``y`` (``selfadapt.data.features``)
==================  ========================================================================
"""
from __future__ import annotations

import gzip
import hashlib
import logging
import os
import sys
import tarfile
import tempfile
import urllib.request
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from selfadapt.data.safe_pickle import load_array_pickle
from selfadapt.errors import SelfAdaptError

__all__ = [
    "CIFAR10_MD5", "CIFAR10_URL", "CIFAR100_MD5", "CIFAR100_URL", "DATASETS", "DIGITS_TEST_SIZE",
    "Dataset", "ImageSet", "channel_stats", "class_balanced_subset", "default_data_dir", "digits_split",
    "load_dataset", "load_stl10_unlabeled", "load_unlabeled_split", "UNLABELED_SPLITS",
]

log = logging.getLogger(__name__)

DATASETS: tuple[str, ...] = ("digits", "mnist", "fashion-mnist", "cifar10", "cifar100", "svhn", "stl10")

# Official archives; read at call time, so tests may point them at a local file:// archive.
CIFAR10_URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
CIFAR10_MD5 = "c58f30108f718f92721af3b95e74349a"
CIFAR100_URL = "https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz"
CIFAR100_MD5 = "eb9058c3a382ffc7106e4002c42a8d85"

DIGITS_TEST_SIZE = 500  # digits: 1297 train / 500 test, stratified, numpy RandomState(0)

# Per-channel statistics on the [0, 1] scale. CIFAR-10's are SPEC section 3's (the values the
# original code normalises with); every other dataset computes its own from the train images.
_CIFAR10_MEAN, _CIFAR10_STD = (0.4914, 0.4822, 0.4465), (0.2023, 0.1994, 0.2010)
_CIFAR100_MEAN, _CIFAR100_STD = (0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762)

_DIGIT_CLASSES = [str(d) for d in range(10)]
_FASHION_CLASSES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                    "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]
_DEBIAN_FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")
_IMAGE_SUFFIXES = (".bmp", ".gif", ".jpeg", ".jpg", ".pbm", ".pgm", ".png", ".ppm", ".tif", ".tiff", ".webp")
_GRAY_MODES = ("1", "L", "LA", "I", "I;16", "F")


@dataclass(eq=False, repr=False)
class ImageSet:
    """Images of one split with their labels, kept as ``uint8`` tensors on the CPU.

    Parameters
    ----------
    images : torch.Tensor
        ``uint8``, ``(N, C, H, W)``.
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
        return ImageSet(self.images[index], self.labels[index], self.source_index[index], files)


@dataclass(eq=False, repr=False)
class Dataset:
    """A train and a test :class:`ImageSet` with class names and normalisation statistics.

    ``mean`` and ``std`` are per channel on the [0, 1] scale. ``coarse_train_labels`` holds the
    CIFAR-100 superclass of each train sample (``None`` for other datasets).

    Example
    -------
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


def default_data_dir() -> Path:
    """``$SELFADAPT_DATA`` if set, else ``./data``.

    Example
    -------
    >>> isinstance(default_data_dir(), Path)
    True
    """
    env = os.environ.get("SELFADAPT_DATA")
    return Path(env).expanduser() if env else Path("data")


def load_dataset(name: str, data_dir: str | Path | None = None, *, download: bool = True,
                 skip_unreadable: bool = False) -> Dataset:
    """Load a dataset by name (see :data:`DATASETS`, or ``"imagefolder:PATH"``).

    Parameters
    ----------
    name : str
        One of :data:`DATASETS` or ``"imagefolder:PATH"`` (PATH as given, not under ``data_dir``).
    data_dir : str or Path, optional
        Where the files are (the module docstring lists the places searched); default
        :func:`default_data_dir`.
    download : bool
        Fetch CIFAR-10/100 from the official address when absent (the other datasets are not
        downloaded: the error says which files to put where).
    skip_unreadable : bool
        ``imagefolder:`` and ``csv:`` only: leave out images that cannot be read (listed on
        stderr) instead of raising.

    Example
    -------
    >>> load_dataset("digits").classes[:3]
    ['0', '1', '2']
    """
    key = name.strip()
    if key.lower().startswith("imagefolder:"):
        path = key.split(":", 1)[1]
        if not path:
            raise SelfAdaptError("imagefolder needs a path: imagefolder:PATH")
        return _load_imagefolder(path, skip_unreadable)
    if key.lower().startswith("features:"):
        from selfadapt.data.features import load_features
        return load_features(key.split(":", 1)[1])
    if key.lower().startswith("csv:"):
        from selfadapt.data.csv_images import load_csv_images
        return load_csv_images(key.split(":", 1)[1], skip_unreadable)
    key = key.lower().replace("_", "-")
    if key not in _LOADERS:
        raise SelfAdaptError(f"unknown dataset {name!r}; choose one of {', '.join(DATASETS)} or imagefolder:PATH")
    root = Path(data_dir).expanduser() if data_dir is not None else default_data_dir()
    return _LOADERS[key](root, download)


def class_balanced_subset(data: ImageSet, n: int, *, seed: int) -> ImageSet:
    """``n`` samples drawn per class as equally as possible, in their original order.

    A class smaller than its fair share gives all its samples; the rest is split evenly over the
    other classes, the remainder one each to the lowest class labels. Sampling within each class
    is seeded. Returns ``data`` itself when ``n >= len(data)``.

    Example
    -------
    >>> data = load_dataset("digits").train
    >>> small = class_balanced_subset(data, 25, seed=0)
    >>> torch.bincount(small.labels).tolist()
    [3, 3, 3, 3, 3, 2, 2, 2, 2, 2]
    """
    if n >= len(data):
        return data
    classes = torch.unique(data.labels)
    if n <= 0 or n < len(classes):
        raise SelfAdaptError(f"a class-balanced subset needs at least one sample per class: "
                             f"n must lie in [{len(classes)}, {len(data)}], got {n}")
    members = [torch.nonzero(data.labels == c).flatten() for c in classes]
    take = [len(m) for m in members]
    open_classes, remaining = list(range(len(classes))), n
    while small := [k for k in open_classes if len(members[k]) <= remaining // len(open_classes)]:
        remaining -= sum(take[k] for k in small)  # these give every sample they have
        open_classes = [k for k in open_classes if k not in small]
    share, extra = divmod(remaining, len(open_classes))
    for rank, k in enumerate(open_classes):
        take[k] = share + (rank < extra)
    generator = torch.Generator().manual_seed(seed)
    chosen = [m[torch.randperm(len(m), generator=generator)[:t]] for m, t in zip(members, take)]
    return data.select(torch.cat(chosen).sort().values)


def digits_split() -> tuple[np.ndarray, np.ndarray]:
    """The fixed split of scikit-learn's 1797 digits: (train rows, test rows), each ascending.

    Stratified: every class gives ``DIGITS_TEST_SIZE / 1797`` of its images to the test set
    (largest remainders round up), drawn with ``numpy.random.RandomState(0)``, whose stream numpy
    keeps fixed across versions. ``load_dataset("digits").train`` row ``i`` is
    ``load_digits()`` row ``digits_split()[0][i]``.

    Example
    -------
    >>> train_rows, test_rows = digits_split()
    >>> len(train_rows), len(test_rows)
    (1297, 500)
    """
    from sklearn.datasets import load_digits

    return _stratified_split(load_digits().target)


def _stratified_split(target: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    classes, counts = np.unique(target, return_counts=True)
    exact = counts * DIGITS_TEST_SIZE / len(target)
    quota = np.floor(exact).astype(int)
    order = np.argsort(-(exact - quota), kind="stable")
    quota[order[:DIGITS_TEST_SIZE - quota.sum()]] += 1
    rng = np.random.RandomState(0)
    test = np.concatenate([rng.permutation(np.flatnonzero(target == c))[:q] for c, q in zip(classes, quota)])
    is_test = np.zeros(len(target), bool)
    is_test[test] = True
    return np.flatnonzero(~is_test), np.flatnonzero(is_test)


def load_stl10_unlabeled(data_dir: str | Path | None = None) -> torch.Tensor:
    """STL-10's 100,000 unlabeled images (``unlabeled_X.bin``) as ``uint8 (N, 3, 96, 96)``.

    Example
    -------
    >>> images = load_stl10_unlabeled("data")  # doctest: +SKIP
    >>> images.shape  # doctest: +SKIP
    torch.Size([100000, 3, 96, 96])
    """
    root = Path(data_dir).expanduser() if data_dir is not None else default_data_dir()
    folder = _find_stl10(root, ["unlabeled_X.bin"])
    return _read_stl10_images(folder / "unlabeled_X.bin")


UNLABELED_SPLITS = {"stl10": load_stl10_unlabeled}


def load_unlabeled_split(name: str, data_dir: str | Path | None = None) -> torch.Tensor:
    """The unlabeled images of data set ``name`` (see :data:`UNLABELED_SPLITS`), uint8 N x C x H x W.

    >>> load_unlabeled_split("cifar10")
    Traceback (most recent call last):
    ...
    selfadapt.errors.SelfAdaptError: --unlabeled: data set 'cifar10' has no unlabeled split; stl10 has one
    """
    key = name.lower().replace("_", "-")
    if key not in UNLABELED_SPLITS:
        raise SelfAdaptError(f"--unlabeled: data set {name!r} has no unlabeled split; "
                             f"{', '.join(UNLABELED_SPLITS)} has one")
    return UNLABELED_SPLITS[key](data_dir)


# --------------------------------------------------------------------------------------------
# shared helpers


def _split(images: np.ndarray | torch.Tensor, labels) -> ImageSet:
    if isinstance(images, np.ndarray):
        if not (images.flags.c_contiguous and images.flags.writeable):
            images = np.array(images, order="C")
        images = torch.from_numpy(images)
    labels = torch.as_tensor(np.asarray(labels, dtype=np.int64))
    return ImageSet(images, labels, torch.arange(len(labels)))


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


def _with_stats(name, train, test, classes, **extra) -> Dataset:
    mean, std = channel_stats(train.images)
    return Dataset(name, train, test, classes, mean, std, **extra)


def _check_labels(labels: np.ndarray, num_classes: int, where: str) -> None:
    if labels.size and (labels.min() < 0 or labels.max() >= num_classes):
        raise SelfAdaptError(f"{where}: labels must lie in [0, {num_classes}), found {labels.min()}..{labels.max()}")


def _first_dir_with(candidates: list[Path], needed: list[str], what: str, where_hint: str) -> Path:
    """The first candidate folder holding every file in ``needed`` (each may also end in .gz)."""
    def has(folder, f):
        return (folder / f).is_file() or (folder / f"{f}.gz").is_file()

    for folder in candidates:
        if all(has(folder, f) for f in needed):
            return folder
    for folder in candidates:
        missing = [f for f in needed if not has(folder, f)]
        if len(missing) < len(needed):
            raise SelfAdaptError(f"{what}: {folder} lacks {', '.join(missing)}; put them there")
    raise SelfAdaptError(f"{what} not found: put {', '.join(needed)} in {where_hint} "
                         f"(looked in {', '.join(str(c) for c in candidates)})")


# --------------------------------------------------------------------------------------------
# digits


def _load_digits(root: Path, download: bool) -> Dataset:
    from sklearn.datasets import load_digits

    digits = load_digits()
    pixels = np.round(digits.images * 255.0 / 16.0).astype(np.uint8)[:, None]  # values 0..16
    target = digits.target
    train_rows, test_rows = _stratified_split(target)
    train, test = _split(pixels[train_rows], target[train_rows]), _split(pixels[test_rows], target[test_rows])
    return _with_stats("digits", train, test, list(_DIGIT_CLASSES))


# --------------------------------------------------------------------------------------------
# MNIST and Fashion-MNIST: IDX files

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


def _load_idx_dataset(name: str, classes: list[str], candidates: list[Path], root: Path) -> Dataset:
    folder = _first_dir_with(candidates, _IDX_FILES, name, f"{root / name}/ (gzipped or not)")

    def read(stem, ndim):
        path = folder / stem if (folder / stem).is_file() else folder / f"{stem}.gz"
        return path, _read_idx(path, ndim)

    splits = []
    for prefix in ("train", "t10k"):
        image_path, images = read(f"{prefix}-images-idx3-ubyte", 3)
        label_path, labels = read(f"{prefix}-labels-idx1-ubyte", 1)
        if len(images) != len(labels):
            raise SelfAdaptError(f"{image_path} holds {len(images)} images but {label_path} {len(labels)} labels")
        _check_labels(labels, len(classes), str(label_path))
        splits.append(_split(images[:, None], labels))
    return _with_stats(name, splits[0], splits[1], list(classes))


def _load_mnist(root: Path, download: bool) -> Dataset:
    return _load_idx_dataset("mnist", _DIGIT_CLASSES, [root / "mnist", root / "MNIST" / "raw", root], root)


def _load_fashion_mnist(root: Path, download: bool) -> Dataset:
    candidates = [root / "fashion-mnist", root / "FashionMNIST" / "raw", root, _DEBIAN_FASHION_MNIST]
    return _load_idx_dataset("fashion-mnist", _FASHION_CLASSES, candidates, root)


# --------------------------------------------------------------------------------------------
# CIFAR-10 / CIFAR-100: python pickles, from a folder or the official archive


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


def _cifar_members(layout: _CifarLayout, root: Path, url: str, md5: str, download: bool) -> dict[str, dict]:
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
        if not download:
            raise SelfAdaptError(f"{layout.title} not found in {root}; {hint} (or allow the download)")
        try:
            _download(url, archive, md5)
        except _DownloadError as e:
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


class _DownloadError(Exception):
    pass


def _download(url: str, dest: Path, md5: str) -> None:
    """Fetch ``url`` to a temporary file next to ``dest``, check its md5, then move it into place."""
    created = not dest.parent.exists()
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".part", dir=dest.parent)
    except OSError as e:
        raise _DownloadError(f"cannot write to {dest.parent}: {e}") from None
    log.info("downloading %s to %s", url, dest)
    try:
        digest = hashlib.md5()
        with os.fdopen(fd, "wb") as out, urllib.request.urlopen(url, timeout=60) as response:
            while chunk := response.read(1 << 20):
                out.write(chunk)
                digest.update(chunk)
        if digest.hexdigest() != md5:
            raise _DownloadError(f"{url} has md5 {digest.hexdigest()}, expected {md5}; nothing was kept")
        os.replace(tmp, dest)
    except BaseException as e:
        Path(tmp).unlink(missing_ok=True)
        if created:
            try:
                dest.parent.rmdir()
            except OSError:
                pass
        if isinstance(e, Exception) and not isinstance(e, _DownloadError):
            raise _DownloadError(f"{url}: {getattr(e, 'reason', e)}") from None
        raise


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
        _check_labels(labels[k], num_classes[k], where)
    return data.reshape(-1, 3, 32, 32), labels


def _load_cifar(layout: _CifarLayout, root: Path, url: str, md5: str, download: bool) -> Dataset:
    members = _cifar_members(layout, root, url, md5, download)
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
        splits.append((_split(images, labels[layout.label_key]), labels))
    (train, train_labels), (test, _) = splits
    if layout is _CIFAR10:
        return Dataset("cifar10", train, test, classes, _CIFAR10_MEAN, _CIFAR10_STD)
    coarse = torch.as_tensor(train_labels[b"coarse_labels"])
    return Dataset("cifar100", train, test, classes, _CIFAR100_MEAN, _CIFAR100_STD, coarse_train_labels=coarse)


def _load_cifar10(root: Path, download: bool) -> Dataset:
    return _load_cifar(_CIFAR10, root, CIFAR10_URL, CIFAR10_MD5, download)


def _load_cifar100(root: Path, download: bool) -> Dataset:
    return _load_cifar(_CIFAR100, root, CIFAR100_URL, CIFAR100_MD5, download)


# --------------------------------------------------------------------------------------------
# SVHN: MATLAB files (the "extra" split is not read)


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


def _load_svhn(root: Path, download: bool) -> Dataset:
    needed = ["train_32x32.mat", "test_32x32.mat"]
    candidates = [root / "svhn", root]
    folder = next((c for c in candidates if all((c / f).is_file() for f in needed)), None)
    if folder is None:
        raise SelfAdaptError(f"SVHN not found: put {' and '.join(needed)} in {root / 'svhn'}/ or {root}/")
    train, test = (_split(*_read_svhn(folder / f)) for f in needed)
    return _with_stats("svhn", train, test, list(_DIGIT_CLASSES))


# --------------------------------------------------------------------------------------------
# STL-10: binary files, each image stored column-major

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


def _load_stl10(root: Path, download: bool) -> Dataset:
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
        _check_labels(labels, len(classes), f"{folder / f'{split}_y.bin'} (labels 1..{len(classes)})")
        splits.append(_split(images, labels))
    return _with_stats("stl10", splits[0], splits[1], classes)


# --------------------------------------------------------------------------------------------
# image folders


def _scan_classes(folder: Path, root: Path) -> dict[str, list[Path]]:
    class_dirs = sorted(d for d in folder.iterdir() if d.is_dir() and not d.name.startswith("."))
    if not class_dirs:
        raise SelfAdaptError(f"{folder} holds no class folders; expected {folder}/<class>/<image files>")
    found = {}
    for d in class_dirs:
        files = sorted((p for p in d.rglob("*") if p.is_file() and p.suffix.lower() in _IMAGE_SUFFIXES
                        and not p.name.startswith(".")), key=lambda p: p.relative_to(d).as_posix())
        if not files:
            raise SelfAdaptError(f"class folder {d} holds no images ({', '.join(_IMAGE_SUFFIXES)})")
        found[d.name] = files
    return found


def _read_images(paths: list[Path], root: Path) -> np.ndarray:
    """All images as ``uint8 (N, C, H, W)``: grey if every one is, resized to the first one's size."""
    from PIL import Image

    def fail(p, e):
        return SelfAdaptError(f"cannot read image {_shown(p, root)} in {root}: {e}")

    modes = []
    size = None
    for p in paths:  # headers only: cheap
        try:
            with Image.open(p) as im:
                modes.append(im.mode)
                size = size or im.size
        except Exception as e:
            raise fail(p, e) from None
    mode = "L" if all(m in _GRAY_MODES for m in modes) else "RGB"
    out = np.empty((len(paths), size[1], size[0], 1 if mode == "L" else 3), np.uint8)
    for k, p in enumerate(paths):
        try:
            with Image.open(p) as im:
                im = im.convert(mode)
                if im.size != size:
                    im = im.resize(size, Image.BILINEAR)
                out[k] = np.asarray(im).reshape(out.shape[1:])
        except Exception as e:
            raise fail(p, e) from None
    return out.transpose(0, 3, 1, 2)


def _shown(path: Path, root: Path) -> str:
    """``path`` relative to ``root`` where it lies inside it, else as given."""
    return path.relative_to(root).as_posix() if path.is_relative_to(root) else str(path)


def readable_images(paths: list[Path], root: Path) -> list[bool]:
    """Whether each image decodes completely; the others are listed on stderr (``--skip-unreadable``)."""
    from PIL import Image

    def readable(p):
        try:
            with Image.open(p) as im:
                im.load()
            return True
        except Exception:
            return False

    kept = [readable(p) for p in paths]
    skipped = [_shown(p, root) for p, ok in zip(paths, kept) if not ok]
    if skipped:
        print(f"skipped {len(skipped)} unreadable image(s) in {root}: {', '.join(skipped)}", file=sys.stderr)
    return kept


def _load_imagefolder(path: str, skip_unreadable: bool = False) -> Dataset:
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
        if skip_unreadable:
            kept = readable_images(files, root)
            files, labels = [f for f, ok in zip(files, kept) if ok], [y for y, ok in zip(labels, kept) if ok]
        return files, labels

    (train_files, train_labels), (test_files, test_labels) = flatten(train_found), flatten(test_found)
    images = torch.from_numpy(np.ascontiguousarray(_read_images(train_files + test_files, root)))

    def image_set(sl, files, labels):
        return ImageSet(images[sl].contiguous(), torch.as_tensor(labels, dtype=torch.int64),
                        torch.arange(len(files)), [p.relative_to(root).as_posix() for p in files])

    n = len(train_files)
    train = image_set(slice(0, n), train_files, train_labels)
    test = image_set(slice(n, None), test_files, test_labels)
    return _with_stats(f"imagefolder:{path}", train, test, classes)


_LOADERS: dict[str, Callable[[Path, bool], Dataset]] = {
    "digits": _load_digits,
    "mnist": _load_mnist,
    "fashion-mnist": _load_fashion_mnist,
    "cifar10": _load_cifar10,
    "cifar100": _load_cifar100,
    "svhn": _load_svhn,
    "stl10": _load_stl10,
}
