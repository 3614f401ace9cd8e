"""One process per output directory: an OS lock held for the life of the process.

:class:`DirectoryLock` takes ``flock`` on the directory itself (nothing is created to take it), so
the lock dies with the process, however it ends. Once it writes to the
directory, the holder says who it is in ``.selfadapt-lock`` (PID, host, command, since when), so
that a second process can name it; the file goes when the lock is released.

>>> import tempfile
>>> folder = tempfile.mkdtemp()
>>> first = DirectoryLock(folder).acquire()
>>> first.announce()
>>> DirectoryLock(folder).acquire()
Traceback (most recent call last):
...
selfadapt.errors.SelfAdaptError: ...is in use by another selfadapt process (PID ...
>>> first.release()
"""
from __future__ import annotations

import fcntl
import json
import os
import platform
import time
from pathlib import Path

from selfadapt.config.provenance import command_line
from selfadapt.errors import SelfAdaptError

HOLDER_FILE = ".selfadapt-lock"


class DirectoryLock:
    """An exclusive, non-blocking lock on directory ``path`` (which must exist)."""

    def __init__(self, path: str | Path, what: str = "run directory"):
        self.path, self.what = Path(path), what
        self.fd: int | None = None

    @property
    def held(self) -> bool:
        return self.fd is not None

    def acquire(self) -> DirectoryLock:
        """Take the lock; another live holder is one :class:`SelfAdaptError` naming it."""
        fd = os.open(self.path, os.O_RDONLY | os.O_DIRECTORY)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise SelfAdaptError(f"{self.what} {self.path} is in use by another selfadapt process "
                                 f"({describe_holder(self.path)}); wait for it to end or choose another --out") from None
        self.fd = fd
        return self

    def announce(self) -> None:
        """Say who holds the lock (once the holder writes to the directory at all)."""
        holder = {"pid": os.getpid(), "host": platform.node(), "since": time.strftime("%Y-%m-%d %H:%M:%S"),
                  "command": command_line()}
        tmp = self.path / f"{HOLDER_FILE}.{os.getpid()}"
        tmp.write_text(json.dumps(holder))
        os.replace(tmp, self.path / HOLDER_FILE)

    def release(self) -> None:
        if self.fd is not None:
            (self.path / HOLDER_FILE).unlink(missing_ok=True)
            os.close(self.fd)
            self.fd = None


def describe_holder(path: Path) -> str:
    """``PID 123 on host, since 2026-12-06 21:00:00: selfadapt train ...`` from the holder file."""
    try:
        holder = json.loads((path / HOLDER_FILE).read_text())
        return f"PID {holder['pid']} on {holder['host']}, since {holder['since']}: {holder['command']}"
    except (OSError, ValueError, KeyError):
        return "its holder did not say who it is"
