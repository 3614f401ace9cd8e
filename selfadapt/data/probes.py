"""Every image's header (size, mode, frames) read once by worker processes and kept in the cache.

The headers decide the image size (the median shorter side) and whether the set is grey or RGB, and
catch files that cannot be opened before anything is decoded. ``probes.npz`` in the source's cache
folder keeps them keyed by path, byte size and modification time: a later run reads only the
headers of new or changed files.

>>> import io, tempfile
>>> from PIL import Image
>>> b = io.BytesIO(); Image.new("L", (40, 30)).save(b, "PNG")
>>> from selfadapt.data.cache import Source
>>> source = Source("example", ["a.png", "b.png"], np.zeros((2, 2), np.int64), lambda a, z: [b.getvalue(), b""][a:z])
>>> probes = probed_images(source, cache_dir=tempfile.mkdtemp(), progress=False)
>>> probes.short_side.tolist(), probes.grey.tolist(), probes.errors()
([30, 0], [True, False], {1: 'empty file (0 bytes)'})
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from selfadapt.data.cache_io import (
    atomic_npz,
    locked,
    make_writable,
    parallel,
    read_npz,
    row_keys,
    runs,
    source_folder,
    worker_init,
)
from selfadapt.data.decode import GREY_MODES, DecodeError, probe
from selfadapt.errors import SelfAdaptError

__all__ = ["Probes", "probed_images"]

_FIELDS = ("width", "height", "mode", "animated", "error")


@dataclass
class Probes:
    """Per image: ``width``, ``height`` (upright), ``mode``, ``animated``, and ``error`` ("" when readable)."""

    width: np.ndarray
    height: np.ndarray
    mode: np.ndarray
    animated: np.ndarray
    error: np.ndarray

    @property
    def short_side(self) -> np.ndarray:
        return np.minimum(self.width, self.height)

    @property
    def grey(self) -> np.ndarray:
        return np.isin(self.mode, GREY_MODES)

    def errors(self) -> dict[int, str]:
        """Row -> why its header cannot be read."""
        return {int(i): str(self.error[i]) for i in np.flatnonzero(self.error != "")}


def probed_images(source, *, cache_dir: str | Path, workers: int | None = None, progress: bool = True) -> Probes:
    """The headers of every image of ``source`` (a :class:`~selfadapt.data.cache.Source`), reading
    only those the cache does not hold for the same path, size and modification time."""
    folder = source_folder(cache_dir, source.id)
    known = read_npz(folder / "probes.npz")
    if known is not None and known["keys"].tolist() == list(source.keys) and \
            np.array_equal(known["stamps"], source.stamps):
        return Probes(*(known[f] for f in _FIELDS))
    old = {} if known is None else row_keys(known["keys"], known["stamps"])
    found = np.array([old.get(key, -1) for key in row_keys(source.keys, source.stamps)], dtype=np.int64)
    n = len(source.keys)
    out = {"width": np.zeros(n, np.int64), "height": np.zeros(n, np.int64), "mode": np.full(n, "", dtype="<U8"),
           "animated": np.zeros(n, bool), "error": np.full(n, "", dtype=object)}
    if known is not None and (found >= 0).any():
        for f in _FIELDS:
            out[f][found >= 0] = known[f][found[found >= 0]]
    missing = np.flatnonzero(found < 0).tolist()
    chunks = runs(missing, 256)
    results = parallel(_probe_chunk, chunks, workers, "reading image headers" if progress else None,
                       init=source.payload, sizes=[b - a for a, b in chunks])
    for (start, stop), headers in zip(chunks, results):
        for row, header in zip(range(start, stop), headers):
            if isinstance(header, str):
                out["error"][row] = header
            else:
                out["width"][row], out["height"][row] = header.width, header.height
                out["mode"][row], out["animated"][row] = header.mode, header.animated
    probes = Probes(*(out[f] if f != "error" else out[f].astype(str) for f in _FIELDS))
    _remember(folder, source, probes)
    return probes


def _probe_chunk(rows: tuple[int, int]) -> list:
    """Worker: the headers of rows ``start..stop-1``, or why each cannot be read."""
    out = []
    for item in worker_init()(*rows):
        try:
            out.append(probe(item))
        except DecodeError as e:
            out.append(str(e))
    return out


def _remember(folder: Path, source, probes: Probes) -> None:
    """Keep the headers for the next run (a read-only cache just reads them again)."""
    try:
        make_writable(folder)
        with locked(folder):
            atomic_npz(folder / "probes.npz", keys=np.array(source.keys, dtype=str), stamps=source.stamps,
                       **{f: getattr(probes, f) for f in _FIELDS})
    except (SelfAdaptError, OSError):
        pass
