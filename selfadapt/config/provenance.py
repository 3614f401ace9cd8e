"""Where a number came from: the code, the command and the machine that produced a run.

:func:`provenance` is recorded in every run directory (``provenance.json``, one record per
invocation that trained) and in ``summary.json``, and in a grid's ``bench.json``. Run from a git
checkout, it names the commit and a hash of the uncommitted changes to the package, so two runs
with the same record ran the same code.

>>> record = provenance("cpu")
>>> sorted(record)[:4]
['command', 'cuda', 'device', 'git_commit']
"""
from __future__ import annotations

import hashlib
import os
import platform
import shlex
import subprocess
import sys
import time
from pathlib import Path

import torch

from selfadapt.version import __version__

PACKAGE = Path(__file__).resolve().parent.parent


def provenance(device: str) -> dict:
    """The identity of the code (version, git commit, hash of uncommitted changes), the command
    line, Python, torch and CUDA versions, the device, the host and the time."""
    commit, changes = code_identity()
    return {
        "selfadapt": __version__, "git_commit": commit, "uncommitted_changes_sha256": changes,
        "command": command_line(),
        "python": platform.python_version(), "torch": torch.__version__, "cuda": torch.version.cuda,
        "device": describe_device(device), "host": platform.node(),
        "started_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }


def command_line() -> str:
    """This process's command as typed (``python -m selfadapt`` shown as ``selfadapt``)."""
    if not sys.argv or not sys.argv[0]:
        return ""
    program = Path(sys.argv[0]).name
    if program == "__main__.py":
        program = Path(sys.argv[0]).parent.name
    return shlex.join([program, *sys.argv[1:]])


def code_identity() -> tuple[str | None, str | None]:
    """``(commit, sha256 of the package's uncommitted changes or None if there are none)`` when the
    package runs from a git checkout, else ``(None, None)`` (an installed wheel: its version says it)."""
    commit = _git("rev-parse", "HEAD")
    if commit is None:
        return None, None
    diff = _git("diff", "HEAD", "--binary", "--", str(PACKAGE), strip=False) or ""
    untracked = (_git("ls-files", "--others", "--exclude-standard", "--", str(PACKAGE)) or "").split()
    if not diff and not untracked:
        return commit, None
    digest = hashlib.sha256(diff.encode())
    for name in sorted(untracked):
        path = PACKAGE.parent / name
        digest.update(name.encode() + (path.read_bytes() if path.is_file() else b""))
    return commit, digest.hexdigest()


def _git(*args: str, strip: bool = True) -> str | None:
    try:
        done = subprocess.run(["git", "-C", str(PACKAGE.parent), *args], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return None
    if done.returncode != 0:
        return None
    return done.stdout.strip() if strip else done.stdout


def describe_device(device: str) -> str:
    """``cuda:0 (NVIDIA H100 80GB HBM3)`` or ``cpu (AMD EPYC ..., 2 cores)``."""
    if device.startswith("cuda") and torch.cuda.is_available():
        return f"{device} ({torch.cuda.get_device_name(torch.device(device))})"
    return f"cpu ({processor_name()}, {os.cpu_count()} cores)"


def processor_name() -> str:
    """The CPU model from /proc/cpuinfo where there is one, else ``platform.processor()``."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()
