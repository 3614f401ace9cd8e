"""A run directory: config, per-epoch metrics, summary, checkpoint. Nothing in it is ever lost.

```
OUT/
  config.json       the full configuration (seeds included)
  metrics.jsonl     one JSON object per finished epoch
  summary.json      final and best test accuracy, and whatever the run adds
  checkpoint.pt     model, optimizer, objective state, RNG states; written atomically each epoch
  noise.npz         the realised corruption (written by the experiment)
  targets.npy       the final per-sample targets of SAT-style objectives
```
"""
from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import torch

from selfadapt.errors import SelfAdaptError

# Keys that may change between invocations of the same run: more epochs extend it, and the
# device or progress display do not change what is computed in deterministic mode.
RESUMABLE_KEYS = frozenset({"epochs", "device", "progress", "data_dir", "out"})


def differing_settings(a: dict, b: dict) -> list[str]:
    """Keys whose values differ between two run configs, ignoring those a resume may change."""
    return sorted(k for k in set(a) | set(b) if k not in RESUMABLE_KEYS and a.get(k) != b.get(k))


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file and ``os.replace``: never half a file."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def write_json(path: Path, obj) -> None:
    atomic_write_bytes(path, (json.dumps(obj, indent=2, sort_keys=True) + "\n").encode())


class RunDir:
    """The files of one run; refuses a directory that holds a different run.

    Example
    -------
    >>> import tempfile
    >>> run = RunDir(tempfile.mkdtemp(), {"lr": 0.1, "epochs": 3})
    >>> run.append_metrics({"epoch": 0, "test_accuracy": 0.5})
    >>> run.metrics()
    [{'epoch': 0, 'test_accuracy': 0.5}]
    """

    def __init__(self, path: str | Path, config: dict):
        self.path = Path(path)
        if self.path.exists() and not self.path.is_dir():
            raise SelfAdaptError(f"--out {self.path} is a file, not a directory")
        self.path.mkdir(parents=True, exist_ok=True)
        self.config = config
        stored = self.stored_config()
        if stored is not None and differing_settings(stored, config):
            raise SelfAdaptError(f"{self.path} holds a different run (it differs in "
                                 f"{', '.join(differing_settings(stored, config))}); "
                                 "choose another --out or delete that directory")
        write_json(self.config_path, config)

    config_path = property(lambda self: self.path / "config.json")
    metrics_path = property(lambda self: self.path / "metrics.jsonl")
    summary_path = property(lambda self: self.path / "summary.json")
    checkpoint_path = property(lambda self: self.path / "checkpoint.pt")

    def stored_config(self) -> dict | None:
        if not self.config_path.exists():
            if any(self.path.iterdir()):
                raise SelfAdaptError(f"{self.path} is not empty and holds no selfadapt run; choose another --out")
            return None
        try:
            return json.loads(self.config_path.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise SelfAdaptError(f"{self.config_path} is corrupt ({e}); choose another --out") from None

    def metrics(self) -> list[dict]:
        if not self.metrics_path.exists():
            return []
        return [json.loads(line) for line in self.metrics_path.read_text().splitlines() if line.strip()]

    def append_metrics(self, record: dict) -> None:
        with open(self.metrics_path, "a") as f:
            f.write(json.dumps(record, sort_keys=True) + "\n")

    def truncate_metrics(self, epochs_done: int) -> None:
        """Drop lines of epochs after the checkpoint (written before an interruption)."""
        kept = [m for m in self.metrics() if m["epoch"] < epochs_done]
        atomic_write_bytes(self.metrics_path, "".join(json.dumps(m, sort_keys=True) + "\n" for m in kept).encode())

    def write_summary(self, summary: dict) -> None:
        write_json(self.summary_path, summary)

    def save_checkpoint(self, state: dict) -> None:
        save_checkpoint(self.checkpoint_path, state)

    def load_checkpoint(self) -> dict | None:
        """The run's checkpoint, or None; one written by a different run is refused."""
        if not self.checkpoint_path.exists():
            return None
        state = load_checkpoint(self.checkpoint_path)
        if differing_settings(state["config"], self.config):
            raise SelfAdaptError(f"{self.checkpoint_path} comes from another run (it differs in "
                                 f"{', '.join(differing_settings(state['config'], self.config))})")
        return state


def save_checkpoint(path: Path, state: dict) -> None:
    """``torch.save`` to a temporary file, then an atomic rename over ``path``."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    os.close(fd)
    try:
        torch.save(state, tmp)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def load_checkpoint(path: str | Path) -> dict:
    """Load with ``weights_only=True`` (no code runs); an unreadable file is a :class:`SelfAdaptError`."""
    path = Path(path)
    if not path.is_file():
        raise SelfAdaptError(f"checkpoint {path} does not exist")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises many types for a damaged or foreign file
        first_line = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise SelfAdaptError(f"cannot read checkpoint {path}: {first_line}") from None
    if not isinstance(state, dict) or state.get("format") != "selfadapt-checkpoint-1":
        raise SelfAdaptError(f"{path} is not a selfadapt checkpoint")
    return state
