"""What flows between the loader, the objective and the engine: a batch in, a step's output back.

A batch is ``(views, y, index)`` everywhere: one or more augmented views of the same samples
(float images in [0, 1]), their labels (``-1`` for unlabeled samples) and their dataset positions,
so per-sample objectives know which targets to update.
"""
from __future__ import annotations

from typing import NamedTuple

import torch


class Batch(NamedTuple):
    """One or more augmented ``views`` of the same samples (float, [0, 1]), their labels ``y``
    (``-1`` for unlabeled samples) and their dataset ``index``.

    >>> batch = Batch((torch.zeros(2, 1, 4, 4),), torch.tensor([0, -1]), torch.tensor([7, 3]))
    >>> batch.x.shape, batch.labeled.tolist()
    (torch.Size([2, 1, 4, 4]), [True, False])
    """

    views: tuple[torch.Tensor, ...]
    y: torch.Tensor
    index: torch.Tensor

    @property
    def x(self) -> torch.Tensor:
        """The first (for one-view methods, the only) view."""
        return self.views[0]

    @property
    def labeled(self) -> torch.Tensor:
        return self.y >= 0


class StepOutput(NamedTuple):
    """The loss to back-propagate; optionally the class logits of the trained model (for train
    accuracy) and extra per-batch metrics (scalars, averaged over the epoch into ``metrics.jsonl``)."""

    loss: torch.Tensor
    logits: torch.Tensor | None = None
    metrics: dict[str, torch.Tensor] | None = None


class Progress(NamedTuple):
    """Where training stands after a step (0-based epoch and step)."""

    epoch: int
    step: int
    steps_per_epoch: int
    epochs: int

    @property
    def fraction(self) -> float:
        """Share of all training steps done, in (0, 1] (for schedules such as BYOL's momentum)."""
        return (self.epoch * self.steps_per_epoch + self.step + 1) / (self.epochs * self.steps_per_epoch)
