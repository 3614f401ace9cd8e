"""Files and processes behind the image cache: where it lives, locks, atomic writes, worker processes.

Used by :mod:`selfadapt.data.cache` (decoded sets) and :mod:`selfadapt.data.probes` (headers).
Builds hold an exclusive ``fcntl.flock`` on their folder; files are written to a temporary name
and ``os.replace``-d; workers are forked, so they inherit what they read (paths or a data set).

>>> default_cache_dir().name
'selfadapt'
>>> runs([0, 1, 2, 5, 6, 9], 2)
[(0, 2), (2, 3), (5, 7), (9, 10)]
"""
from __future__ import annotations

import errno
import fcntl
import hashlib
import multiprocessing
import os
import re
import shutil
import sys
import uuid
import zipfile
from contextlib import contextmanager
from pathlib import Path

import numpy as np
from tqdm import tqdm

from selfadapt.errors import SelfAdaptError

__all__ = ["atomic_npz", "default_cache_dir", "locked", "make_writable", "parallel", "read_npz", "row_keys", "runs",
           "source_folder", "worker_count", "worker_init", "write_error"]


def default_cache_dir() -> Path:
    """``$SELFADAPT_CACHE``, else ``$XDG_CACHE_HOME/selfadapt``, else ``~/.cache/selfadapt``.

    >>> default_cache_dir().name
    'selfadapt'
    """
    if os.environ.get("SELFADAPT_CACHE"):
        return Path(os.environ["SELFADAPT_CACHE"]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME")
    return (Path(base) if base else Path.home() / ".cache") / "selfadapt"


def source_folder(cache_dir: str | Path, source_id: str) -> Path:
    """The cache folder of one source: a readable name plus a hash of the full id."""
    name = re.sub(r"[^A-Za-z0-9._-]+", "_", Path(source_id.split(":", 1)[-1].rstrip("/")).name)[:40] or "data"
    return Path(cache_dir).expanduser() / f"{name}-{hashlib.sha1(source_id.encode()).hexdigest()[:12]}"



# --------------------------------------------------------------------------------------------
# worker processes

_WORKER: dict = {}


def _set_worker(init) -> None:
    _WORKER["init"] = init


def worker_init():
    """In a worker: the ``init`` its :func:`parallel` call gave (inherited through fork)."""
    return _WORKER["init"]


def worker_count(workers: int | None) -> int:
    return max(1, workers if workers else min(len(os.sched_getaffinity(0)), 8))


def parallel(func, tasks: list, workers: int | None, desc: str | None, *, init=None, sizes=None):
    """``func`` over ``tasks`` in worker processes (in this one for small jobs), results in order,
    with a progress bar counting ``sizes`` (default 1 per task) when ``desc`` is given."""
    sizes = sizes or [1] * len(tasks)
    # no bar without a description; otherwise tqdm shows one on a terminal only
    bar = tqdm(total=sum(sizes), desc=desc, unit="img", disable=True if desc is None else None, file=sys.stderr,
               leave=False)
    count = min(worker_count(workers), len(tasks))
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


def row_keys(keys, stamps) -> dict[tuple, int]:
    """(path, size, mtime) -> row."""
    keys = keys.tolist() if isinstance(keys, np.ndarray) else keys
    return {(k, s, t): i for i, (k, (s, t)) in enumerate(zip(keys, np.asarray(stamps).tolist()))}


def runs(rows: list[int], most: int) -> list[tuple[int, int]]:
    """Ascending ``rows`` as contiguous ``(start, stop)`` runs of at most ``most`` rows."""
    runs = []
    for i in rows:
        if runs and runs[-1][1] == i and i - runs[-1][0] < most:
            runs[-1][1] = i + 1
        else:
            runs.append([i, i + 1])
    return [(a, b) for a, b in runs]


@contextmanager
def locked(folder: Path):
    """An exclusive lock on ``folder`` (waits, saying so, while another process holds it); yields
    whether it had to wait."""
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


def make_writable(folder: Path) -> None:
    """Create ``folder`` and its lock file, or raise one :class:`SelfAdaptError` saying it cannot."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with open(folder / ".lock", "a"):
            pass
    except OSError as e:
        top = next((p for p in [folder, *folder.parents] if p.exists()), folder)
        raise SelfAdaptError(f"the image cache folder {folder} cannot be written ({e.strerror or e} in {top}); "
                             "point --cache-dir at a writable folder") from None


def write_error(folder: Path, error: OSError, needed: int) -> SelfAdaptError:
    """The one-line error for a failed write of ``needed`` bytes (a full disk says how much is free)."""
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


def atomic_npz(path: Path, **arrays) -> None:
    """``np.savez`` to a temporary file, flushed to disk, then renamed over ``path``."""
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        with open(tmp, "wb") as f:
            np.savez(f, **arrays)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def read_npz(path: Path) -> dict | None:
    """Every array of an ``.npz`` file, or ``None`` when it is absent or damaged."""
    try:
        with np.load(path, allow_pickle=False) as z:
            return {k: z[k] for k in z.files}
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile):
        return None  # absent, or half-written by a process killed before os.replace: rebuilt
