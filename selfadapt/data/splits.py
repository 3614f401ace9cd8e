"""Subsets of a data set: a seeded class-balanced sample, the same in every process and run."""
from __future__ import annotations

import torch

from selfadapt.data.types import ImageSet
from selfadapt.errors import SelfAdaptError


def class_balanced_subset(data: ImageSet, n: int, *, seed: int) -> ImageSet:
    """``n`` samples drawn per class as equally as possible, in their original order.

    A class smaller than its fair share gives all its samples; the rest is split evenly over the
    other classes, the remainder one each to the lowest class labels. Sampling within each class
    is seeded. Returns ``data`` itself when ``n >= len(data)``.

    Example
    -------
    >>> from selfadapt.data.registry import load_dataset
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
