"""Batches gathered from the image cache on disk, for decoded sets larger than memory.

:class:`StreamLoader` is a :class:`~selfadapt.data.loader.DeviceLoader` whose images stay on disk
(:class:`~selfadapt.data.diskimages.DiskImages`): the batch order, the sharding under ``torchrun``,
the augmentation (on the training device, from the same generator) and the resumable state are the
in-memory loader's own, so both yield the same batches. A background thread reads the next
``prefetch`` batches from the file while the model trains on this one; for CUDA it gathers into
pinned buffers and copies without blocking. Memory holds a few batches, whatever the set's size.

``make_loader(images, labels, ...)`` picks the loader that fits the images.

>>> import tempfile, numpy as np
>>> from selfadapt.data.diskimages import DiskImages
>>> path = tempfile.mktemp(); np.arange(10 * 4, dtype=np.uint8).tofile(path)
>>> images = DiskImages(path, (10, 1, 2, 2))
>>> streamed = StreamLoader(images, torch.arange(10), batch_size=4, shuffle=True, seed=0)
>>> in_memory = DeviceLoader(images.load(), torch.arange(10), batch_size=4, shuffle=True, seed=0)
>>> all(torch.equal(a.views[0], b.views[0]) for a, b in zip(streamed, in_memory))
True
"""
from __future__ import annotations

import queue
import threading

import torch

from selfadapt.data.diskimages import DiskImages
from selfadapt.data.loader import DeviceLoader

__all__ = ["StreamLoader", "make_loader"]


class StreamLoader(DeviceLoader):
    """A :class:`DeviceLoader` over :class:`DiskImages`, gathering ``prefetch`` batches ahead."""

    def __init__(self, images: DiskImages, labels: torch.Tensor, *, prefetch: int = 2, **kwargs):
        self.prefetch = max(1, prefetch)
        super().__init__(images, labels, **kwargs)
        self._pinned = self.device.type == "cuda"

    def _place(self, images: DiskImages) -> DiskImages:
        return images  # stays on disk

    def __iter__(self):
        ready: queue.Queue = queue.Queue(maxsize=self.prefetch)
        stop = threading.Event()
        worker = threading.Thread(target=self._gather_ahead, args=(ready, stop), daemon=True)
        worker.start()
        try:
            while (item := ready.get()) is not None:
                if isinstance(item, BaseException):
                    raise item
                index, images, release = item
                index = index.to(self.device, non_blocking=True)
                images = images.to(self.device, non_blocking=True)
                if release is not None:
                    release.record()
                yield self._batch(images, index)
        finally:
            stop.set()
            while worker.is_alive():  # unblock a worker waiting to put
                try:
                    ready.get_nowait()
                except queue.Empty:
                    worker.join(0.01)

    def _gather_ahead(self, ready: queue.Queue, stop: threading.Event) -> None:
        """Thread: gather every batch of the epoch (into pinned buffers for CUDA) and queue it."""
        buffers = _PinnedRing(self.prefetch + 2, self.batch_size, self.images.shape[1:]) if self._pinned else None
        try:
            for index in self.batch_indices(torch.device("cpu")):
                if buffers is not None:
                    out, release = buffers.next(len(index))
                    self.images.gather(index, out=out.numpy())
                    item = (index, out, release)
                else:
                    item = (index, self.images[index], None)
                if not _put(ready, item, stop):
                    return
            _put(ready, None, stop)
        except BaseException as e:  # handed to the training thread, which raises it
            _put(ready, e, stop)


class _PinnedRing:
    """Pinned host buffers reused in turn; each waits for the copy that last read it."""

    def __init__(self, count: int, batch_size: int, image_shape):
        self.buffers = [torch.empty((batch_size, *image_shape), dtype=torch.uint8).pin_memory() for _ in range(count)]
        self.events = [torch.cuda.Event() for _ in range(count)]
        self.used = [False] * count
        self.turn = 0

    def next(self, rows: int):
        k = self.turn = (self.turn + 1) % len(self.buffers)
        if self.used[k]:
            self.events[k].synchronize()
        self.used[k] = True
        buffer = self.buffers[k] if rows <= len(self.buffers[k]) else torch.empty(
            (rows, *self.buffers[k].shape[1:]), dtype=torch.uint8).pin_memory()
        return buffer[:rows], self.events[k]


def _put(ready: queue.Queue, item, stop: threading.Event) -> bool:
    while not stop.is_set():
        try:
            ready.put(item, timeout=0.1)
            return True
        except queue.Full:
            continue
    return False


def make_loader(images, labels: torch.Tensor, **kwargs) -> DeviceLoader:
    """A :class:`StreamLoader` for :class:`DiskImages`, else a :class:`DeviceLoader` (same arguments).

    >>> type(make_loader(torch.zeros(2, 1, 2, 2, dtype=torch.uint8), torch.arange(2), batch_size=1)).__name__
    'DeviceLoader'
    """
    if isinstance(images, DiskImages):
        return StreamLoader(images, labels, **kwargs)
    return DeviceLoader(images, labels, **kwargs)
