"""What the engine sees of a training objective: one step from a batch to a loss.

The engine knows no method. It calls ``objective.training_step(model, batch, epoch)`` on every
batch, ``objective.after_step(model, progress)`` after every optimiser step (momentum encoders)
and ``objective.end_epoch(epoch)`` after every epoch (decisions taken from a whole epoch),
optimises the model's parameters together with the objective's own (co-teaching's peer network,
extra heads), and checkpoints ``objective.state_dict()`` (SAT's targets, ELR's averages) with the
model. Evaluators call ``objective.predict(model, x)`` for class logits.
"""
from __future__ import annotations

import torch
from torch import nn

from selfadapt.batch import Batch, Progress, StepOutput


class Objective(nn.Module):
    """Base class: ``training_step(model, batch, epoch) -> StepOutput``; ``epoch`` is 0-based."""

    def training_step(self, model: nn.Module, batch: Batch, epoch: int) -> StepOutput:
        raise NotImplementedError

    def after_step(self, model: nn.Module, progress: Progress) -> None:
        """Called after each optimiser step (e.g. to move a momentum encoder); nothing by default."""

    def predict(self, model: nn.Module, x: torch.Tensor) -> torch.Tensor:
        """Class logits for evaluation (e.g. without an abstain column); the model's output by default."""
        return model(x)

    def end_epoch(self, epoch: int) -> dict:
        """Called by every process after the last step of ``epoch``; returns metrics for the epoch's
        record (e.g. a decision taken from the epoch, such as SAT's automatic start). None by default."""
        return {}

    def settings_used(self) -> dict:
        """Settings the objective derived itself (SAT's width rule or automatic choices), recorded in
        the run's summary."""
        return {}


class LogitLoss(Objective):
    """An objective made of a loss on the model's logits: ``loss(logits, y, index, epoch)``.

    Example
    -------
    >>> from selfadapt.objectives.sat import CrossEntropy
    >>> objective = LogitLoss(CrossEntropy())
    >>> model = torch.nn.Linear(4, 3)
    >>> out = objective.training_step(model, Batch((torch.randn(2, 4),), torch.tensor([0, 2]), torch.arange(2)), 0)
    >>> out.logits.shape
    torch.Size([2, 3])
    """

    def __init__(self, loss: nn.Module):
        super().__init__()
        self.loss = loss

    def training_step(self, model, batch, epoch):
        logits = model(batch.x)
        return StepOutput(self.loss(logits, batch.y, batch.index, epoch), logits)

    def end_epoch(self, epoch):
        end = getattr(self.loss, "end_epoch", None)
        return end(epoch) if end is not None else {}

    def settings_used(self) -> dict:
        return self.loss.settings_used() if hasattr(self.loss, "settings_used") else {}
