"""The decoded image set, written once to a cache on disk and read by every later run.

``decoded_images(source, settings, cache_dir=...)`` returns the images of ``source`` decoded at
``settings`` (:mod:`selfadapt.data.decode`), building what the cache lacks with several worker
processes. One folder per source (``<cache_dir>/<name>-<hash of the source id>/``) holds

- ``probes.npz``: every file's header (size, mode) keyed by path, byte size and modification time;
- ``<settings.key>/index.npz``: the committed decoded set: paths, (size, mtime) stamps, labels,
  per-row errors, channel sums, and the name of its ``images-<id>.u8`` array
  (``uint8 N x C x S x S``, row-major, no header);
- while a build runs: ``build-<id>.u8``, ``.sums``, ``.plan.npz`` and ``.done`` (one JSON line per
  finished chunk of rows).

A later run reuses the committed set when its paths and stamps match; otherwise the rows whose
(path, stamp) are in the committed set or in an interrupted build are copied and only the others are
decoded. An interrupted build with the same plan continues in place. Builds hold an exclusive
``fcntl.flock``; the index is replaced atomically (``os.replace``) and names its array, so a reader
never sees half a set.

>>> from selfadapt.data.decode import DecodeSettings
>>> import tempfile, io
>>> from PIL import Image
>>> b = io.BytesIO(); Image.new("RGB", (40, 30), (0, 128, 255)).save(b, "PNG")
>>> source = Source("example", ["a.png"], np.zeros((1, 2), np.int64), lambda a, z: [b.getvalue()])
>>> out = decoded_images(source, DecodeSettings(16, 3), cache_dir=tempfile.mkdtemp(), progress=False)
>>> out.images[0].shape, out.decoded
(torch.Size([3, 16, 16]), 1)
"""
from __future__ import annotations

import json
import os
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

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
    worker_count,
    worker_init,
    write_error,
)
from selfadapt.data.decode import DecodeError, DecodeSettings, decode
from selfadapt.data.diskimages import DiskImages

__all__ = ["Decoded", "Source", "decoded_images"]


@dataclass
class Source:
    """The images of one collection: ``id`` names its cache folder (e.g. ``imagefolder:/abs/path``);
    ``keys`` name the images (paths relative to the data root), ``stamps`` are int64 ``(N, 2)``
    (byte size, mtime in ns: what invalidates a decoded row), and ``payload(start, stop)`` gives
    what :func:`~selfadapt.data.decode.decode` reads for rows ``start..stop-1`` (paths or bytes)."""

    id: str
    keys: list[str]
    stamps: np.ndarray
    payload: Callable[[int, int], list]


@dataclass
class Decoded:
    """A decoded set: ``images`` (all rows, on disk), ``errors`` (row -> why it could not be
    decoded; those rows are zeros), rows that were ``animated``, per-row channel ``sums``
    (int64 ``(N, C, 2)``: sum and sum of squares of the pixel values), where it lives, and how many
    rows this call decoded (0 when the cache was complete)."""

    images: DiskImages
    errors: dict[int, str]
    animated: np.ndarray
    sums: np.ndarray
    folder: Path
    decoded: int = 0
    copied: int = 0
    waited: bool = False
    notes: list[str] = field(default_factory=list)


def decoded_images(source: Source, settings: DecodeSettings, *, cache_dir: str | Path, labels=None,
                   workers: int | None = None, progress: bool = True) -> Decoded:
    """The decoded set of ``source`` at ``settings``: from the cache when complete, else built
    (only what is missing is decoded). ``labels`` are recorded in the index."""
    folder = source_folder(cache_dir, source.id) / settings.key
    committed = _read_index(folder)
    if committed is not None and _same_plan(committed, source):
        return _as_decoded(folder, committed)
    make_writable(folder)
    with locked(folder) as waited:
        committed = _read_index(folder)  # another process may have finished it while we waited
        if committed is not None and _same_plan(committed, source):
            return _as_decoded(folder, committed, waited=waited)
        build = _Build(folder, source, settings, committed, labels)
        build.run(workers, progress)
        return _as_decoded(folder, _read_index(folder), decoded=build.decoded, copied=build.copied, waited=waited)


# --------------------------------------------------------------------------------------------
# the build


class _Build:
    """One build of a decoded set into ``folder`` (the caller holds the lock)."""

    def __init__(self, folder: Path, source: Source, settings: DecodeSettings, committed, labels):
        self.folder, self.source, self.settings, self.committed = folder, source, settings, committed
        self.labels = np.full(len(source.keys), -1, np.int64) if labels is None else np.asarray(labels, np.int64)
        self.row_bytes = settings.channels * settings.size ** 2
        self.decoded = self.copied = 0

    def run(self, workers: int | None, progress: bool) -> None:
        partial = _read_partial(self.folder)
        n = len(self.source.keys)
        if partial is not None and _same_plan(partial, self.source):
            self.id, done = partial["id"], partial["done"]
        else:
            self.id, done = uuid.uuid4().hex[:12], {}
            self._allocate(n)
            self._copy_reusable([x for x in (self.committed, partial) if x is not None], done)
            if partial is not None:
                _remove_build(self.folder, partial["id"])
        todo = [i for i in range(n) if i not in done]
        try:
            self._decode(todo, workers, progress, done)
        except OSError as e:
            _remove_build(self.folder, self.id)
            raise write_error(self.folder, e, n * self.row_bytes) from None
        self._commit(done)

    def _path(self, suffix: str) -> Path:
        return self.folder / f"build-{self.id}{suffix}"

    def _allocate(self, n: int) -> None:
        try:
            for suffix, size in ((".u8", n * self.row_bytes), (".sums", n * self.settings.channels * 16)):
                with open(self._path(suffix), "wb") as f:
                    if size:
                        os.posix_fallocate(f.fileno(), 0, size)
            atomic_npz(self._path(".plan.npz"), keys=np.array(self.source.keys, dtype=str),
                        stamps=self.source.stamps)
            self._path(".done").touch()
        except OSError as e:
            _remove_build(self.folder, self.id)
            raise write_error(self.folder, e, n * self.row_bytes) from None

    def _copy_reusable(self, previous: list[dict], done: dict) -> None:
        """Copy rows decoded before (same path and stamp) from the committed set or an interrupted build."""
        wanted = row_keys(self.source.keys, self.source.stamps)
        c = self.settings.channels
        sums = np.memmap(self._path(".sums"), np.int64, "r+", shape=(len(self.source.keys), c, 2)) \
            if self.source.keys else None
        with open(self._path(".u8"), "r+b") as out, open(self._path(".done"), "a") as log:
            for old in previous:
                finished = _finished_rows(old)
                pairs = sorted((wanted[key], j) for j, key in enumerate(row_keys(old["plan"]["keys"],
                                                                                 old["plan"]["stamps"]))
                               if key in wanted and wanted[key] not in done and j in finished)
                old_sums = old["sums"] if old["sums"] is not None else \
                    np.fromfile(self.folder / old["sums_file"], np.int64).reshape(-1, c, 2)
                with open(self.folder / old["array"], "rb") as src:
                    for (i, j), length in _paired_runs(pairs):
                        data = os.pread(src.fileno(), length * self.row_bytes, j * self.row_bytes)
                        os.pwrite(out.fileno(), data, i * self.row_bytes)
                        sums[i:i + length] = old_sums[j:j + length]
                        info = {str(i + k): finished[j + k] for k in range(length) if finished[j + k]}
                        log.write(json.dumps({"start": i, "stop": i + length, "info": info}) + "\n")
                        for k in range(length):
                            done[i + k] = finished[j + k]
                        self.copied += length
        if sums is not None:
            sums.flush()

    def _decode(self, todo: list[int], workers: int | None, progress: bool, done: dict) -> None:
        chunks = runs(todo, max(1, min(64, len(todo) // (8 * worker_count(workers)) or 1)))
        init = (str(self._path(".u8")), str(self._path(".sums")), self.settings, self.source.payload)
        desc = f"decoding {len(todo)} images to {self.settings.size} px" if progress else None
        with open(self._path(".done"), "a") as log:
            for start, stop, info in parallel(_decode_chunk, chunks, workers, desc, init=init,
                                               sizes=[b - a for a, b in chunks]):
                log.write(json.dumps({"start": start, "stop": stop, "info": info}) + "\n")
                log.flush()
                for i in range(start, stop):
                    done[i] = info.get(str(i), "")
                self.decoded += stop - start

    def _commit(self, done: dict) -> None:
        n = len(self.source.keys)
        array = f"images-{self.id}.u8"
        os.replace(self._path(".u8"), self.folder / array)
        sums = np.fromfile(self._path(".sums"), dtype=np.int64).reshape(n, self.settings.channels, 2)
        info = [done[i] for i in range(n)]
        meta = {"array": array, "shape": [n, self.settings.channels, self.settings.size, self.settings.size],
                "source": self.source.id, "settings": self.settings.key}
        atomic_npz(self.folder / "index.npz", keys=np.array(self.source.keys, dtype=str), stamps=self.source.stamps,
                    labels=self.labels, info=np.array(info, dtype=str), sums=sums, meta=np.array(json.dumps(meta)))
        old = None if self.committed is None else self.committed["array"]
        _remove_build(self.folder, self.id)
        if old and old != array:
            (self.folder / old).unlink(missing_ok=True)  # a process still mapping it keeps its inode


def _decode_chunk(rows: tuple[int, int]) -> tuple[int, int, dict]:
    """Worker: decode rows ``start..stop-1`` and write them (and their channel sums) into the build files."""
    start, stop = rows
    array_path, sums_path, settings, fetch = worker_init()
    payload = fetch(start, stop)
    c, s = settings.channels, settings.size
    pixels = np.zeros((len(payload), c, s, s), np.uint8)
    info = {}
    for k, item in enumerate(payload):
        try:
            pixels[k], notes = decode(item, settings)
            if notes:
                info[str(start + k)] = "animated"
        except DecodeError as e:
            info[str(start + k)] = f"error:{e}"
    flat = pixels.reshape(len(payload), c, -1).astype(np.int64)
    sums = np.stack([flat.sum(-1), (flat * flat).sum(-1)], axis=-1)
    _pwrite_all(array_path, pixels.tobytes(), start * c * s * s)
    _pwrite_all(sums_path, sums.tobytes(), start * c * 16)
    return start, start + len(payload), info


def _pwrite_all(path: str, data: bytes, offset: int) -> None:
    fd = os.open(path, os.O_WRONLY)
    try:
        view = memoryview(data)
        while view:
            written = os.pwrite(fd, view, offset)
            view, offset = view[written:], offset + written
    finally:
        os.close(fd)


def _paired_runs(pairs: list[tuple[int, int]]) -> list[tuple[tuple[int, int], int]]:
    """Sorted (new row, old row) pairs as runs ``((i, j), length)`` where both rows advance together."""
    runs = []
    for i, j in pairs:
        if runs and runs[-1][0][0] + runs[-1][1] == i and runs[-1][0][1] + runs[-1][1] == j:
            runs[-1][1] += 1
        else:
            runs.append([(i, j), 1])
    return [(start, length) for start, length in runs]


def _read_index(folder: Path) -> dict | None:
    index = read_npz(folder / "index.npz")
    if index is None:
        return None
    meta = json.loads(str(index["meta"]))
    n, c, s, _ = meta["shape"]
    array = folder / meta["array"]
    if not array.is_file() or array.stat().st_size != n * c * s * s:
        return None
    return {**meta, "plan": index, "info": index["info"], "sums": index["sums"], "sums_file": None}


def _read_partial(folder: Path) -> dict | None:
    """The interrupted build in ``folder``, if any: its plan and the rows it finished."""
    plans = sorted(folder.glob("build-*.plan.npz"), key=lambda p: p.stat().st_mtime)
    for stale in plans[:-1]:
        _remove_build(folder, stale.name[len("build-"):-len(".plan.npz")])
    if not plans:
        return None
    build_id = plans[-1].name[len("build-"):-len(".plan.npz")]
    plan = read_npz(plans[-1])
    if plan is None or not (folder / f"build-{build_id}.u8").is_file():
        _remove_build(folder, build_id)
        return None
    done = {}
    for line in (folder / f"build-{build_id}.done").read_text().splitlines() if \
            (folder / f"build-{build_id}.done").is_file() else []:
        try:
            entry = json.loads(line)
        except json.JSONDecodeError:
            continue  # the last line of a killed build
        for i in range(entry["start"], entry["stop"]):
            done[i] = entry["info"].get(str(i), "")
    return {"id": build_id, "plan": plan, "done": done, "info": None, "array": f"build-{build_id}.u8",
            "sums": None, "sums_file": f"build-{build_id}.sums"}


def _remove_build(folder: Path, build_id: str) -> None:
    for suffix in (".u8", ".sums", ".plan.npz", ".done"):
        (folder / f"build-{build_id}{suffix}").unlink(missing_ok=True)


def _same_plan(old: dict, source: Source) -> bool:
    plan = old["plan"]
    return (len(plan["keys"]) == len(source.keys) and np.array_equal(plan["stamps"], source.stamps)
            and plan["keys"].tolist() == list(source.keys))


def _finished_rows(old: dict) -> dict[int, str]:
    """Row -> its note ("" fine, "animated", "error:why") of a committed set or an interrupted build."""
    return old["done"] if old["info"] is None else dict(enumerate(old["info"].tolist()))


def _as_decoded(folder: Path, index: dict, **counts) -> Decoded:
    info = index["info"].astype(str)
    errors = {int(i): str(info[i])[len("error:"):] for i in np.flatnonzero(np.char.startswith(info, "error:"))}
    animated = info == "animated"
    images = DiskImages(folder / index["array"], tuple(index["shape"]))
    return Decoded(images, errors, animated, index["sums"], folder, **counts)
