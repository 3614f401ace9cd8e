"""Evaluators: ``evaluator(model, objective, data, epoch) -> metrics``, run by the engine.

Each evaluator says how often and from which epoch it runs, which of its metrics is primary and
whether higher is better, so run summaries and grid tables work for any metric. An evaluator's
module lists it with typed options (``EVALUATORS = [EvaluatorSpec(...)]``), like a method, and
:mod:`selfadapt.evaluators.registry` finds it.
"""
from __future__ import annotations

import contextlib
import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import torch
from torch import nn

from selfadapt.config.fields import setting
from selfadapt.data.loader import DeviceLoader
from selfadapt.errors import SelfAdaptError


@dataclass
class EvalData:
    """What evaluators may look at. ``train`` iterates the training images as trained on (after any
    input corruption) without augmentation, in dataset order, with the given labels; ``clean_labels``
    are the true training labels where known (injected or human noise), else ``None``; ``val`` is the
    validation split held out of the training data (``--val-size``; given labels), for choices that
    must not look at the test set; ``run_dir`` is the run directory, where an evaluator may leave files
    (per-sample scores) or keep state to resume from; ``None`` where there is none."""

    test: DeviceLoader | None
    train: DeviceLoader
    clean_labels: torch.Tensor | None
    num_classes: int
    amp: bool = False
    val: DeviceLoader | None = None
    run_dir: Path | None = None


class Evaluator:
    """Base class. ``every`` and ``start_epoch`` say when it runs (always also after the last
    epoch); ``final_only`` runs it after the last epoch alone. ``primary`` names the metric that
    summaries report best and final values of, ``higher_is_better`` its direction."""

    name: str = ""
    primary: str | None = None
    higher_is_better: bool = True

    def __init__(self, *, every: int = 1, start_epoch: int = 0, final_only: bool = False):
        self.every, self.start_epoch, self.final_only = every, start_epoch, final_only

    def due(self, epoch: int, epochs: int) -> bool:
        """Whether the evaluator runs after 0-based ``epoch`` of ``epochs``.

        >>> [e for e in range(10) if Evaluator(every=3).due(e, 10)]
        [2, 5, 8, 9]
        """
        if epoch == epochs - 1:
            return True
        return not self.final_only and epoch >= self.start_epoch and (epoch - self.start_epoch + 1) % self.every == 0

    def __call__(self, model: nn.Module, objective: nn.Module, data: EvalData, epoch: int) -> dict[str, Any]:
        raise NotImplementedError


@dataclass(frozen=True)
class EvaluatorSpec:
    name: str
    summary: str                              # one line for `selfadapt evaluators`
    build: Callable[[Any], Evaluator]         # options -> evaluator
    options: type                             # dataclass of setting() fields
    validate: Callable[[Any], str | None] | None = None  # (RunConfig) -> problem or None

    @property
    def option_names(self) -> tuple[str, ...]:
        return tuple(f.name for f in dataclasses.fields(self.options))

    def check(self, config, prefix: str = "") -> None:
        """Reject settings under which this evaluator cannot measure anything (one clear line)."""
        problem = self.validate(config) if self.validate is not None else None
        if problem:
            raise SelfAdaptError(f"{prefix}{problem}")


def schedule_options(name: str, what: str, *, every: int = 1, start_epoch: int | None = None) -> type:
    """The options saying when evaluator ``name`` runs, declared once for every evaluator:
    ``<name>_every`` and, where given a ``start_epoch``, ``<name>_start_epoch``.

    >>> [f.name for f in dataclasses.fields(schedule_options("pgd", "PGD", start_epoch=0))]
    ['pgd_every', 'pgd_start_epoch']
    """
    fields = [(f"{name}_every", "int", setting(every, f"{what} every K epochs (and after the last)",
                                              check=lambda v: v >= 1, must="be >= 1"))]
    if start_epoch is not None:
        fields.append((f"{name}_start_epoch", "int", setting(
            start_epoch, f"first epoch (0-based) of {what} (always after the last)",
            check=lambda v: v >= 0, must="be >= 0")))
    return dataclasses.make_dataclass(f"{name.title().replace('_', '')}Schedule", fields)


def timing(options, name: str) -> dict:
    """``every`` and ``start_epoch`` of evaluator ``name`` from its :func:`schedule_options`.

    >>> timing(schedule_options("knn", "kNN", every=5)(), "knn")
    {'every': 5, 'start_epoch': 0}
    """
    return {"every": getattr(options, f"{name}_every"), "start_epoch": getattr(options, f"{name}_start_epoch", 0)}


@contextlib.contextmanager
def evaluation_mode(*modules: nn.Module):
    """Eval mode and no gradients inside; each module's train/eval mode restored afterwards."""
    modes = [m.training for m in modules]
    for m in modules:
        m.eval()
    try:
        with torch.no_grad():
            yield
    finally:
        for m, mode in zip(modules, modes):
            m.train(mode)


def autocast(device: torch.device, enabled: bool):
    """bf16 autocast on CUDA when ``enabled``; a no-op elsewhere."""
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=enabled and device.type == "cuda")


def predict_logits(model: nn.Module, objective: nn.Module, loader: DeviceLoader, *, amp: bool = False) -> torch.Tensor:
    """``objective.predict`` over an unshuffled loader in eval mode: N x C float logits on its device."""
    out = []
    with evaluation_mode(model, objective):
        for batch in loader:
            with autocast(loader.device, amp):
                out.append(objective.predict(model, batch.x).float())
    if not out:
        return torch.empty(0, 0, device=loader.device)
    return torch.cat(out)
