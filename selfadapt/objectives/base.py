"""What the engine sees of a training objective: one step from a batch to a loss.

The engine knows nothing about SAT or any baseline. It calls ``objective.training_step`` on every
batch, optimises the model's parameters together with the objective's own (co-teaching's peer
network), and checkpoints ``objective.state_dict()`` (SAT's targets, ELR's averages) with the model.
"""
from __future__ import annotations

from typing import NamedTuple

import torch
from torch import nn


class StepOutput(NamedTuple):
    """The loss to back-propagate and the logits of the evaluated model (for train accuracy)."""

    loss: torch.Tensor
    logits: torch.Tensor


class Objective(nn.Module):
    """Base class: ``training_step(model, x, y, index, epoch) -> StepOutput``.

    ``x`` is the augmented batch in [0, 1], ``y`` the given (possibly noisy) labels, ``index`` the
    dataset indices of the batch and ``epoch`` the 0-based epoch.
    """

    def training_step(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor,
                      index: torch.Tensor, epoch: int) -> StepOutput:
        raise NotImplementedError


class LogitLoss(Objective):
    """An objective made of a loss on the model's logits: ``loss(logits, y, index, epoch)``.

    Example
    -------
    >>> from selfadapt.objectives.sat import CrossEntropy
    >>> objective = LogitLoss(CrossEntropy())
    >>> model = torch.nn.Linear(4, 3)
    >>> out = objective.training_step(model, torch.randn(2, 4), torch.tensor([0, 2]), torch.arange(2), 0)
    >>> out.logits.shape
    torch.Size([2, 3])
    """

    def __init__(self, loss: nn.Module):
        super().__init__()
        self.loss = loss

    def training_step(self, model, x, y, index, epoch):
        logits = model(x)
        return StepOutput(self.loss(logits, y, index, epoch), logits)
