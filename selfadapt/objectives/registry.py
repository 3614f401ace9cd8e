"""Objectives by name, as ``--method NAME`` and the grid runner pick them.

A builder receives an :class:`ObjectiveContext` (what a run knows: given labels, number of
classes, epochs, a factory for a fresh model) and the method's options (``--sat-momentum`` and
friends), and returns an :class:`~selfadapt.objectives.base.Objective`.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import torch
from torch import nn

from selfadapt.errors import SelfAdaptError
from selfadapt.objectives.base import LogitLoss, Objective
from selfadapt.objectives.sat import CrossEntropy, SelfAdaptiveTraining


@dataclass
class ObjectiveContext:
    labels: torch.Tensor                  # given (possibly noisy) training labels, N
    num_classes: int
    epochs: int
    model_factory: Callable[[], nn.Module] | None = None  # a fresh, independently initialised model
    options: dict = field(default_factory=dict)           # method options, e.g. sat_momentum


def _ce(ctx: ObjectiveContext) -> Objective:
    return LogitLoss(CrossEntropy())


def _sat(ctx: ObjectiveContext, sce_weights=None) -> Objective:
    o = ctx.options
    return LogitLoss(SelfAdaptiveTraining(ctx.labels, ctx.num_classes, momentum=o.get("sat_momentum", 0.9),
                                          start_epoch=o.get("sat_start_epoch", 60), sce_weights=sce_weights))


OBJECTIVES: dict[str, Callable[[ObjectiveContext], Objective]] = {
    "ce": _ce,
    "sat": _sat,
    "sat-sce": lambda ctx: _sat(ctx, sce_weights=(1.0, 0.3)),
}


def build_objective(name: str, ctx: ObjectiveContext) -> Objective:
    """The objective called ``name``; an unknown name is a :class:`SelfAdaptError`."""
    if name not in OBJECTIVES:
        raise SelfAdaptError(f"unknown method {name!r}; choose from {', '.join(sorted(OBJECTIVES))}")
    return OBJECTIVES[name](ctx)


def sat_loss_of(objective: Objective) -> SelfAdaptiveTraining | None:
    """The SAT loss inside an objective, if it has one (for targets and label issues)."""
    for module in objective.modules():
        if isinstance(module, SelfAdaptiveTraining):
            return module
    return None
