"""``hf:PATH_OR_NAME[:SPLIT]``: image data sets of the Hugging Face ``datasets`` library.

PATH is a folder written by ``save_to_disk`` or a folder of parquet/arrow files; anything else is a
hub name, loaded (and cached by ``datasets``) when online; offline, a hub name must be in the
``datasets`` cache (``HF_HUB_OFFLINE=1`` skips the network). SPLIT is the training split (default
``train``, else the first); a ``test`` split (else ``validation``) is the test set when there is one.

The image column is the one of type ``datasets.Image`` (or ``--image-column``); the label column the
``ClassLabel`` one, else one named ``label``/``labels`` (or ``--label-column``). ``ClassLabel`` names
are the class names; other labels are names (sorted) or integers ``0..C-1``. Images are decoded
from their stored bytes like files (:mod:`selfadapt.data.decode`) into the image cache, keyed by the
data set's fingerprint. Needs ``pip install 'selfadapt[hf]'``.

Example: ``selfadapt find-label-issues --dataset hf:my_saved_dataset --out runs/hf``.
"""
from __future__ import annotations

import contextlib
import hashlib
from pathlib import Path

import numpy as np

from selfadapt import hub
from selfadapt.data.cache import Source
from selfadapt.data.collection import load_collection
from selfadapt.data.formats.csv_images import class_names
from selfadapt.data.types import DataFormat, Dataset, LoadOptions
from selfadapt.errors import SelfAdaptError

__all__ = ["load_hf"]

_LABEL_NAMES = ("label", "labels", "fine_label", "class", "target")


def load_hf(spec: str, options: LoadOptions = LoadOptions()) -> Dataset:
    """The :class:`~selfadapt.data.types.Dataset` of ``hf:`` + ``spec``."""
    datasets = _library()
    name, split = _parse(spec)
    splits = _open(datasets, name)
    train_split = split or ("train" if "train" in splits else next(iter(splits)))
    if train_split not in splits:
        raise SelfAdaptError(f"hf:{name} has no split {train_split!r}; its splits: {', '.join(splits)}")
    test_split = next((s for s in ("test", "validation", "valid", "val") if s in splits and s != train_split), None)
    train = splits[train_split]
    image_column = _column(train, options.image_column, "image", _is_image(datasets), name)
    label_column = _column(train, options.label_column, "label", _is_label(datasets), name)
    parts = [train] + ([splits[test_split]] if test_split else [])
    for part, which in zip(parts[1:], [test_split]):
        for column in (image_column, label_column):
            if column not in part.column_names:
                raise SelfAdaptError(f"hf:{name}: split {which} has no column {column!r}")
    classes, labels = _labels(datasets, parts, label_column, name)
    raw = [p.select_columns([image_column]).cast_column(image_column, datasets.Image(decode=False)) for p in parts]
    keys = [f"{s}/{i}" for s, p in zip([train_split, test_split], parts) for i in range(len(p))]
    stamp = int(hashlib.sha1("".join(p._fingerprint for p in parts).encode()).hexdigest()[:15], 16)
    stamps = np.tile(np.array([[0, stamp]], np.int64), (len(keys), 1))
    where = str(Path(name).resolve()) if Path(name).exists() else name
    source = Source(f"hf:{where}:{train_split}:{image_column}", keys, stamps, _payload(raw, image_column))
    return load_collection(source, labels, len(train), classes, options, name=f"hf:{spec}", root=f"hf:{name}")


def _library():
    try:
        import datasets
    except ImportError:
        raise SelfAdaptError("hf: data sets need the datasets library: pip install 'selfadapt[hf]'") from None
    datasets.logging.set_verbosity_error()
    return datasets


def _parse(spec: str) -> tuple[str, str | None]:
    """``PATH_OR_NAME[:SPLIT]``: a trailing ``:word`` is the split unless the whole is an existing path."""
    if not spec:
        raise SelfAdaptError("hf needs a data set: hf:PATH_OR_NAME[:SPLIT]")
    head, sep, tail = spec.rpartition(":")
    if sep and head and "/" not in tail and not Path(spec).exists():
        return head, tail
    return spec, None


def _open(datasets, name: str) -> dict:
    """Every split of the data set, by name."""
    path = Path(name).expanduser()
    try:
        if path.is_dir() and ((path / "dataset_dict.json").is_file() or (path / "state.json").is_file()):
            loaded = datasets.load_from_disk(str(path))
        elif path.exists():
            if not path.is_dir():
                raise SelfAdaptError(f"hf:{name} is a file; give the folder written by save_to_disk or a folder of "
                                     "parquet/arrow files")
            loaded = datasets.load_dataset(str(path))
        else:
            loaded = _from_hub(datasets, name)
    except SelfAdaptError:
        raise
    except Exception as e:  # datasets raises many types (ConnectionError, FileNotFoundError, DatasetNotFoundError...)
        where = "" if path.exists() else ("; offline, a hub data set must already be in the datasets cache "
                                          "(or give a folder written by save_to_disk)")
        raise SelfAdaptError(f"cannot load Hugging Face data set {name!r}: {str(e).splitlines()[0]}{where}") from None
    if isinstance(loaded, datasets.DatasetDict):
        return dict(loaded)
    return {"train": loaded}


def _from_hub(datasets, name: str):
    """A hub data set: from the hub, or from the datasets cache at once when the hub cannot be reached."""
    why = "" if datasets.config.HF_HUB_OFFLINE else hub.unreachable()  # offline by choice: the cache, as asked
    with hub.quiet(), (hub.cache_only(datasets.config) if why else contextlib.nullcontext()):
        try:
            return datasets.load_dataset(name)
        except Exception:  # what the cache lacks, whatever type datasets raises for it
            if not why:
                raise
    raise SelfAdaptError(f"hf:{name} is not in the datasets cache and the hub cannot be reached ({why}): load it once "
                         "on a machine with internet (datasets.load_dataset) and copy its cache (HF_HOME), or "
                         "save_to_disk a folder and give hf:FOLDER")


def _is_image(datasets):
    return lambda feature: isinstance(feature, datasets.Image)


def _is_label(datasets):
    return lambda feature: isinstance(feature, datasets.ClassLabel)


def _column(part, given: str | None, what: str, matches, name: str) -> str:
    """The named column, else the only one of the right type, else one with a usual name."""
    columns = part.column_names
    if given is not None:
        if given not in columns:
            raise SelfAdaptError(f"hf:{name} has no column {given!r}; its columns: {', '.join(columns)}")
        return given
    typed = [c for c in columns if matches(part.features[c])]
    if len(typed) == 1:
        return typed[0]
    named = [c for c in (typed or columns) if c.lower() in ((what,) if what == "image" else _LABEL_NAMES)
             or (what == "image" and c.lower() in ("img", "images", "picture"))]
    if len(named) >= 1:
        return named[0]
    raise SelfAdaptError(f"hf:{name}: cannot tell which column holds the {what}s (columns: {', '.join(columns)}); "
                         f"name it with --{what}-column")


def _labels(datasets, parts: list, column: str, name: str) -> tuple[list[str], np.ndarray]:
    feature = parts[0].features[column]
    values = [v for p in parts for v in p[column]]
    if isinstance(feature, datasets.ClassLabel):
        return list(feature.names), np.asarray(values, dtype=np.int64)
    if any(v is None for v in values):
        raise SelfAdaptError(f"hf:{name}: column {column!r} has empty labels")
    texts = [str(v) for v in values]
    classes = class_names(texts[:len(parts[0])], f"hf:{name}")
    index = {c: k for k, c in enumerate(classes)}
    unknown = sorted(set(texts) - set(index))
    if unknown:
        raise SelfAdaptError(f"hf:{name}: the test split has label {unknown[0]!r}, which no training sample has")
    return classes, np.array([index[t] for t in texts], dtype=np.int64)


def _payload(raw: list, column: str):
    """rows -> the stored bytes (or file path) of each image, across the splits in order."""
    bounds = np.cumsum([0] + [len(p) for p in raw])

    def fetch(start: int, stop: int) -> list:
        out = []
        for k, part in enumerate(raw):
            a, b = max(start, bounds[k]), min(stop, bounds[k + 1])
            if a < b:
                out += [_stored(cell) for cell in part[int(a - bounds[k]):int(b - bounds[k])][column]]
        return out
    return fetch


def _stored(cell) -> bytes | str:
    """An undecoded ``datasets.Image`` cell: its bytes, else its file path (empty bytes: no image)."""
    if not cell:
        return b""
    return cell["bytes"] if cell.get("bytes") is not None else (cell.get("path") or b"")


FORMATS = [DataFormat("hf", "a Hugging Face datasets folder (save_to_disk, parquet/arrow) or hub name", load_hf,
                      takes_path=True, usage="hf:PATH_OR_NAME[:SPLIT]", collection=True)]
