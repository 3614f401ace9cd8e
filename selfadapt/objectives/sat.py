"""Self-adaptive training for classification (SPEC section 1) and plain cross-entropy.

Every loss here has the signature ``loss(logits, targets, index, epoch)``, so it drops into any
training loop that knows the dataset index of each sample.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from selfadapt import distributed
from selfadapt.label_issues import LabelIssues, suspected_label_errors
from selfadapt.objectives.base import LogitLoss
from selfadapt.objectives.registry import Method, register, start_epoch_before_end
from selfadapt.settings import setting
from selfadapt.targets import TargetStore


class CrossEntropy(nn.Module):
    """Plain cross-entropy with the common ``(logits, targets, index, epoch)`` signature."""

    def forward(self, logits, targets, index=None, epoch=0):
        return F.cross_entropy(logits.float(), targets)


class SelfAdaptiveTraining(nn.Module):
    """SAT loss: train against a per-sample moving average of the model's own predictions.

    Before ``start_epoch`` it is plain cross-entropy on the given labels (with or without
    ``sce_weights``, as the authors' SAT and SAT-SCE). From then on, for every batch:
    ``p = softmax(logits)`` (no gradient), ``t <- m t + (1 - m) p`` (before the loss), weights
    ``w = max_j t_j`` rescaled to average 1 over the batch, ``loss = mean(w * CE(t, logits))``.
    With ``sce_weights=(a, b)`` the per-sample loss from ``start_epoch`` on is
    ``-a sum t log p - b sum p log t`` (``log t`` clamped at ``log 1e-4``) instead.
    Under ``torchrun`` the weights average to 1 over the global batch of all processes, as in the
    authors' DataParallel training.

    Example
    -------
    >>> labels = torch.tensor([0, 1, 2, 1])
    >>> sat = SelfAdaptiveTraining(labels, num_classes=3, momentum=0.9, start_epoch=60)
    >>> logits = torch.randn(2, 3, requires_grad=True)
    >>> loss = sat(logits, labels[:2], torch.tensor([0, 1]), epoch=60)
    >>> loss.backward()
    >>> sat.targets.shape
    torch.Size([4, 3])
    """

    def __init__(self, labels: torch.Tensor, num_classes: int, momentum: float = 0.9,
                 start_epoch: int = 60, *, sce_weights: tuple[float, float] | None = None,
                 dtype: torch.dtype = torch.float32):
        super().__init__()
        if not 0.0 <= momentum < 1.0:
            raise ValueError(f"SAT momentum must lie in [0, 1), got {momentum}")
        if start_epoch < 0:
            raise ValueError(f"SAT start epoch must be >= 0, got {start_epoch}")
        labels = torch.as_tensor(labels, dtype=torch.long)
        self.start_epoch = int(start_epoch)
        self.sce_weights = sce_weights
        self.store = TargetStore(F.one_hot(labels, num_classes), momentum, dtype=dtype, label_distributions=True)
        self.register_buffer("given_labels", labels.clone())

    @property
    def targets(self) -> torch.Tensor:
        """The ``N x C`` corrected label distributions."""
        return self.store.values

    def settings_used(self) -> dict:
        """The momentum and start epoch this run trains with (after any width rule), for its summary."""
        return {"sat_momentum": self.store.momentum, "sat_start_epoch": self.start_epoch}

    def forward(self, logits: torch.Tensor, targets: torch.Tensor, index: torch.Tensor,
                epoch: int) -> torch.Tensor:
        logits = logits.float()
        if epoch < self.start_epoch:
            return F.cross_entropy(logits, targets)
        soft = self.store.update(index, F.softmax(logits.detach(), dim=1))
        weight = soft.max(dim=1).values
        total, count = distributed.sum_and_count(weight)
        weight = weight * (count / total)
        return (weight * self._per_sample(logits, soft)).mean()

    def _per_sample(self, logits: torch.Tensor, soft: torch.Tensor) -> torch.Tensor:
        log_prob = F.log_softmax(logits, dim=1)
        loss = -(soft * log_prob).sum(dim=1)
        if self.sce_weights is None:
            return loss
        a, b = self.sce_weights
        reverse = -(log_prob.exp() * soft.clamp_min(1e-4).log()).sum(dim=1)
        return a * loss + b * reverse

    def suspected_label_errors(self) -> LabelIssues:
        """Samples whose corrected label differs from the given one, most confident first."""
        return suspected_label_errors(self.targets, self.given_labels)


def width_scaled(momentum: float, start_epoch: int, width: int, reference: int = 64) -> tuple[float, int]:
    """The double-descent width rule: ``f = reference / width``, ``m -> m^(1/f)``, ``Es -> int(Es f)``.

    >>> width_scaled(0.9, 40, 64)
    (0.9, 40)
    """
    factor = reference / width
    return momentum ** (1.0 / factor), int(start_epoch * factor)


@dataclass
class SATOptions:
    sat_momentum: float = setting(0.9, "SAT target momentum alpha", check=lambda m: 0.0 <= m < 1.0,
                                  must="lie in [0, 1)")
    sat_start_epoch: int = setting(60, "SAT start epoch Es (0-based; cross-entropy before it)",
                                   check=lambda e: e >= 0, must="be >= 0")
    sat_width_reference: int = setting(
        0, "double-descent width rule: momentum and start epoch hold at this model width and are rescaled "
           "to the run's width by width_scaled (0: off)", check=lambda w: w >= 0, must="be >= 0")


@dataclass
class SATSCEOptions(SATOptions):
    sat_sce_a: float = setting(1.0, "weight a of SAT's forward term -t log p", check=lambda v: v >= 0, must="be >= 0")
    sat_sce_b: float = setting(0.3, "weight b of SAT's reverse term -p log t", check=lambda v: v >= 0, must="be >= 0")


def momentum_and_start(options: SATOptions, width: int) -> tuple[float, int]:
    """SAT's momentum and start epoch at model ``width``: as given, or by the width rule when
    ``sat_width_reference`` is set.

    >>> momentum_and_start(SATOptions(sat_momentum=0.9, sat_start_epoch=40, sat_width_reference=64), 16)
    (0.9740037464252967, 160)
    """
    if not options.sat_width_reference:
        return options.sat_momentum, options.sat_start_epoch
    return width_scaled(options.sat_momentum, options.sat_start_epoch, width, reference=options.sat_width_reference)


def _sat_starts_in_time(options, config) -> str | None:
    from selfadapt.models import model_width

    start = momentum_and_start(options, model_width(config.model.model, config.model.width))[1]
    problem = start_epoch_before_end(start, config.engine.epochs)
    if problem and options.sat_width_reference:
        problem += f" (the width rule moved it from {options.sat_start_epoch} at width {options.sat_width_reference})"
    return problem


def _build_sat(ctx, o: SATOptions, sce_weights=None):
    momentum, start = momentum_and_start(o, ctx.width)
    return LogitLoss(SelfAdaptiveTraining(ctx.labels, ctx.num_classes, momentum=momentum,
                                          start_epoch=start, sce_weights=sce_weights))


register(Method("ce", "cross-entropy on the given labels", lambda ctx, o: LogitLoss(CrossEntropy())))
register(Method("sat", "self-adaptive training (Huang et al., NeurIPS 2020)", _build_sat, SATOptions,
                validate=_sat_starts_in_time))
register(Method("sat-sce", "SAT with the symmetric loss -a t log p - b p log t", lambda ctx, o: _build_sat(
    ctx, o, sce_weights=(o.sat_sce_a, o.sat_sce_b)), SATSCEOptions, validate=_sat_starts_in_time))
