"""CIFAR-10N and CIFAR-100N: real human re-annotations of the CIFAR training sets, read safely.

The files (``CIFAR-10_human.pt``, ``CIFAR-100_human.pt``) are torch-saved dicts of numpy arrays in
the official training order; :func:`load_human_labels` reads one label set ("variant") with
torch's weights-only unpickler, so a malicious file cannot run code. ``--noise human`` uses them.
"""
from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import torch

from selfadapt.data.safe_pickle import torch_load_arrays
from selfadapt.errors import SelfAdaptError

#: CIFAR-N label sets by data set: variant name -> key in the official ``.pt`` file.
HUMAN_VARIANTS = {
    "cifar10": {"clean": "clean_label", "aggre": "aggre_label", "worse": "worse_label",
                "random1": "random_label1", "random2": "random_label2", "random3": "random_label3"},
    "cifar100": {"clean": "clean_label", "noisy": "noisy_label"},
}


HUMAN_FILES = {"cifar10": "CIFAR-10_human.pt", "cifar100": "CIFAR-100_human.pt"}


class HumanLabels(np.ndarray):
    """CIFAR-N labels of one variant in the official training order (a plain int64 array) that
    also carries ``variant`` and the file's ``clean_labels``, so :func:`corrupt` can record the
    variant and check that the data it corrupts is aligned with the file. Arrays derived from it
    (slices, copies) lose both attributes."""


def load_human_labels(path: str | Path, *, variant: str) -> np.ndarray:
    """The ``variant`` label set of a CIFAR-N file, int64 in the official training order.

    Variants: ``aggre``, ``worse``, ``random1``..``random3`` (CIFAR-10N), ``noisy`` (CIFAR-100N) and
    ``clean`` (both). The file (a torch-saved dict of numpy arrays) is read with torch's
    weights-only unpickler, which admits numpy's array reconstruction and nothing else, so a
    malicious file cannot run code; it raises SelfAdaptError instead.

    Example
    -------
    >>> worse = load_human_labels("data/cifar-n/CIFAR-10_human.pt", variant="worse")  # doctest: +SKIP
    >>> worse.shape, worse.variant  # doctest: +SKIP
    ((50000,), 'worse')
    """
    path = Path(path)
    content = _read_cifar_n(path)
    keys = next((v for v in HUMAN_VARIANTS.values() if set(v.values()) <= set(content)), None)
    if keys is None:
        raise SelfAdaptError(f"{path} is not a CIFAR-N label file (keys: {', '.join(sorted(map(str, content)))})")
    if variant not in keys:
        raise SelfAdaptError(f"CIFAR-N variant {variant!r} is not in {path.name}; choose from {', '.join(keys)}")
    clean = _label_array(content["clean_label"], path, "clean_label")
    labels = _label_array(content[keys[variant]], path, keys[variant])
    if labels.shape != clean.shape:
        raise SelfAdaptError(f"{path} is corrupt ({keys[variant]} and clean_label differ in length)")
    out = labels.view(HumanLabels)
    out.variant, out.clean_labels = variant, clean
    return out


def find_human_labels_file(dataset: str, data_dir: str | Path) -> Path:
    """Locate ``CIFAR-10_human.pt`` / ``CIFAR-100_human.pt`` in ``data_dir`` or ``data_dir/cifar-n``
    (nowhere else: pass the data folder, e.g. ``--data-dir`` or ``$SELFADAPT_DATA``).

    Example
    -------
    >>> find_human_labels_file("cifar10", "data")  # doctest: +SKIP
    PosixPath('data/cifar-n/CIFAR-10_human.pt')
    """
    name = HUMAN_FILES.get(str(dataset).lower())
    if name is None:
        raise SelfAdaptError(f"human label noise exists only for cifar10 and cifar100, not {dataset!r}")
    places = [Path(data_dir), Path(data_dir) / "cifar-n"]
    for place in places:
        if (place / name).is_file():
            return place / name
    raise SelfAdaptError(f"{name} not found in {places[0]} or {places[1]}; put the CIFAR-N file in {places[1]} "
                         f"or point the data folder (--data-dir, $SELFADAPT_DATA) at where it is")


def human_noisy_labels(y, dataset, num_classes, source_index, human_labels) -> np.ndarray:
    if dataset not in HUMAN_FILES:
        raise SelfAdaptError(f"human label noise exists only for cifar10 and cifar100, not {dataset or 'unnamed data'!r}")
    if human_labels is None:
        raise SelfAdaptError("human noise needs human_labels (see load_human_labels)")
    human = np.asarray(human_labels)
    if human.ndim != 1 or human.dtype.kind not in "iu":
        raise SelfAdaptError("human_labels must be a 1-D integer array")
    if len(human) and (human.min() < 0 or human.max() >= num_classes):
        raise SelfAdaptError(f"human_labels do not fit {dataset} ({num_classes} classes)")
    if source_index is None:
        src = np.arange(len(y), dtype=np.int64)
    else:
        src = np.asarray(torch.as_tensor(source_index).cpu()).astype(np.int64)
        if src.shape != y.shape:
            raise SelfAdaptError(f"source_index must have one entry per sample ({len(y)}), got {src.shape}")
    if len(src) and (src.min() < 0 or src.max() >= len(human)):
        raise SelfAdaptError(f"source_index exceeds the {len(human)} CIFAR-N labels (pass source_index?)")
    new = human[src].astype(np.int64)
    clean = getattr(human_labels, "clean_labels", None)
    if clean is not None:
        aligned = len(clean) == len(human) and np.array_equal(clean[src], y)
    else:
        aligned = len(y) < 500 or np.mean(new != y) <= 0.7
    if not aligned:
        raise SelfAdaptError("CIFAR-N labels are not aligned with this data (pass the clean labels in "
                             "the official training order, or source_index)")
    return new


def _read_cifar_n(path: Path) -> dict:
    if not path.is_file():
        raise SelfAdaptError(f"CIFAR-N file not found: {path}")
    try:
        content = torch_load_arrays(path)
    except pickle.UnpicklingError as e:
        reason = [line.strip() for line in str(e).splitlines() if "GLOBAL" in line or "Unsupported" in line]
        raise SelfAdaptError(f"{path} holds more than numpy arrays and was not loaded "
                             f"({reason[0] if reason else 'refused by the weights-only unpickler'})") from None
    except Exception as e:  # torch raises RuntimeError, EOFError, zipfile errors... for damaged files
        raise SelfAdaptError(f"{path} is not a readable CIFAR-N file ({type(e).__name__}: {e})") from None
    if not isinstance(content, dict):
        raise SelfAdaptError(f"{path} is not a CIFAR-N label file (holds a {type(content).__name__}, not a dict)")
    return content


def _label_array(value, path: Path, key: str) -> np.ndarray:
    a = value.numpy() if isinstance(value, torch.Tensor) else np.asarray(value)
    if a.ndim != 1 or a.dtype.kind not in "iu" or (len(a) and a.min() < 0):
        raise SelfAdaptError(f"{path} is corrupt ({key} is not a 1-D array of class indices)")
    return a.astype(np.int64)
