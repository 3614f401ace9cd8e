"""Seeded label and input corruptions of a training set, recorded so a run can be replayed exactly.

Every corruption draws from ``np.random.default_rng(seed)`` only (never a global RNG), so the same
seed on the same data gives the same result. A fraction ``rate`` of the N samples is corrupted:
``int(round(rate * N))`` of them (Python rounding, halves to even), chosen without replacement;
the class-dependent ``asymmetric`` noise takes ``int(round(rate * N_c))`` of each source class c.

Label corruptions (images kept):

- ``symmetric``: the label is redrawn uniformly over all C classes (it may stay the same, so the
  expected share of wrong labels is ``rate * (C - 1) / C``);
- ``symmetric-exclusive``: redrawn among the other C - 1 classes (exactly ``rate`` wrong);
- ``asymmetric``: CIFAR-10 truck->automobile, bird->airplane, deer->horse, cat<->dog; CIFAR-100
  one of two variants (below); other data sets c -> (c + 1) mod C;
- ``human``: CIFAR-10N / CIFAR-100N re-annotations (``rate`` is ignored; the variant is the
  label set, see :func:`load_human_labels`).

CIFAR-100 asymmetric noise, which is which (``corrupt(..., variant=...)``):

- ``superclass`` (the default, the SAT paper's): each fine class goes to the next fine class (by
  index) of its true superclass, cyclically, from the coarse labels; e.g. aquatic mammals
  beaver 4 -> dolphin 30 -> otter 55 -> seal 72 -> whale 95 -> beaver 4.
- ``index-blocks``: the convention behind the published CIFAR-100 asymmetric numbers (the code of
  ELR, SCE and GCE): the blocks of 5 consecutive class indices 5i..5i+4 stand in for superclasses,
  c -> c + 1 within the block and 5i + 4 -> 5i; e.g. apple 0 -> aquarium fish 1 -> baby 2 -> bear 3
  -> beaver 4 -> apple 0. Compare with those papers under this variant only. (Their code flips
  each sample with probability ``rate``; here, as for every asymmetric noise, exactly
  ``int(round(rate * N_c))`` of each class.)

Input corruptions (labels kept): ``gaussian`` (per-channel Gaussian noise images),
``random_pixels`` (a permutation of pixel positions per image), ``shuffled_pixels`` (one
permutation shared by all corrupted images).

Example
-------
>>> images = torch.zeros(100, 1, 2, 2, dtype=torch.uint8)
>>> labels = torch.arange(100) % 10
>>> _, noisy, record = corrupt(images, labels, kind="symmetric-exclusive", rate=0.3, seed=0,
...                            num_classes=10)
>>> int((noisy != labels).sum()), len(record.indices), record.realised_error_rate
(30, 30, 0.3)
"""
from __future__ import annotations

import hashlib
import numbers
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from selfadapt.data.diskimages import DiskImages
from selfadapt.data.human_labels import human_noisy_labels
from selfadapt.data.types import channel_stats
from selfadapt.errors import SelfAdaptError

CORRUPTIONS = ("none", "symmetric", "symmetric-exclusive", "asymmetric", "human",
               "gaussian", "random_pixels", "shuffled_pixels")
LABEL_CORRUPTIONS = frozenset({"symmetric", "symmetric-exclusive", "asymmetric", "human"})
INPUT_CORRUPTIONS = frozenset({"gaussian", "random_pixels", "shuffled_pixels"})

#: Asymmetric-noise variants by data set, the default first (see the module docstring).
ASYMMETRIC_VARIANTS = {"cifar100": ("superclass", "index-blocks")}

# CIFAR-10 class-dependent noise: truck->automobile, bird->airplane, deer->horse, cat<->dog.
CIFAR10_ASYMMETRIC = {9: 1, 2: 0, 4: 7, 3: 5, 5: 3}

_CHUNK = 4096  # images processed at a time by the input corruptions (bounds the memory used)
_FIELDS = ("kind", "rate", "seed", "variant", "indices", "original_labels", "new_labels", "digest")


@dataclass(eq=False)
class NoiseRecord:
    """What a corruption did: enough to report it and to :func:`replay` it exactly.

    ``indices`` are the chosen (corrupted) positions in the given training set, sorted; for
    ``human`` noise the positions whose label changed. ``digest`` is the SHA-256 of the corrupted
    images (input corruptions only), checked by :func:`replay`.

    Example
    -------
    >>> r = NoiseRecord("symmetric", 0.5, 0, None, np.array([1]), np.array([0, 1]), np.array([0, 0]))
    >>> r.realised_error_rate, r.summary()["corrupted"]
    (0.5, 1)
    """

    kind: str
    rate: float
    seed: int
    variant: str | None
    indices: np.ndarray
    original_labels: np.ndarray
    new_labels: np.ndarray
    digest: str = ""

    @property
    def realised_error_rate(self) -> float:
        """Share of wrong labels (label noise) or of corrupted images (input noise)."""
        n = len(self.original_labels)
        if n == 0:
            return 0.0
        if self.kind in INPUT_CORRUPTIONS:
            return len(self.indices) / n
        return float(np.mean(self.new_labels != self.original_labels))

    def save(self, path: str | Path) -> None:
        """Write the record to ``path`` exactly (an ``.npz`` archive, no pickled objects)."""
        with open(path, "wb") as f:
            np.savez(f, kind=np.str_(self.kind), rate=np.float64(self.rate), seed=np.int64(self.seed),
                     variant=np.str_(self.variant or ""), indices=np.asarray(self.indices, np.int64),
                     original_labels=np.asarray(self.original_labels, np.int64),
                     new_labels=np.asarray(self.new_labels, np.int64), digest=np.str_(self.digest))

    @classmethod
    def load(cls, path: str | Path) -> NoiseRecord:
        """Read a record written by :meth:`save`; a missing or damaged file raises SelfAdaptError."""
        try:
            with np.load(path, allow_pickle=False) as z:
                missing = [k for k in _FIELDS if k not in z.files]
                if missing:
                    raise ValueError(f"missing {', '.join(missing)}")
                f = {k: z[k] for k in _FIELDS}
            arrays = {k: np.asarray(f[k]) for k in ("indices", "original_labels", "new_labels")}
            if any(a.ndim != 1 or a.dtype.kind not in "iu" for a in arrays.values()):
                raise ValueError("label and index arrays must be 1-D integers")
            if len(arrays["original_labels"]) != len(arrays["new_labels"]):
                raise ValueError("original_labels and new_labels differ in length")
            record = cls(kind=str(f["kind"]), rate=float(f["rate"]), seed=int(f["seed"]),
                         variant=str(f["variant"]) or None, digest=str(f["digest"]),
                         **{k: a.astype(np.int64) for k, a in arrays.items()})
        except FileNotFoundError:
            raise SelfAdaptError(f"noise record not found: {path}") from None
        except (OSError, ValueError, TypeError, KeyError, zipfile.BadZipFile) as e:
            raise SelfAdaptError(f"noise record {path} is corrupt ({e})") from None
        if record.kind not in CORRUPTIONS:
            raise SelfAdaptError(f"noise record {path} is corrupt (unknown kind {record.kind!r})")
        idx = record.indices
        if len(idx) and (idx.min() < 0 or idx.max() >= len(record.original_labels)):
            raise SelfAdaptError(f"noise record {path} is corrupt (indices out of range)")
        return record

    def summary(self) -> dict:
        """JSON-able description: kind, rate, seed, variant, corrupted count, realised error rate."""
        return {"kind": self.kind, "rate": float(self.rate), "seed": int(self.seed), "variant": self.variant,
                "corrupted": int(len(self.indices)), "num_samples": int(len(self.original_labels)),
                "realised_error_rate": float(self.realised_error_rate)}


def corrupt(images: torch.Tensor, labels: torch.Tensor, *, kind: str, rate: float, seed: int, num_classes: int,
            dataset: str = "", variant: str | None = None, coarse_labels: torch.Tensor | None = None,
            source_index: torch.Tensor | None = None, human_labels: np.ndarray | None = None, mean=None, std=None
            ) -> tuple[torch.Tensor, torch.Tensor, NoiseRecord]:
    """Corrupt a fraction ``rate`` of the training set; return new ``(images, labels, record)``.

    ``images`` uint8 ``(N, C, H, W)``, ``labels`` integer ``(N,)`` (the clean labels), both on the
    CPU; neither is modified. ``kind="none"`` or ``rate=0`` (except ``human``) changes nothing.
    Label corruptions return ``images`` itself (no copy: a feature table may be gigabytes).

    - ``dataset`` (``"cifar10"``, ``"cifar100"``, ...) picks the asymmetric mapping and is
      required for ``human``; ``coarse_labels`` ``(N,)`` are needed for CIFAR-100 asymmetric noise
      of the default variant.
    - ``variant``: ``"superclass"`` (default) or ``"index-blocks"`` for CIFAR-100 asymmetric noise
      (module docstring); for ``human`` it may repeat the variant ``human_labels`` carry. The
      record keeps it; any other variant, kind or data set raises SelfAdaptError.
    - ``human``: sample k takes ``human_labels[source_index[k]]`` (``source_index`` is each
      sample's position in the official training order, default ``arange(N)``); ``labels`` must
      be the clean labels: with labels from :func:`load_human_labels` they are checked exactly
      against the file's ``clean_label``, otherwise a disagreement above 70% on 500+ samples is
      taken as misalignment.
    - ``gaussian``: each chosen image becomes per-channel N(mean_c, std_c) noise on the [0, 1]
      scale (default: the given images' statistics), clipped, times 255, rounded to uint8.

    Example
    -------
    >>> images = torch.arange(8, dtype=torch.uint8).reshape(2, 2, 2, 1)
    >>> out, _, rec = corrupt(images, torch.tensor([0, 1]), kind="shuffled_pixels", rate=1.0, seed=1,
    ...                       num_classes=2)
    >>> rec.indices.tolist(), sorted(out[0, 0].flatten().tolist())
    ([0, 1], [0, 1])
    """
    y, n = _validate(images, labels, kind, rate, seed, num_classes)
    dataset = str(dataset).lower()
    variant = _variant(kind, dataset, variant, human_labels)
    rng = np.random.default_rng(seed)
    if kind == "none" or (rate == 0 and kind != "human"):
        record = NoiseRecord(kind, 0.0, seed, variant, np.zeros(0, np.int64), y, y.copy())
        return images, labels.clone().long(), record
    if kind in INPUT_CORRUPTIONS:
        idx = _choose(rng, n, rate)
        out = images.detach().cpu().clone()
        corrupted = _corrupt_images(rng, kind, images.detach().cpu().numpy(), idx, mean, std)
        out[torch.from_numpy(idx)] = torch.from_numpy(corrupted)
        record = NoiseRecord(kind, float(rate), seed, None, idx, y, y.copy(), _digest(corrupted))
        return out, labels.clone().long(), record
    if kind in ("symmetric", "symmetric-exclusive"):
        idx = _choose(rng, n, rate)
        new = y.copy()
        if kind == "symmetric":
            new[idx] = rng.integers(0, num_classes, size=len(idx))
        else:
            if num_classes < 2:
                raise SelfAdaptError("symmetric-exclusive noise needs at least 2 classes")
            new[idx] = (y[idx] + rng.integers(1, num_classes, size=len(idx))) % num_classes
    elif kind == "asymmetric":
        mapping = _asymmetric_mapping(dataset, variant, num_classes, y, coarse_labels)
        new, chosen = y.copy(), []
        for source in sorted(mapping):
            members = np.flatnonzero(y == source)
            pick = rng.choice(members, size=int(round(rate * len(members))), replace=False)
            new[pick] = mapping[source]
            chosen.append(pick)
        idx = np.sort(np.concatenate(chosen)).astype(np.int64) if chosen else np.zeros(0, np.int64)
    else:
        new = human_noisy_labels(y, dataset, num_classes, source_index, human_labels)
        idx = np.flatnonzero(new != y).astype(np.int64)
        rate = float(np.mean(new != y)) if n else 0.0
    record = NoiseRecord(kind, float(rate), seed, variant, idx, y, new)
    return images, torch.from_numpy(new.copy()), record


def replay(record: NoiseRecord, images: torch.Tensor, labels: torch.Tensor, **kwargs
           ) -> tuple[torch.Tensor, torch.Tensor]:
    """Reproduce a saved corruption exactly on the same data.

    ``kwargs`` are those given to :func:`corrupt` (``kind``, ``rate``, ``seed`` and ``variant``
    come from the record; if passed they must agree with it). Label noise reapplies
    ``record.new_labels``, whatever its variant; input noise is regenerated from the seed and
    checked against the record's indices and digest.

    Example
    -------
    >>> images, labels = torch.zeros(10, 1, 2, 2, dtype=torch.uint8), torch.arange(10) % 2
    >>> _, noisy, record = corrupt(images, labels, kind="symmetric", rate=0.5, seed=3, num_classes=2)
    >>> bool(torch.equal(replay(record, images, labels)[1], noisy))
    True
    """
    checked = ("kind", "seed") if record.kind in ("none", "human") else ("kind", "rate", "seed")
    for name in ("kind", "rate", "seed"):
        if name in kwargs and kwargs.pop(name) != getattr(record, name) and name in checked:
            raise SelfAdaptError(f"replay: {name} differs from the record's ({getattr(record, name)})")
    variant = kwargs.pop("variant", None)
    if variant is not None and variant != record.variant:
        raise SelfAdaptError(f"replay: variant differs from the record's ({record.variant})")
    unknown = set(kwargs) - {"num_classes", "dataset", "coarse_labels", "source_index", "human_labels",
                             "mean", "std"}
    if unknown:
        raise TypeError(f"replay() got unexpected keyword arguments {sorted(unknown)}")
    y = labels.detach().cpu().numpy()
    if y.shape != record.original_labels.shape or not np.array_equal(y, record.original_labels):
        raise SelfAdaptError("record does not belong to this data (its original labels differ from these labels)")
    if record.kind not in INPUT_CORRUPTIONS:
        return images, torch.from_numpy(record.new_labels.astype(np.int64))
    if images.ndim != 4 or images.dtype != torch.uint8 or images.shape[0] != len(y):
        raise SelfAdaptError("record does not belong to this data (images do not match the labels)")
    rng = np.random.default_rng(record.seed)
    idx = _choose(rng, len(y), record.rate)
    if not np.array_equal(idx, record.indices):
        raise SelfAdaptError("record does not belong to this data (regenerated indices differ)")
    corrupted = _corrupt_images(rng, record.kind, images.detach().cpu().numpy(), idx,
                                kwargs.get("mean"), kwargs.get("std"))
    if record.digest and _digest(corrupted) != record.digest:
        raise SelfAdaptError("replayed images differ from the record (different images, mean or std?)")
    out = images.detach().cpu().clone()
    out[torch.from_numpy(idx)] = torch.from_numpy(corrupted)
    return out, labels.clone().long()


def _validate(images, labels, kind, rate, seed, num_classes) -> tuple[np.ndarray, int]:
    if kind not in CORRUPTIONS:
        raise SelfAdaptError(f"unknown corruption {kind!r}; choose from {', '.join(CORRUPTIONS)}")
    if isinstance(rate, bool) or not isinstance(rate, numbers.Real) or not 0.0 <= rate <= 1.0:
        raise SelfAdaptError(f"noise rate must lie in [0, 1], got {rate}")
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral) or seed < 0:
        raise SelfAdaptError(f"noise seed must be a non-negative integer, got {seed!r}")
    if isinstance(num_classes, bool) or not isinstance(num_classes, numbers.Integral) or num_classes < 1:
        raise SelfAdaptError(f"num_classes must be a positive integer, got {num_classes!r}")
    if not isinstance(labels, torch.Tensor) or labels.ndim != 1 or labels.is_floating_point():
        raise SelfAdaptError("labels must be a 1-D integer tensor")
    if isinstance(images, DiskImages) and kind in INPUT_CORRUPTIONS:
        raise SelfAdaptError(f"{kind} noise rewrites pixels, which needs the decoded images in memory; they are "
                             "streamed from the image cache (--stream, or larger than the memory budget)")
    if not isinstance(images, (torch.Tensor, DiskImages)) or images.dim() != 4 or \
            images.dtype not in (torch.uint8, torch.float32):
        raise SelfAdaptError("images must be a uint8 tensor of shape (N, C, H, W)")
    if images.dtype != torch.uint8 and kind in INPUT_CORRUPTIONS:
        raise SelfAdaptError(f"{kind} corrupts the pixels of uint8 images; feature vectors take label noise only")
    if images.shape[0] != labels.shape[0]:
        raise SelfAdaptError(f"{images.shape[0]} images but {labels.shape[0]} labels")
    y = labels.detach().cpu().numpy().astype(np.int64)
    if len(y) and (y.min() < 0 or y.max() >= num_classes):
        raise SelfAdaptError(f"labels must lie in [0, {num_classes}), found {y.min()}..{y.max()}")
    return y, len(y)


def _choose(rng: np.random.Generator, n: int, rate: float) -> np.ndarray:
    """``int(round(rate * n))`` distinct positions, sorted."""
    return np.sort(rng.choice(n, size=int(round(rate * n)), replace=False)).astype(np.int64)


def _variant(kind: str, dataset: str, variant: str | None, human_labels) -> str | None:
    """The variant to apply and record: checked, or the default of ``kind`` on ``dataset``."""
    if kind == "human":
        carried = getattr(human_labels, "variant", None)
        if variant is not None and variant != carried:
            raise SelfAdaptError(f"human noise takes its variant from human_labels (load_human_labels(path, "
                                 f"variant=...)); they carry {carried!r}, not {variant!r}")
        return carried
    choices = ASYMMETRIC_VARIANTS.get(dataset, ()) if kind == "asymmetric" else ()
    if variant is None or variant in choices:
        return variant or (choices[0] if choices else None)
    if choices:
        raise SelfAdaptError(f"unknown {kind} noise variant {variant!r} for {dataset}; choose from {', '.join(choices)}")
    where = f"{kind} noise on {dataset or 'unnamed data'}" if kind == "asymmetric" else f"{kind} noise"
    raise SelfAdaptError(f"{where} has no variant (got {variant!r}); variants exist for asymmetric noise on "
                         f"{', '.join(ASYMMETRIC_VARIANTS)} and for human noise")


def _asymmetric_mapping(dataset: str, variant: str | None, num_classes: int, y: np.ndarray,
                        coarse_labels) -> dict[int, int]:
    needed = {"cifar10": 10, "cifar100": 100}.get(dataset, num_classes)
    if num_classes != needed:
        raise SelfAdaptError(f"{dataset} asymmetric noise needs {needed} classes, got {num_classes}")
    if dataset == "cifar10":
        return dict(CIFAR10_ASYMMETRIC)
    if variant == "index-blocks":
        return {c: c - c % 5 + (c + 1) % 5 for c in range(num_classes)}
    if dataset == "cifar100":
        if coarse_labels is None:
            raise SelfAdaptError("asymmetric noise on cifar100 needs the coarse (superclass) labels")
        coarse = np.asarray(torch.as_tensor(coarse_labels).cpu()).astype(np.int64)
        if coarse.shape != y.shape:
            raise SelfAdaptError(f"coarse_labels must have one entry per sample ({len(y)}), got {coarse.shape}")
        pairs = np.unique(np.stack([y, coarse], 1), axis=0)
        if len(np.unique(pairs[:, 0])) != len(pairs):
            raise SelfAdaptError("coarse_labels are inconsistent: a fine class belongs to two superclasses")
        mapping = {}
        for superclass in np.unique(pairs[:, 1]):
            members = np.sort(pairs[pairs[:, 1] == superclass, 0])
            mapping.update({int(c): int(members[(i + 1) % len(members)]) for i, c in enumerate(members)})
        return mapping
    return {c: (c + 1) % num_classes for c in range(num_classes)}


def _corrupt_images(rng, kind, images: np.ndarray, idx: np.ndarray, mean, std) -> np.ndarray:
    """The corrupted versions of ``images[idx]``, drawn from ``rng`` chunk by chunk."""
    k, (channels, h, w) = len(idx), images.shape[1:]
    out = np.empty((k, channels, h, w), dtype=np.uint8)
    if kind == "gaussian":
        mu, sigma = _gaussian_stats(images, mean, std)
        for s in range(0, k, _CHUNK):
            x = rng.standard_normal((min(_CHUNK, k - s), channels, h, w), dtype=np.float32)
            x = x * sigma[:, None, None] + mu[:, None, None]
            np.clip(x, 0.0, 1.0, out=x)
            out[s:s + len(x)] = np.rint(x * 255.0).astype(np.uint8)
        return out
    shared = rng.permutation(h * w) if kind == "shuffled_pixels" else None
    for s in range(0, k, _CHUNK):
        flat = images[idx[s:s + _CHUNK]].reshape(-1, channels, h * w)
        if shared is None:
            perms = rng.permuted(np.broadcast_to(np.arange(h * w), (len(flat), h * w)), axis=1)
            flat = np.take_along_axis(flat, perms[:, None, :], axis=2)
        else:
            flat = flat[:, :, shared]
        out[s:s + len(flat)] = flat.reshape(-1, channels, h, w)
    return out


def _gaussian_stats(images: np.ndarray, mean, std) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel mean and std on the [0, 1] scale: as given, or measured on ``images``."""
    channels = images.shape[1]
    measured = channel_stats(torch.from_numpy(images)) if mean is None or std is None else (None, None)
    stats = []
    for name, given, fallback in (("mean", mean, measured[0]), ("std", std, measured[1])):
        v = np.asarray(fallback if given is None else given, np.float64).reshape(-1)
        if v.size == 1:
            v = np.repeat(v, channels)
        if v.shape != (channels,) or not np.all(np.isfinite(v)) or v.min() < 0 or v.max() > 1:
            raise SelfAdaptError(f"gaussian noise {name} must be {channels} value(s) on the [0, 1] scale, got {given}")
        stats.append(v.astype(np.float32))
    return stats[0], stats[1]


def _digest(images: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(images).tobytes()).hexdigest()


