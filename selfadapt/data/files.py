"""Finding a data set's files: the data folder, the first folder holding a set of files, and a
checked download (CIFAR's official archives) that leaves either the whole file or nothing."""
from __future__ import annotations

import hashlib
import logging
import os
import tempfile
import urllib.request
from pathlib import Path

from selfadapt.errors import SelfAdaptError

log = logging.getLogger(__name__)


def default_data_dir() -> Path:
    """``$SELFADAPT_DATA`` if set, else ``./data``.

    Example
    -------
    >>> isinstance(default_data_dir(), Path)
    True
    """
    env = os.environ.get("SELFADAPT_DATA")
    return Path(env).expanduser() if env else Path("data")


def first_dir_with(candidates: list[Path], needed: list[str], what: str, where_hint: str) -> Path:
    """The first candidate folder holding every file in ``needed`` (each may also end in .gz)."""
    def has(folder, f):
        return (folder / f).is_file() or (folder / f"{f}.gz").is_file()

    for folder in candidates:
        if all(has(folder, f) for f in needed):
            return folder
    for folder in candidates:
        missing = [f for f in needed if not has(folder, f)]
        if len(missing) < len(needed):
            raise SelfAdaptError(f"{what}: {folder} lacks {', '.join(missing)}; put them there")
    raise SelfAdaptError(f"{what} not found: put {', '.join(needed)} in {where_hint} "
                         f"(looked in {', '.join(str(c) for c in candidates)})")


class DownloadError(Exception):
    pass


def download(url: str, dest: Path, md5: str) -> None:
    """Fetch ``url`` to a temporary file next to ``dest``, check its md5, then move it into place."""
    created = not dest.parent.exists()
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".part", dir=dest.parent)
    except OSError as e:
        raise DownloadError(f"cannot write to {dest.parent}: {e}") from None
    log.info("downloading %s to %s", url, dest)
    try:
        digest = hashlib.md5()
        with os.fdopen(fd, "wb") as out, urllib.request.urlopen(url, timeout=60) as response:
            while chunk := response.read(1 << 20):
                out.write(chunk)
                digest.update(chunk)
        if digest.hexdigest() != md5:
            raise DownloadError(f"{url} has md5 {digest.hexdigest()}, expected {md5}; nothing was kept")
        os.replace(tmp, dest)
    except BaseException as e:
        Path(tmp).unlink(missing_ok=True)
        if created:
            try:
                dest.parent.rmdir()
            except OSError:
                pass
        if isinstance(e, Exception) and not isinstance(e, DownloadError):
            raise DownloadError(f"{url}: {getattr(e, 'reason', e)}") from None
        raise
