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

import errno
import fcntl
import hashlib
import json
import multiprocessing
import os
import re
import shutil
import sys
import uuid
import zipfile
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
from tqdm import tqdm

from selfadapt.data.decode import DecodeError, DecodeSettings, Probe, decode, probe
from selfadapt.data.diskimages import DiskImages
from selfadapt.errors import SelfAdaptError

__all__ = ["Decoded", "Source", "decoded_images", "default_cache_dir", "probed_images"]

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


def default_cache_dir() -> Path:
    """``$XDG_CACHE_HOME/selfadapt`` or ``~/.cache/selfadapt``.

    >>> default_cache_dir().name
    'selfadapt'
    """
    base = os.environ.get("XDG_CACHE_HOME")
    return (Path(base) if base else Path.home() / ".cache") / "selfadapt"


def source_folder(cache_dir: str | Path, source_id: str) -> Path:
    """The cache folder of one source: a readable name plus a hash of the full id."""
    name = re.sub(r"[^A-Za-z0-9._-]+", "_", Path(source_id.split(":", 1)[-1].rstrip("/")).name)[:40] or "data"
    return Path(cache_dir).expanduser() / f"{name}-{hashlib.sha1(source_id.encode()).hexdigest()[:12]}"


def decoded_images(source: Source, settings: DecodeSettings, *, cache_dir: str | Path, labels=None,
                   workers: int | None = None, progress: bool = True) -> Decoded:
    """The decoded set of ``source`` at ``settings``: from the cache when complete, else built
    (only what is missing is decoded). ``labels`` are recorded in the index."""
    folder = source_folder(cache_dir, source.id) / settings.key
    committed = _read_index(folder)
    if committed is not None and _same_plan(committed, source):
        return _as_decoded(folder, committed)
    _make_writable(folder)
    with _locked(folder) as waited:
        committed = _read_index(folder)  # another process may have finished it while we waited
        if committed is not None and _same_plan(committed, source):
            return _as_decoded(folder, committed, waited=waited)
        build = _Build(folder, source, settings, committed, labels)
        build.run(workers, progress)
        return _as_decoded(folder, _read_index(folder), decoded=build.decoded, copied=build.copied, waited=waited)


def probed_images(source: Source, *, cache_dir: str | Path, workers: int | None = None,
                  progress: bool = True) -> list[Probe | str]:
    """Every image's header (:class:`~selfadapt.data.decode.Probe`) or why it cannot be read (a
    string), reusing the headers read by earlier runs."""
    folder = source_folder(cache_dir, source.id)
    known = _read_npz(folder / "probes.npz")
    old = {} if known is None else _row_keys(known["keys"], known["stamps"])
    found = [old.get(key) for key in _row_keys(source.keys, source.stamps)]
    missing = [i for i, f in enumerate(found) if f is None]
    fresh = {}
    if missing:
        chunks = _runs(missing, 256)
        desc = "reading image headers" if progress else None
        results = _parallel(_probe_chunk, chunks, workers, desc, init=source.payload, sizes=[b - a for a, b in chunks])
        fresh = dict(zip(missing, (p for chunk in results for p in chunk)))
    out = [fresh[i] if f is None else _probe_row(known, f) for i, f in enumerate(found)]
    if missing:
        try:
            _make_writable(folder)
            with _locked(folder):
                _write_probes(folder / "probes.npz", source, out)
        except SelfAdaptError:
            pass  # a read-only cache still works; the headers are read again next time
    return out


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
            raise _write_error(self.folder, e, n * self.row_bytes) from None
        self._commit(done)

    def _path(self, suffix: str) -> Path:
        return self.folder / f"build-{self.id}{suffix}"

    def _allocate(self, n: int) -> None:
        try:
            for suffix, size in ((".u8", n * self.row_bytes), (".sums", n * self.settings.channels * 16)):
                with open(self._path(suffix), "wb") as f:
                    if size:
                        os.posix_fallocate(f.fileno(), 0, size)
            _atomic_npz(self._path(".plan.npz"), keys=np.array(self.source.keys, dtype=str),
                        stamps=self.source.stamps)
            self._path(".done").touch()
        except OSError as e:
            _remove_build(self.folder, self.id)
            raise _write_error(self.folder, e, n * self.row_bytes) from None

    def _copy_reusable(self, previous: list[dict], done: dict) -> None:
        """Copy rows decoded before (same path and stamp) from the committed set or an interrupted build."""
        wanted = _row_keys(self.source.keys, self.source.stamps)
        c = self.settings.channels
        sums = np.memmap(self._path(".sums"), np.int64, "r+", shape=(len(self.source.keys), c, 2)) \
            if self.source.keys else None
        with open(self._path(".u8"), "r+b") as out, open(self._path(".done"), "a") as log:
            for old in previous:
                pairs = sorted((wanted[key], j) for j, key in enumerate(_row_keys(old["plan"]["keys"],
                                                                                 old["plan"]["stamps"]))
                               if key in wanted and wanted[key] not in done and j in old["done"])
                old_sums = old["sums"] if old["sums"] is not None else \
                    np.fromfile(self.folder / old["sums_file"], np.int64).reshape(-1, c, 2)
                with open(self.folder / old["array"], "rb") as src:
                    for (i, j), length in _paired_runs(pairs):
                        data = os.pread(src.fileno(), length * self.row_bytes, j * self.row_bytes)
                        os.pwrite(out.fileno(), data, i * self.row_bytes)
                        sums[i:i + length] = old_sums[j:j + length]
                        info = {str(i + k): old["done"][j + k] for k in range(length) if old["done"][j + k]}
                        log.write(json.dumps({"start": i, "stop": i + length, "info": info}) + "\n")
                        for k in range(length):
                            done[i + k] = old["done"][j + k]
                        self.copied += length
        if sums is not None:
            sums.flush()

    def _decode(self, todo: list[int], workers: int | None, progress: bool, done: dict) -> None:
        chunks = _runs(todo, max(1, min(64, len(todo) // (8 * _worker_count(workers)) or 1)))
        init = (str(self._path(".u8")), str(self._path(".sums")), self.settings, self.source.payload)
        desc = f"decoding {len(todo)} images to {self.settings.size} px" if progress else None
        with open(self._path(".done"), "a") as log:
            for start, stop, info in _parallel(_decode_chunk, chunks, workers, desc, init=init,
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
        _atomic_npz(self.folder / "index.npz", keys=np.array(self.source.keys, dtype=str), stamps=self.source.stamps,
                    labels=self.labels, info=np.array(info, dtype=str), sums=sums, meta=np.array(json.dumps(meta)))
        old = None if self.committed is None else self.committed["array"]
        _remove_build(self.folder, self.id)
        if old and old != array:
            (self.folder / old).unlink(missing_ok=True)  # a process still mapping it keeps its inode


def _decode_chunk(rows: tuple[int, int]) -> tuple[int, int, dict]:
    """Worker: decode rows ``start..stop-1`` and write them (and their channel sums) into the build files."""
    start, stop = rows
    array_path, sums_path, settings, fetch = _WORKER["init"]
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


def _probe_chunk(rows: tuple[int, int]) -> list[Probe | str]:
    """Worker: the headers of rows ``start..stop-1`` (or why each cannot be read)."""
    out = []
    for item in _WORKER["init"](*rows):
        try:
            out.append(probe(item))
        except DecodeError as e:
            out.append(str(e))
    return out


# --------------------------------------------------------------------------------------------
# worker processes

_WORKER: dict = {}


def _set_worker(init) -> None:
    _WORKER["init"] = init


def _worker_count(workers: int | None) -> int:
    return max(1, workers if workers else min(len(os.sched_getaffinity(0)), 8))


def _parallel(func, tasks: list, workers: int | None, desc: str | None, *, init=None, sizes=None):
    """``func`` over ``tasks`` in worker processes (in this one for small jobs), results in order,
    with a progress bar counting ``sizes`` (default 1 per task) when ``desc`` is given."""
    sizes = sizes or [1] * len(tasks)
    # no bar without a description; otherwise tqdm shows one on a terminal only
    bar = tqdm(total=sum(sizes), desc=desc, unit="img", disable=True if desc is None else None, file=sys.stderr,
               leave=False)
    count = min(_worker_count(workers), len(tasks))
    methods = multiprocessing.get_all_start_methods()
    try:
        if count <= 1 or sum(sizes) < 64 or "fork" not in methods:  # workers inherit `init` by fork
            _set_worker(init)
            for task, size in zip(tasks, sizes):
                yield func(task)
                bar.update(size)
            return
        with multiprocessing.get_context("fork").Pool(count, initializer=_set_worker, initargs=(init,)) as pool:
            for result, size in zip(pool.imap(func, tasks), sizes):
                yield result
                bar.update(size)
    finally:
        bar.close()


def _row_keys(keys, stamps) -> dict[tuple, int]:
    """(path, size, mtime) -> row."""
    keys = keys.tolist() if isinstance(keys, np.ndarray) else keys
    return {(k, s, t): i for i, (k, (s, t)) in enumerate(zip(keys, np.asarray(stamps).tolist()))}


def _paired_runs(pairs: list[tuple[int, int]]) -> list[tuple[tuple[int, int], int]]:
    """Sorted (new row, old row) pairs as runs ``((i, j), length)`` where both rows advance together."""
    runs = []
    for i, j in pairs:
        if runs and runs[-1][0][0] + runs[-1][1] == i and runs[-1][0][1] + runs[-1][1] == j:
            runs[-1][1] += 1
        else:
            runs.append([(i, j), 1])
    return [(start, length) for start, length in runs]


def _runs(rows: list[int], most: int) -> list[tuple[int, int]]:
    """Ascending ``rows`` as contiguous ``(start, stop)`` runs of at most ``most`` rows."""
    runs = []
    for i in rows:
        if runs and runs[-1][1] == i and i - runs[-1][0] < most:
            runs[-1][1] = i + 1
        else:
            runs.append([i, i + 1])
    return [(a, b) for a, b in runs]


# --------------------------------------------------------------------------------------------
# files: locks, atomic writes, index and partial builds


@contextmanager
def _locked(folder: Path):
    """An exclusive lock on ``folder`` (waits, saying so, while another process holds it)."""
    with open(folder / ".lock", "a") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
            waited = False
        except BlockingIOError:
            print(f"waiting for another process writing the image cache {folder}", file=sys.stderr)
            fcntl.flock(f, fcntl.LOCK_EX)
            waited = True
        try:
            yield waited
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def _make_writable(folder: Path) -> None:
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with open(folder / ".lock", "a"):
            pass
    except OSError as e:
        top = next((p for p in [folder, *folder.parents] if p.exists()), folder)
        raise SelfAdaptError(f"the image cache folder {folder} cannot be written ({e.strerror or e} in {top}); "
                             "point --cache-dir at a writable folder") from None


def _write_error(folder: Path, error: OSError, needed: int) -> SelfAdaptError:
    free = shutil.disk_usage(folder).free if folder.exists() else 0
    if error.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG):
        why = "the disk is full" if error.errno != errno.EFBIG else "the file size limit was reached"
        return SelfAdaptError(f"cannot write the image cache in {folder}: {why} ({error.strerror}; the decoded "
                              f"images need {_size(needed)}, {_size(free)} free); nothing was kept; free some space "
                              "or point --cache-dir elsewhere")
    return SelfAdaptError(f"cannot write the image cache in {folder}: {error.strerror or error}")


def _size(n: int) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if n < 1024 or unit == "TB":
            return f"{n:.1f} {unit}" if unit != "B" else f"{n} B"
        n /= 1024


def _atomic_npz(path: Path, **arrays) -> None:
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        with open(tmp, "wb") as f:
            np.savez(f, **arrays)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def _read_npz(path: Path) -> dict | None:
    try:
        with np.load(path, allow_pickle=False) as z:
            return {k: z[k] for k in z.files}
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile):
        return None  # absent, or half-written by a process killed before os.replace: rebuilt


def _read_index(folder: Path) -> dict | None:
    index = _read_npz(folder / "index.npz")
    if index is None:
        return None
    meta = json.loads(str(index["meta"]))
    n, c, s, _ = meta["shape"]
    array = folder / meta["array"]
    if not array.is_file() or array.stat().st_size != n * c * s * s:
        return None
    info = index["info"].tolist()
    return {**meta, "plan": index, "done": dict(enumerate(info)), "sums": index["sums"], "sums_file": None,
            "info": info}


def _read_partial(folder: Path) -> dict | None:
    """The interrupted build in ``folder``, if any: its plan and the rows it finished."""
    plans = sorted(folder.glob("build-*.plan.npz"), key=lambda p: p.stat().st_mtime)
    for stale in plans[:-1]:
        _remove_build(folder, stale.name[len("build-"):-len(".plan.npz")])
    if not plans:
        return None
    build_id = plans[-1].name[len("build-"):-len(".plan.npz")]
    plan = _read_npz(plans[-1])
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
    return {"id": build_id, "plan": plan, "done": done, "array": f"build-{build_id}.u8",
            "sums": None, "sums_file": f"build-{build_id}.sums"}


def _remove_build(folder: Path, build_id: str) -> None:
    for suffix in (".u8", ".sums", ".plan.npz", ".done"):
        (folder / f"build-{build_id}{suffix}").unlink(missing_ok=True)


def _same_plan(old: dict, source: Source) -> bool:
    plan = old["plan"]
    return (len(plan["keys"]) == len(source.keys) and np.array_equal(plan["stamps"], source.stamps)
            and plan["keys"].tolist() == list(source.keys))


def _as_decoded(folder: Path, index: dict, **counts) -> Decoded:
    info = index["info"]
    errors = {i: s[len("error:"):] for i, s in enumerate(info) if s.startswith("error:")}
    animated = np.array([s == "animated" for s in info], dtype=bool)
    images = DiskImages(folder / index["array"], tuple(index["shape"]))
    return Decoded(images, errors, animated, index["sums"], folder, **counts)


def _probe_row(known: dict, row: int) -> Probe | str:
    if known["error"][row]:
        return str(known["error"][row])
    return Probe(int(known["width"][row]), int(known["height"][row]), str(known["mode"][row]),
                 bool(known["animated"][row]))


def _write_probes(path: Path, source: Source, probes: list[Probe | str]) -> None:
    ok = [p if isinstance(p, Probe) else Probe(0, 0, "", False) for p in probes]
    _atomic_npz(path, keys=np.array(source.keys, dtype=str), stamps=source.stamps,
                width=np.array([p.width for p in ok], np.int64), height=np.array([p.height for p in ok], np.int64),
                mode=np.array([p.mode for p in ok], dtype=str), animated=np.array([p.animated for p in ok]),
                error=np.array([p if isinstance(p, str) else "" for p in probes], dtype=str))
