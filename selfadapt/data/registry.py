"""Data sets by name: ``load_dataset("cifar10")``, ``load_dataset("imagefolder:photos")``.

Every module of :mod:`selfadapt.data.formats` lists the formats it reads in ``FORMATS`` (a
:class:`~selfadapt.data.types.DataFormat` each); they are found here, so adding a format is one
file. Named sets are read from ``data_dir`` (default ``$SELFADAPT_DATA`` or ``./data``); a prefix
form names its own path.

>>> load_dataset("digits").classes[:3]
['0', '1', '2']
>>> dataset_names()[:3]
['cifar10', 'cifar100', 'digits']
"""
from __future__ import annotations

import dataclasses
from pathlib import Path

import torch

from selfadapt.data.files import default_data_dir
from selfadapt.data.types import DataFormat, Dataset, LoadOptions
from selfadapt.errors import SelfAdaptError
from selfadapt.plugins import by_name


def formats() -> dict[str, DataFormat]:
    """Every data format by name (prefix forms by their prefix)."""
    return by_name("selfadapt.data.formats", "FORMATS", "data format")


def dataset_names() -> list[str]:
    """How each data set is written: the names, then the prefix forms (``imagefolder:PATH``)."""
    return sorted(f.written for f in formats().values() if not f.takes_path) + \
        sorted(f.written for f in formats().values() if f.takes_path)


def find_format(name: str) -> tuple[DataFormat, str | None]:
    """The format of data set ``name`` and, for a prefix form, the path after the prefix.

    >>> fmt, path = find_format("imagefolder:photos"); fmt.name, path
    ('imagefolder', 'photos')
    """
    key = name.strip()
    prefix, sep, path = key.partition(":")
    fmt = formats().get(prefix.lower())
    if sep and fmt is not None and fmt.takes_path:
        if not path:
            raise SelfAdaptError(f"{fmt.name} needs a path: {fmt.written}")
        return fmt, path
    fmt = formats().get(key.lower().replace("_", "-"))
    if fmt is None or fmt.takes_path:
        raise SelfAdaptError(f"unknown dataset {name!r}; choose one of {', '.join(dataset_names())}")
    return fmt, None


def is_dataset_name(name: str) -> bool:
    """Whether ``name`` names a data set (a known name or a known prefix with a path)."""
    try:
        find_format(name)
    except SelfAdaptError:
        return False
    return True


def load_dataset(name: str, data_dir: str | Path | None = None, *, download: bool = True,
                 skip_unreadable: bool = False, options: LoadOptions | None = None) -> Dataset:
    """Read data set ``name`` (a name of :func:`dataset_names`, or a prefix form with its path).

    Parameters
    ----------
    name : str
        ``"cifar10"``, ``"imagefolder:PATH"`` (PATH as given, not under ``data_dir``), ...
    data_dir : str or Path, optional
        Where the named sets' files are; default :func:`~selfadapt.data.files.default_data_dir`.
    download : bool
        Fetch CIFAR-10/100 from the official address when absent (the other sets are not
        downloaded: the error says which files to put where).
    skip_unreadable : bool
        Image files: leave out images that cannot be read (listed on stderr) instead of raising.
    options : LoadOptions, optional
        All of these and the image collections' settings (size, cache folder, streaming, ``hf:``
        columns); given, it replaces ``download`` and ``skip_unreadable``.
    """
    fmt, path = find_format(name)
    options = options or LoadOptions(download=download, skip_unreadable=skip_unreadable)
    options = dataclasses.replace(options, data_dir_given=data_dir is not None)
    if path is not None:
        return fmt.load(path, options)
    root = _root(data_dir)
    if data_dir is not None and not root.is_dir() and not (fmt.downloads and download):
        raise SelfAdaptError(f"--data-dir {data_dir} {'is not a folder' if root.exists() else 'does not exist'}")
    return fmt.load(root, options)


def load_unlabeled_split(name: str, data_dir: str | Path | None = None) -> torch.Tensor:
    """The unlabeled images of data set ``name``, uint8 N x C x H x W.

    >>> load_unlabeled_split("cifar10")
    Traceback (most recent call last):
    ...
    selfadapt.errors.SelfAdaptError: --unlabeled: data set 'cifar10' has no unlabeled split; stl10 has one
    """
    fmt, path = find_format(name)
    if fmt.unlabeled is None:
        having = [f.name for f in formats().values() if f.unlabeled is not None]
        raise SelfAdaptError(f"--unlabeled: data set {name!r} has no unlabeled split; {', '.join(having)} has one")
    return fmt.unlabeled(Path(path) if path is not None else _root(data_dir))


def _root(data_dir: str | Path | None) -> Path:
    return Path(data_dir).expanduser() if data_dir is not None else default_data_dir()
