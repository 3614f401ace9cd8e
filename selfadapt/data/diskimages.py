"""Images that stay on disk: rows of a cache file, read on demand.

:class:`DiskImages` stands in for a ``uint8 (N, C, S, S)`` tensor where the decoded set is larger
than memory: ``images[index]`` gathers those rows into an ordinary tensor, ``images.subset(rows)``
selects rows without reading anything, ``images.load()`` reads them all into memory.

Rows are read with positioned reads (``os.preadv``, one per run of adjacent rows, in file order),
not through a memory map: on Linux a map's fault-around brings about ten times the bytes read into
the process's resident memory (measured: 66 MB of random rows left 607 MB mapped), so its peak grew
with the set; ``preadv`` leaves the pages in the page cache, shared and reclaimable, and the process
holds only the batches it asked for.

>>> import tempfile, numpy as np
>>> path = tempfile.mktemp()
>>> np.arange(4 * 1 * 2 * 2, dtype=np.uint8).tofile(path)
>>> images = DiskImages(path, (4, 1, 2, 2))
>>> images[torch.tensor([3, 0])].flatten().tolist()
[12, 13, 14, 15, 0, 1, 2, 3]
>>> images.subset([1, 2]).shape, images.subset([1, 2])[0].flatten().tolist()
(torch.Size([2, 1, 2, 2]), [4, 5, 6, 7])
"""
from __future__ import annotations

import os
import threading
from pathlib import Path

import numpy as np
import torch

__all__ = ["DiskImages", "take"]


class DiskImages:
    """``uint8`` images ``shape`` (all rows of the file at ``path``), optionally a selection ``rows``."""

    dtype = torch.uint8

    def __init__(self, path: str | Path, shape: tuple[int, int, int, int], rows=None):
        self.path, self.file_shape = Path(path), tuple(int(x) for x in shape)
        self.rows = None if rows is None else np.asarray(rows, dtype=np.int64)
        self._fd = None
        self._lock = threading.Lock()

    @property
    def shape(self) -> torch.Size:
        return torch.Size((len(self), *self.file_shape[1:]))

    @property
    def row_bytes(self) -> int:
        return int(np.prod(self.file_shape[1:]))

    @property
    def nbytes(self) -> int:
        return len(self) * self.row_bytes

    def dim(self) -> int:
        return 4

    ndim = property(dim)

    def __len__(self) -> int:
        return self.file_shape[0] if self.rows is None else len(self.rows)

    def __repr__(self) -> str:
        return f"DiskImages({str(self.path)!r}, shape={tuple(self.shape)})"

    def contiguous(self) -> DiskImages:
        return self

    def subset(self, index) -> DiskImages:
        """The rows ``index`` (integers or a boolean mask) as another :class:`DiskImages`; reads nothing."""
        return DiskImages(self.path, self.file_shape, self._file_rows(index))

    def __getitem__(self, index) -> torch.Tensor:
        """Rows gathered into an ordinary ``uint8`` tensor (an integer gives one image)."""
        if isinstance(index, (int, np.integer)) or (torch.is_tensor(index) and index.dim() == 0):
            return self[np.array([int(index)])][0]
        return torch.from_numpy(self.gather(index))

    def gather(self, index, out: np.ndarray | None = None) -> np.ndarray:
        """Rows ``index`` into ``out`` (a new array by default): each distinct row read once, in file order."""
        rows = self._file_rows(index)
        shape = (len(rows), *self.file_shape[1:])
        out = np.empty(shape, np.uint8) if out is None else out
        if len(rows) < 2 or bool(np.all(np.diff(rows) > 0)):  # already distinct and in file order
            self._read_sorted(rows, out)
            return out
        unique, inverse = np.unique(rows, return_inverse=True)
        distinct = np.empty((len(unique), *self.file_shape[1:]), np.uint8)
        self._read_sorted(unique, distinct)
        np.take(distinct, inverse.reshape(-1), axis=0, out=out)
        return out

    def _read_sorted(self, rows: np.ndarray, out: np.ndarray) -> None:
        """Increasing file ``rows`` into ``out``, one ``preadv`` per run of adjacent rows."""
        flat = out.reshape(len(rows), -1)
        breaks = np.flatnonzero(np.diff(rows) != 1) + 1
        fd = self._descriptor()
        for a, b in zip(np.r_[0, breaks], np.r_[breaks, len(rows)]):
            if b > a and os.preadv(fd, [flat[a:b]], int(rows[a]) * self.row_bytes) != (b - a) * self.row_bytes:
                raise ValueError(f"{self.path} is shorter than its {self.file_shape[0]} rows (cut short?)")

    def load(self, chunk: int = 4096) -> torch.Tensor:
        """Every row in memory (read in chunks, so memory peaks at the result plus one chunk)."""
        out = torch.empty(tuple(self.shape), dtype=torch.uint8)
        for start in range(0, len(self), chunk):
            stop = min(start + chunk, len(self))
            self.gather(np.arange(start, stop), out=out[start:stop].numpy())
        return out

    def _file_rows(self, index) -> np.ndarray:
        if torch.is_tensor(index):
            index = index.cpu().numpy()
        if isinstance(index, slice):
            index = np.arange(len(self))[index]
        index = np.asarray(index)
        if index.dtype == bool:
            if index.shape != (len(self),):
                raise IndexError(f"a boolean mask must have {len(self)} entries, got {index.shape}")
            index = np.flatnonzero(index)
        index = index.astype(np.int64).reshape(-1)
        if index.size and not (-len(self) <= index.min() and index.max() < len(self)):
            raise IndexError(f"rows must lie in [0, {len(self)}), got {index.min()}..{index.max()}")
        index = np.where(index < 0, index + len(self), index)
        return index if self.rows is None else self.rows[index]

    def _descriptor(self) -> int:
        with self._lock:
            if self._fd is None:
                self._fd = os.open(self.path, os.O_RDONLY)
            return self._fd

    def __del__(self):
        if getattr(self, "_fd", None) is not None:
            os.close(self._fd)

    def __getstate__(self):
        return {"path": self.path, "file_shape": self.file_shape, "rows": self.rows}

    def __setstate__(self, state):
        self.__init__(state["path"], state["file_shape"], state["rows"])


def take(images, rows):
    """``images[rows]``, keeping :class:`DiskImages` on disk (a tensor is indexed as usual).

    >>> take(torch.arange(5), torch.tensor([4, 0])).tolist()
    [4, 0]
    """
    return images.subset(rows) if isinstance(images, DiskImages) else images[rows]
