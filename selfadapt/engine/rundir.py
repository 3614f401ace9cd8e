"""A run directory: config, per-epoch metrics, summary, checkpoint. Nothing in it is ever lost.

```
OUT/
  config.json       the full configuration (seeds, method and evaluator options included)
  metrics.jsonl     one JSON object per finished epoch
  summary.json      final and best values of the evaluators' metrics, and whatever the run adds
  checkpoint.pt     model, optimizer, objective state, loader and RNG states; written atomically
  noise.npz         the realised corruption (written by the experiment)
  targets.npy       the final per-sample targets of objectives that keep them
  profile.json      with --profile: where each epoch's time went (selfadapt.engine.profiling)
  provenance.json   the code, command and machine of every invocation that trained (selfadapt.config.provenance)
```

A directory holds a run once it has metrics or a checkpoint; a ``config.json`` alone (left by a
command that failed before training) does not make one, so the corrected command may use it.
A run's own process holds an OS lock on its directory (:mod:`selfadapt.engine.lock`) from the
moment it reads it until it ends: a second process on the same ``--out`` is refused, naming the
first. The checkpoint carries the metrics of the epochs it holds, so a run resumed after any
interruption (before its first checkpoint, during a checkpoint write, with ``metrics.jsonl`` cut
mid-line) ends exactly as an uninterrupted one.
"""
from __future__ import annotations

import errno
import json
import os
import tempfile
import warnings
from pathlib import Path

import torch

from selfadapt.config.run import differing_settings
from selfadapt.engine.lock import DirectoryLock
from selfadapt.errors import SelfAdaptError

CHECKPOINT_FORMAT = "selfadapt-checkpoint-2"
RUN_FILES = ("config.json", "metrics.jsonl", "summary.json", "checkpoint.pt", "noise.npz", "targets.npy",
             "profile.json", "provenance.json")


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file and ``os.replace``: never half a file."""
    _atomic(path, lambda tmp: Path(tmp).write_bytes(data))


def write_json(path: Path, obj) -> None:
    atomic_write_bytes(path, (json.dumps(obj, indent=2, sort_keys=True) + "\n").encode())


def read_metrics(path: Path, *, damaged_ok: bool = False) -> list[dict]:
    """The records of a ``metrics.jsonl`` (an empty list when there is none). A damaged line is an
    error, unless ``damaged_ok`` (a checkpoint will rewrite the file): then it ends the records."""
    path = Path(path)
    if not path.is_file():
        return []
    records = []
    for number, line in enumerate(path.read_bytes().splitlines(), 1):
        try:
            records.append(json.loads(line)) if line.strip() else None
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            if damaged_ok:
                break
            raise SelfAdaptError(f"{path} is damaged on line {number} ({e}) and no checkpoint can rebuild it; "
                                 "delete that run directory") from None
    return records


def _default_mode() -> int:
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


def _atomic(path: Path, write) -> None:
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    os.close(fd)
    try:
        write(tmp)
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.chmod(tmp, _default_mode())   # as any other file the user writes, not mkstemp's 0600
        os.replace(tmp, path)
    except BaseException as e:
        if os.path.exists(tmp):
            os.unlink(tmp)
        if _disk_full(e):
            raise SelfAdaptError(f"no space left on the device of {path.parent}; {path.name} was not written "
                                 "(the previous one, if any, is kept): free some space and run the same command "
                                 "again") from None
        raise


def _disk_full(error: BaseException) -> bool:
    """Whether ``error`` (or what it was raised from: torch wraps the OSError) is a full disk."""
    while error is not None:
        if isinstance(error, OSError) and error.errno in (errno.ENOSPC, errno.EDQUOT):
            return True
        error = error.__cause__ or error.__context__
    return False


def check_out_path(path: Path) -> None:
    """``--out`` must be, or be creatable as, a directory: one clear line otherwise."""
    if path.exists() and not path.is_dir():
        raise SelfAdaptError(f"--out {path} is a file, not a directory")
    for parent in path.parents:
        if parent.exists():
            if not parent.is_dir():
                raise SelfAdaptError(f"--out {path} cannot be created: {parent} is a file, not a directory")
            if not os.access(parent, os.W_OK | os.X_OK) and not path.exists():
                raise SelfAdaptError(f"--out {path} cannot be created: {parent} is not writable")
            return


class RunDir:
    """The files of one run; refuses a directory that holds a different run or is in use.

    Construction only checks (and, for the writing process, locks an existing directory);
    :meth:`create` writes ``config.json`` (call it once everything that can fail before training
    has succeeded). ``writer=False`` (the other processes of a multi-process run) never writes.

    Example
    -------
    >>> import tempfile
    >>> run = RunDir(tempfile.mkdtemp(), {"engine": {"epochs": 3}}).create()
    >>> run.append_metrics({"epoch": 0, "test_accuracy": 0.5})
    >>> run.metrics()
    [{'epoch': 0, 'test_accuracy': 0.5}]
    """

    def __init__(self, path: str | Path, config: dict, *, writer: bool = True):
        self.path = Path(path)
        self.config = config
        self.writer = writer
        check_out_path(self.path)
        self.lock = DirectoryLock(self.path)
        if writer and self.path.is_dir():
            self.lock.acquire()   # before reading what the directory holds
        try:
            self._check(config)
        except BaseException:
            self.lock.release()
            raise

    def _check(self, config: dict) -> None:
        stored = self.stored_config()
        self.checkpoint = None
        if stored is not None:
            differs = differing_settings(stored, config)
            if differs:
                raise SelfAdaptError(f"{self.path} holds a different run (it differs in {', '.join(differs)}); "
                                     "choose another --out or delete that directory")
            self.checkpoint = self._read_checkpoint()
            done = self.checkpoint["epoch"] if self.checkpoint else 0
            wanted = config.get("engine", {}).get("epochs")
            if wanted is not None and done > wanted:
                raise SelfAdaptError(f"{self.path} holds {done} trained epochs, more than --epochs {wanted}; "
                                     "a run cannot be shortened: choose another --out")

    config_path = property(lambda self: self.path / "config.json")
    metrics_path = property(lambda self: self.path / "metrics.jsonl")
    summary_path = property(lambda self: self.path / "summary.json")
    checkpoint_path = property(lambda self: self.path / "checkpoint.pt")

    def holds_run(self) -> bool:
        return self.metrics_path.is_file() or self.checkpoint_path.is_file()

    def stored_config(self) -> dict | None:
        """The config of the run this directory holds (``None``: it holds none)."""
        if not self.path.is_dir():
            return None
        if not self.holds_run():
            others = [p for p in self.path.iterdir() if p.name not in ("config.json", "noise.npz", "provenance.json")
                      and not p.name.startswith(".")]
            if others:
                raise SelfAdaptError(f"{self.path} is not empty and holds no selfadapt run; choose another --out")
            return None
        try:
            return json.loads(self.config_path.read_text())
        except (OSError, json.JSONDecodeError, UnicodeDecodeError) as e:
            raise SelfAdaptError(f"{self.config_path} is missing or corrupt ({e}); choose another --out") from None

    def _read_checkpoint(self) -> dict | None:
        """The checkpoint (memory-mapped), checked against this run before anything is written."""
        if not self.checkpoint_path.exists():
            return None
        state = load_checkpoint(self.checkpoint_path, mmap=True)
        differs = differing_settings(state["config"], self.config)
        if differs:
            raise SelfAdaptError(f"{self.checkpoint_path} comes from another run (it differs in {', '.join(differs)})")
        return state

    def create(self) -> RunDir:
        """Create and lock the directory, remove temporary files a killed run left, write ``config.json``."""
        if self.writer:
            self.path.mkdir(parents=True, exist_ok=True)
            if not self.lock.held:
                self.lock.acquire()
            self.lock.announce()
            for stale in self.path.glob(".*"):
                if stale.is_file() and any(stale.name.startswith(f".{name}.") for name in RUN_FILES):
                    stale.unlink()
            write_json(self.config_path, self.config)
        return self

    def close(self) -> None:
        """Release the directory (the lock also dies with the process)."""
        self.lock.release()

    def metrics(self) -> list[dict]:
        return read_metrics(self.metrics_path)

    def append_metrics(self, record: dict) -> None:
        with open(self.metrics_path, "a") as f:
            f.write(json.dumps(record, sort_keys=True) + "\n")

    def rewrite_metrics(self, records: list[dict]) -> None:
        """Make ``metrics.jsonl`` hold exactly ``records`` (those of the checkpoint, or none without one)."""
        atomic_write_bytes(self.metrics_path, "".join(json.dumps(m, sort_keys=True) + "\n" for m in records).encode())

    def truncate_metrics(self, epochs_done: int) -> None:
        """Keep the lines of the epochs a checkpoint without metrics holds (written before an interruption)."""
        self.rewrite_metrics([m for m in read_metrics(self.metrics_path, damaged_ok=True) if m["epoch"] < epochs_done])

    def append_provenance(self, record: dict) -> None:
        """Add this invocation's :func:`~selfadapt.config.provenance.provenance` to ``provenance.json``."""
        path = self.path / "provenance.json"
        history = json.loads(path.read_text()) if path.is_file() else []
        write_json(path, [*history, record])

    def write_summary(self, summary: dict) -> None:
        write_json(self.summary_path, summary)

    def save_checkpoint(self, state: dict) -> None:
        save_checkpoint(self.checkpoint_path, state)

    def load_checkpoint(self) -> dict | None:
        """The run's checkpoint, or None (the writer's was read and checked on construction)."""
        if self.checkpoint is None and not self.writer:
            self.checkpoint = self._read_checkpoint()
        return self.checkpoint


def save_checkpoint(path: Path, state: dict) -> None:
    """``torch.save`` to a temporary file, then an atomic rename over ``path``."""
    def write(tmp):
        with open(tmp, "wb") as f:   # a Python file: a full disk surfaces as an OSError
            torch.save(state, f)
    _atomic(path, write)


def load_checkpoint(path: str | Path, *, mmap: bool = False) -> dict:
    """Load with ``weights_only=True`` (no code runs); an unreadable file is a :class:`SelfAdaptError`.
    ``mmap=True`` maps the tensors instead of reading them (cheap to inspect)."""
    path = Path(path)
    if path.is_dir():
        path = path / "checkpoint.pt"
    if not path.is_file():
        raise SelfAdaptError(f"checkpoint {path} does not exist")
    try:
        with warnings.catch_warnings():   # torch warns about foreign pickle protocols before refusing them
            warnings.simplefilter("ignore")
            state = torch.load(path, map_location="cpu", weights_only=True, mmap=mmap)
    except Exception:  # noqa: BLE001  (torch raises many types for a damaged or foreign file)
        raise SelfAdaptError(f"{path} is not a readable selfadapt checkpoint (damaged, or not written by "
                             "selfadapt); it was not loaded") from None
    if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
        found = state.get("format") if isinstance(state, dict) else None
        extra = f" (format {found!r}, this version reads {CHECKPOINT_FORMAT!r})" if found else ""
        raise SelfAdaptError(f"{path} is not a selfadapt checkpoint{extra}")
    return state
