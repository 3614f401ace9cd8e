"""Where each run of a grid stands, read from its run directory without loading any data."""
from __future__ import annotations

import json
from pathlib import Path

from selfadapt.config.run import differing_settings
from selfadapt.engine.rundir import read_metrics
from selfadapt.errors import SelfAdaptError
from selfadapt.grid.spec import GridRun


def run_state(run: GridRun, out: Path) -> str:
    """``"new"``, ``"partial"`` or ``"finished"``, read from ``out/runs/<name>/`` without loading data.

    A directory holding a different configuration (other than in epochs, device or progress) is
    a :class:`SelfAdaptError`, as is one with more epochs than the grid asks for.
    """
    folder = Path(out) / "runs" / run.name
    done = len(read_metrics(folder / "metrics.jsonl"))
    if not done and not (folder / "checkpoint.pt").is_file():
        return "new"
    try:
        stored = json.loads((folder / "config.json").read_text())
    except (OSError, json.JSONDecodeError, UnicodeDecodeError) as e:
        raise SelfAdaptError(f"{folder / 'config.json'} is missing or corrupt ({e}); delete that run directory") \
            from None
    differs = differing_settings(stored, run.config.to_dict())
    if differs:
        raise SelfAdaptError(f"{folder} holds a different run (it differs in {', '.join(differs)}); "
                             "use another --out or delete that directory")
    epochs = run.config.engine.epochs
    if done > epochs:
        raise SelfAdaptError(f"{folder} has {done} epochs, the grid asks for {epochs}; "
                             "use another --out or delete that directory")
    return "finished" if done == epochs and (folder / "summary.json").is_file() else "partial"
