"""Shuffled index batches straight from tensors held on the training device.

A batch is a :class:`~selfadapt.objectives.base.Batch` ``(views, y, index)`` everywhere: one or
more augmented views of the same samples (float images in [0, 1]), their labels (``-1`` for
unlabeled samples) and their dataset positions, so per-sample objectives know which targets to update.
"""
from __future__ import annotations

from typing import Callable, Sequence

import torch

from selfadapt.batch import Batch

Augmentation = Callable[[torch.Tensor, torch.Generator], torch.Tensor]
_RANK_STRIDE = 1_000_003  # augmentation seeds of different processes lie this far apart


class DeviceLoader:
    """Iterate over :class:`Batch` es of uint8 images kept on ``device``.

    ``augment`` is one augmentation for every view, or a sequence with one per view (its length
    is then the number of views); an augmentation maps a uint8 batch and a generator to a uint8
    or float ([0, 1]) batch. The order comes from a CPU generator seeded with ``seed`` (the same on
    every device and every process); augmentation draws from a generator on ``device``. Both
    states are in :meth:`state_dict`, so a resumed run sees exactly the batches an uninterrupted
    one would.

    ``shard=(rank, world)`` splits every global batch of ``batch_size`` samples of the shared
    permutation into ``world`` near-equal parts and yields part ``rank``: no index appears twice
    in an epoch across processes. A last global batch smaller than ``world`` joins the one before
    it, so that no process gets an empty batch.

    Example
    -------
    >>> images = torch.zeros(10, 1, 8, 8, dtype=torch.uint8)
    >>> loader = DeviceLoader(images, torch.arange(10), batch_size=4, shuffle=True, seed=0)
    >>> [len(batch.index) for batch in loader]
    [4, 4, 2]
    >>> [len(b.index) for b in DeviceLoader(images, torch.arange(10), batch_size=4, shard=(1, 2))]
    [2, 2, 1]
    """

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, *, batch_size: int,
                 shuffle: bool = False, seed: int = 0, augment: Augmentation | Sequence[Augmentation] | None = None,
                 views: int = 1, device: str | torch.device = "cpu", drop_last: bool = False,
                 channels_last: bool = False, shard: tuple[int, int] = (0, 1)):
        self.device = torch.device(device)
        self.images = self._place(images)
        self.labels = labels.to(self.device)
        self.batch_size = batch_size
        self.shuffle = shuffle
        if isinstance(augment, (list, tuple)):
            self.augments = list(augment)
        else:
            self.augments = [augment] * views
        self.drop_last = drop_last
        self.memory_format = torch.channels_last if channels_last else torch.contiguous_format
        self.rank, self.world = shard
        self.order_generator = torch.Generator().manual_seed(seed)
        self.augment_generator = torch.Generator(device=self.device).manual_seed(
            seed + 1 + _RANK_STRIDE * self.rank)

    @property
    def views(self) -> int:
        return len(self.augments)

    def global_batch_sizes(self) -> list[int]:
        """The number of samples of every step over all processes (the last may be smaller)."""
        n = len(self.labels)
        sizes = [self.batch_size] * (n // self.batch_size)
        rest = n % self.batch_size
        if rest and not self.drop_last:
            if rest < self.world and sizes:
                sizes[-1] += rest
            else:
                sizes.append(rest)
        return sizes

    def __len__(self) -> int:
        return len(self.global_batch_sizes())

    def batch_indices(self, device: torch.device | None = None):
        """The dataset positions of this process's batches, in order (on ``device``, default the
        loader's); draws the epoch's permutation. :class:`~selfadapt.data.stream.StreamLoader` shares it."""
        n = len(self.labels)
        if self.shuffle:
            order = torch.randperm(n, generator=self.order_generator).to(device or self.device)
        else:
            order = torch.arange(n, device=device or self.device)
        start = 0
        for size in self.global_batch_sizes():
            index = order[start:start + size]
            start += size
            yield torch.tensor_split(index, self.world)[self.rank] if self.world > 1 else index

    def __iter__(self):
        for index in self.batch_indices():  # index_select: as images[index], about twice as fast on the CPU
            yield self._batch(self.images.index_select(0, index), index)

    def _place(self, images: torch.Tensor) -> torch.Tensor:
        return images.to(self.device)

    def _batch(self, images: torch.Tensor, index: torch.Tensor) -> Batch:
        views = tuple(self._view(images, augment) for augment in self.augments)
        return Batch(views, self.labels[index], index)

    def _view(self, images: torch.Tensor, augment: Augmentation | None) -> torch.Tensor:
        if augment is not None:
            images = augment(images, self.augment_generator)
        images = images.to(memory_format=self.memory_format)
        return images.float().div_(255) if images.dtype == torch.uint8 else images

    def state_dict(self) -> dict:
        return {"order": self.order_generator.get_state(), "augment": self.augment_generator.get_state()}

    def load_state_dict(self, state: dict) -> None:
        self.order_generator.set_state(state["order"])
        self.augment_generator.set_state(state["augment"])
