"""Shuffled index batches straight from tensors held on the training device.

A batch is ``(x, y, index)`` everywhere: ``x`` float images in [0, 1] (augmented when an
:class:`~selfadapt.data.augment.Augment` is given), ``y`` the labels, ``index`` the dataset
positions, so per-sample objectives know which targets to update.
"""
from __future__ import annotations

import torch

from selfadapt.data.augment import Augment


class DeviceLoader:
    """Iterate over ``(x, y, index)`` batches of uint8 images kept on ``device``.

    The shuffling order comes from a CPU generator seeded with ``seed`` (the same order on every
    device); augmentation draws from a generator on ``device``. Both states are in
    :meth:`state_dict`, so a resumed run sees exactly the batches an uninterrupted one would.

    Example
    -------
    >>> images = torch.zeros(10, 1, 8, 8, dtype=torch.uint8)
    >>> loader = DeviceLoader(images, torch.arange(10), batch_size=4, shuffle=True, seed=0)
    >>> [len(index) for _, _, index in loader]
    [4, 4, 2]
    """

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, *, batch_size: int,
                 shuffle: bool = False, seed: int = 0, augment: Augment | None = None,
                 device: str | torch.device = "cpu", drop_last: bool = False,
                 channels_last: bool = False):
        self.device = torch.device(device)
        self.images = images.to(self.device)
        self.labels = labels.to(self.device)
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.augment = augment
        self.drop_last = drop_last
        self.memory_format = torch.channels_last if channels_last else torch.contiguous_format
        self.order_generator = torch.Generator().manual_seed(seed)
        self.augment_generator = torch.Generator(device=self.device).manual_seed(seed + 1)

    def __len__(self) -> int:
        n = len(self.labels)
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    def __iter__(self):
        n = len(self.labels)
        if self.shuffle:
            order = torch.randperm(n, generator=self.order_generator).to(self.device)
        else:
            order = torch.arange(n, device=self.device)
        for start in range(0, len(self) * self.batch_size, self.batch_size):
            index = order[start:start + self.batch_size]
            images = self.images[index]
            if self.augment is not None:
                images = self.augment(images, self.augment_generator)
            x = images.to(memory_format=self.memory_format).float().div_(255)
            yield x, self.labels[index], index

    def state_dict(self) -> dict:
        return {"order": self.order_generator.get_state(), "augment": self.augment_generator.get_state()}

    def load_state_dict(self, state: dict) -> None:
        self.order_generator.set_state(state["order"])
        self.augment_generator.set_state(state["augment"])
