"""Images that stay on disk: rows of a cache file, read on demand through a memory map.

:class:`MappedImages` stands in for a ``uint8 (N, C, S, S)`` tensor where the decoded set is larger
than memory: ``images[index]`` gathers those rows into an ordinary tensor, ``images.subset(rows)``
selects rows without reading anything, ``images.load()`` reads them all into memory. Pages read
through the map are released every :data:`RELEASE_BYTES`, so the process's resident memory does not
grow with the number of images read.

>>> import tempfile, numpy as np
>>> path = tempfile.mktemp()
>>> np.arange(4 * 1 * 2 * 2, dtype=np.uint8).tofile(path)
>>> images = MappedImages(path, (4, 1, 2, 2))
>>> images[torch.tensor([3, 0])].flatten().tolist()
[12, 13, 14, 15, 0, 1, 2, 3]
>>> images.subset([1, 2]).shape, images.subset([1, 2])[0].flatten().tolist()
(torch.Size([2, 1, 2, 2]), [4, 5, 6, 7])
"""
from __future__ import annotations

import mmap
import threading
from pathlib import Path

import numpy as np
import torch

__all__ = ["MappedImages", "take"]

RELEASE_BYTES = 64 << 20  # drop the map's pages from this process after this much has been read


class MappedImages:
    """``uint8`` images ``shape`` (all rows of the file at ``path``), optionally a selection ``rows``."""

    dtype = torch.uint8

    def __init__(self, path: str | Path, shape: tuple[int, int, int, int], rows=None):
        self.path, self.file_shape = Path(path), tuple(int(x) for x in shape)
        self.rows = None if rows is None else np.asarray(rows, dtype=np.int64)
        self._map = None
        self._lock = threading.Lock()
        self._read = 0

    @property
    def shape(self) -> torch.Size:
        return torch.Size((len(self), *self.file_shape[1:]))

    @property
    def nbytes(self) -> int:
        return len(self) * int(np.prod(self.file_shape[1:]))

    def dim(self) -> int:
        return 4

    def __len__(self) -> int:
        return self.file_shape[0] if self.rows is None else len(self.rows)

    def __repr__(self) -> str:
        return f"MappedImages({str(self.path)!r}, shape={tuple(self.shape)})"

    def contiguous(self) -> MappedImages:
        return self

    def subset(self, index) -> MappedImages:
        """The rows ``index`` (integers or a boolean mask) as another :class:`MappedImages`; reads nothing."""
        return MappedImages(self.path, self.file_shape, self._file_rows(index))

    def __getitem__(self, index) -> torch.Tensor:
        """Rows gathered into an ordinary ``uint8`` tensor (an integer gives one image)."""
        if isinstance(index, (int, np.integer)) or (torch.is_tensor(index) and index.dim() == 0):
            return self[np.array([int(index)])][0]
        return torch.from_numpy(self.gather(index))

    def gather(self, index, out: np.ndarray | None = None) -> np.ndarray:
        """Rows ``index`` read in file order into ``out`` (a new array by default)."""
        rows = self._file_rows(index)
        order = np.argsort(rows, kind="stable")
        if out is None:
            out = np.empty((len(rows), *self.file_shape[1:]), np.uint8)
        out[order] = self._array()[rows[order]]
        self._release(out.nbytes)
        return out

    def load(self, chunk: int = 4096) -> torch.Tensor:
        """Every row in memory (read in chunks, so memory peaks at the result plus one chunk)."""
        out = torch.empty(tuple(self.shape), dtype=torch.uint8)
        for start in range(0, len(self), chunk):
            out[start:start + chunk] = self[np.arange(start, min(start + chunk, len(self)))]
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

    def _array(self) -> np.ndarray:
        with self._lock:
            if self._map is None:
                with open(self.path, "rb") as f:
                    self._map = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) if self.file_shape[0] else None
            if self._map is None:
                return np.zeros(self.file_shape, np.uint8)
            return np.frombuffer(self._map, np.uint8).reshape(self.file_shape)

    def _release(self, nbytes: int) -> None:
        """Let the kernel drop the pages read so far from this process (they stay in the page cache)."""
        with self._lock:
            self._read += nbytes
            if self._read >= RELEASE_BYTES and self._map is not None and hasattr(self._map, "madvise"):
                self._map.madvise(mmap.MADV_DONTNEED)
                self._read = 0

    def __getstate__(self):
        return {"path": self.path, "file_shape": self.file_shape, "rows": self.rows}

    def __setstate__(self, state):
        self.__init__(state["path"], state["file_shape"], state["rows"])


def take(images, rows):
    """``images[rows]``, keeping a :class:`MappedImages` on disk (a tensor is indexed as usual).

    >>> take(torch.arange(5), torch.tensor([4, 0])).tolist()
    [4, 0]
    """
    return images.subset(rows) if isinstance(images, MappedImages) else images[rows]
