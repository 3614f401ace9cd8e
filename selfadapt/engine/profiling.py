"""Where an epoch's time goes: ``--profile`` writes ``profile.json`` in the run directory.

The engine marks the phases of every step (loading and augmenting the batch, forward + loss,
backward, optimiser step, the objective's after-step), the evaluators and the checkpoint; the time
spent inside every :class:`~selfadapt.targets.TargetStore` update is split out of forward + loss.
Phases are exclusive (a nested phase pauses its parent), so the phases and ``other`` (bookkeeping
between them: metric sums, logging) add up to the epoch's wall time. On CUDA the profiler waits for
the device at every boundary so that GPU work is charged to the phase that queued it; a profiled
epoch is therefore a little slower than an unprofiled one (the host can no longer run ahead), and
the shares, not the absolute seconds, are the figures to read. Without ``--profile`` nothing is
timed and nothing waits.

``profile.json`` holds every epoch this invocation trained, the sum over them (``total``) and the
sum without the first epoch (``steady``: the first pays for warm-up and compilation), each with
seconds per phase and shares of the epoch time.

Example
-------
>>> profiler = Profiler(torch.device("cpu"))
>>> profiler.begin_epoch(0)
>>> for batch in profiler.timed([1, 2], "data"):
...     with profiler.phase("backward"):
...         pass
>>> entry = profiler.end_epoch()
>>> entry["steps"], sorted(entry["phases"]) == sorted(PHASES)
(2, True)
"""
from __future__ import annotations

import contextlib
import time
import types
from pathlib import Path

import torch
from torch import nn

from selfadapt.engine.rundir import write_json
from selfadapt.targets import find_target_stores

PHASES = ("data", "forward_loss", "target_update", "backward", "optimizer", "after_step", "evaluation", "checkpoint")
_LABELS = {"forward_loss": "forward+loss", "target_update": "target update", "after_step": "after step"}
_IDLE = contextlib.nullcontext()


class Profiler:
    """Exclusive wall-clock time per phase of each epoch; ``enabled=False`` times nothing.

    Mark phases with ``with profiler.phase(name):``, time the batches of a loader with
    ``profiler.timed(loader, "data")``, and bracket each epoch with :meth:`begin_epoch` /
    :meth:`end_epoch` (which writes ``path`` when given).
    """

    def __init__(self, device: torch.device, *, enabled: bool = True, path: str | Path | None = None):
        self.enabled = enabled
        self.cuda = torch.device(device).type == "cuda"
        self.device = torch.device(device)
        self.path = Path(path) if path is not None else None
        self.epochs: list[dict] = []
        self._open = False

    # ------------------------------------------------------------------ marking

    def phase(self, name: str):
        """A context charging the time inside to ``name`` (a no-op when disabled or between epochs)."""
        return self._phase(name) if self._open else _IDLE

    @contextlib.contextmanager
    def _phase(self, name: str):
        self._switch_to(name)
        try:
            yield
        finally:
            self._switch_back()

    def timed(self, iterable, name: str = "data"):
        """``iterable`` with the time of each ``next`` charged to ``name`` (and steps counted)."""
        if not self._open:
            return iterable
        return self._timed(iterable, name)

    def _timed(self, iterable, name):
        iterator = iter(iterable)
        while True:
            with self.phase(name):
                try:
                    item = next(iterator)
                except StopIteration:
                    return
            self._steps += 1
            yield item

    def instrument(self, module: nn.Module) -> None:
        """Charge the time inside every target store's ``update`` in ``module`` to ``target_update``."""
        if not self.enabled:
            return
        profiler = self

        def timed_update(store, *args, **kwargs):
            with profiler.phase("target_update"):
                return type(store).update(store, *args, **kwargs)
        for store in find_target_stores(module).values():
            store.update = types.MethodType(timed_update, store)  # bound to the store, also in a deepcopy

    # ------------------------------------------------------------------ epochs

    def begin_epoch(self, epoch: int) -> None:
        if not self.enabled:
            return
        self._epoch, self._steps = epoch, 0
        self._seconds = dict.fromkeys((*PHASES, "other"), 0.0)
        self._stack = ["other"]
        self._start = self._mark = self._now()
        self._open = True

    def end_epoch(self) -> dict | None:
        """Close the epoch, record it (and write ``path``); its entry, or ``None`` when disabled."""
        if not self.enabled:
            return None
        now = self._now()
        self._seconds["other"] += now - self._mark
        self._open = False
        other = self._seconds.pop("other")
        entry = {"epoch": self._epoch, "seconds": now - self._start, "steps": self._steps,
                 "phases": self._seconds, "other": other}
        self.epochs.append(entry)
        if self.path is not None:
            write_json(self.path, self.report())
        return entry

    def report(self) -> dict:
        """Everything recorded: the epochs, their sum and their sum without the first."""
        out = {"device": str(self.device), "synchronised": self.cuda, "epochs": self.epochs,
               "total": _summed(self.epochs)}
        if len(self.epochs) > 1:
            out["steady"] = _summed(self.epochs[1:])
        return out

    def summary_line(self) -> str:
        """One line: the shares of the steady epochs (all epochs when there is only one)."""
        report = self.report()
        part = report.get("steady", report["total"])
        first, last = part["epochs"][0], part["epochs"][-1]
        which = f"epoch {first}" if first == last else f"epochs {first}-{last}"
        shares = ", ".join(f"{_LABELS.get(k, k)} {100 * v:.1f}%" for k, v in part["share"].items())
        where = f" -> {self.path}" if self.path is not None else ""
        return f"profile of {which}, {part['seconds_per_epoch']:.3f} s/epoch: {shares}{where}"

    # ------------------------------------------------------------------ clock

    def _now(self) -> float:
        if self.cuda:
            torch.cuda.synchronize(self.device)
        return time.perf_counter()

    def _switch_to(self, name: str) -> None:
        now = self._now()
        self._seconds[self._stack[-1]] += now - self._mark
        self._stack.append(name)
        self._mark = now

    def _switch_back(self) -> None:
        now = self._now()
        self._seconds[self._stack.pop()] += now - self._mark
        self._mark = now


def _summed(epochs: list[dict]) -> dict:
    seconds = sum(e["seconds"] for e in epochs)
    phases = {k: sum(e["phases"][k] for e in epochs) for k in PHASES}
    phases["other"] = sum(e["other"] for e in epochs)
    return {"epochs": [e["epoch"] for e in epochs], "seconds": seconds, "seconds_per_epoch": seconds / len(epochs),
            "steps": sum(e["steps"] for e in epochs), "phases": phases,
            "share": {k: v / seconds if seconds > 0 else 0.0 for k, v in phases.items()}}
