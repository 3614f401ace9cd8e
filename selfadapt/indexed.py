"""Give SAT the dataset index of every sample from a standard ``torch.utils.data`` pipeline.

SAT keeps one target per training sample, so its loss needs each sample's position in the training
set. Wrap any map-style dataset and every item gains that position as its last element::

    >>> import torch
    >>> from torch.utils.data import DataLoader, TensorDataset
    >>> data = IndexedDataset(TensorDataset(torch.zeros(5, 2), torch.tensor([0, 1, 0, 1, 1])))
    >>> x, y, index = next(iter(DataLoader(data, batch_size=3)))
    >>> index
    tensor([0, 1, 2])
"""
from __future__ import annotations

from torch.utils.data import Dataset


class IndexedDataset(Dataset):
    """``dataset[i]`` as ``(*dataset[i], i)`` (a non-tuple item ``v`` becomes ``(v, i)``)."""

    def __init__(self, dataset: Dataset):
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, i: int):
        item = self.dataset[i]
        return (*item, i) if isinstance(item, tuple) else (item, i)
