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
from selfadapt.objectives.baselines import (EarlyLearningRegularization, GeneralizedCrossEntropy,
                                            HardBootstrapping, LabelSmoothing, Mixup, SoftBootstrapping,
                                            SymmetricCrossEntropy)
from selfadapt.objectives.coteaching import CoTeaching
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


def _elr(ctx: ObjectiveContext) -> Objective:
    o = ctx.options
    return LogitLoss(EarlyLearningRegularization(len(ctx.labels), ctx.num_classes, beta=o.get("elr_beta", 0.7),
                                                 lam=o.get("elr_lambda", 3.0)))


def _coteaching(ctx: ObjectiveContext) -> Objective:
    if ctx.model_factory is None:
        raise SelfAdaptError("coteaching trains a peer network and needs ObjectiveContext.model_factory")
    o = ctx.options
    tau = o["forget_rate"] if o.get("forget_rate") is not None else o.get("noise_rate", 0.2)
    return CoTeaching(ctx.model_factory(), forget_rate=tau, gradual_epochs=o.get("coteaching_tk", 10),
                      exponent=o.get("coteaching_exponent", 1.0))


# Defaults are the papers' (CIFAR-10 where they differ by data set); see each class's docstring.
OBJECTIVES: dict[str, Callable[[ObjectiveContext], Objective]] = {
    "ce": _ce,
    "sat": _sat,
    "sat-sce": lambda ctx: _sat(ctx, sce_weights=(1.0, 0.3)),
    "ls": lambda ctx: LogitLoss(LabelSmoothing(ctx.options.get("ls_smoothing", 0.1))),
    "bootstrap-soft": lambda ctx: LogitLoss(SoftBootstrapping(ctx.options.get("bootstrap_beta", 0.95))),
    "bootstrap-hard": lambda ctx: LogitLoss(HardBootstrapping(ctx.options.get("bootstrap_beta", 0.8))),
    "gce": lambda ctx: LogitLoss(GeneralizedCrossEntropy(ctx.options.get("gce_q", 0.7))),
    "sce": lambda ctx: LogitLoss(SymmetricCrossEntropy(ctx.options.get("sce_alpha", 0.1),
                                                       ctx.options.get("sce_beta", 1.0))),
    "elr": _elr,
    "mixup": lambda ctx: Mixup(ctx.options.get("mixup_alpha", 8.0), seed=ctx.options.get("seed", 0)),
    "coteaching": _coteaching,
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
