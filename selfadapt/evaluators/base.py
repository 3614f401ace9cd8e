"""Evaluators: ``evaluator(model, objective, data, epoch) -> metrics``, run by the engine.

Each evaluator says how often and from which epoch it runs, which of its metrics is primary and
whether higher is better, so run summaries and grid tables work for any metric. An evaluator is
registered by name with typed options (an :class:`EvaluatorSpec`), like a method.
"""
from __future__ import annotations

import contextlib
import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import torch
from torch import nn

from selfadapt.data.loader import DeviceLoader
from selfadapt.errors import SelfAdaptError
from selfadapt.settings import parse_options


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


EVALUATORS: dict[str, EvaluatorSpec] = {}


def register_evaluator(spec: EvaluatorSpec) -> EvaluatorSpec:
    if spec.name in EVALUATORS:
        raise ValueError(f"evaluator {spec.name!r} is registered twice")
    EVALUATORS[spec.name] = spec
    return spec


def get_evaluator(name: str) -> EvaluatorSpec:
    if name not in EVALUATORS:
        raise SelfAdaptError(f"unknown evaluator {name!r}; choose from {', '.join(sorted(EVALUATORS))}")
    return EVALUATORS[name]


def evaluator_names_for(method, noise: str) -> list[str]:
    """A method's default evaluators, plus memorisation curves where label noise is injected."""
    from selfadapt.data.corruption import LABEL_CORRUPTIONS

    names = list(method.evaluators)
    if noise in LABEL_CORRUPTIONS and "memorisation" not in names:
        names.append("memorisation")
    return names


def resolve_evaluator_options(names: list[str], given: dict, prefix: str = "") -> dict:
    """Every option of the evaluators ``names``: taken from ``given`` where named, else default."""
    if len(set(names)) != len(names):
        raise SelfAdaptError(f"{prefix}an evaluator is listed twice: {', '.join(names)}")
    options = {}
    for name in names:
        spec = get_evaluator(name)
        own = {k: v for k, v in given.items() if k in spec.option_names}
        options.update(dataclasses.asdict(parse_options(spec.options, own, f"{prefix}evaluator {name}")))
    return options


def build_evaluators(names: list[str], options: dict) -> list[Evaluator]:
    """The evaluators ``names``, each built from its part of ``options``."""
    out = []
    for name in names:
        spec = get_evaluator(name)
        out.append(spec.build(parse_options(spec.options, {k: options[k] for k in spec.option_names
                                                           if k in options}, f"evaluator {name}")))
    return out


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
