"""Self-adaptive training for classification (Huang, Zhang & Zhang, NeurIPS 2020) and plain cross-entropy.

Every loss here has the signature ``loss(logits, targets, index, epoch)``, so it drops into any
training loop that knows the dataset index of each sample.
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from selfadapt import distributed
from selfadapt.config.fields import setting
from selfadapt.errors import SelfAdaptError
from selfadapt.label_errors import LabelIssues, suspected_label_errors
from selfadapt.objectives.auto_start import AutoStart, momentum_for
from selfadapt.objectives.base import LogitLoss
from selfadapt.objectives.method import Method, start_epoch_before_end
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

    By default, as on the command line, ``start_epoch="auto"`` and ``momentum="auto"`` (which need
    ``epochs``, the length of the run) choose both from the noisy training data
    (:mod:`selfadapt.objectives.auto_start`): a held-out share of the samples is left out of the
    loss while SAT waits, and SAT starts once the model's accuracy on them against their given
    labels stops improving; call :meth:`end_epoch` after each epoch (otherwise the first call of
    the next epoch closes it). The paper's values are ``momentum=0.9, start_epoch=60`` of 200 epochs.
    """

    def __init__(self, labels: torch.Tensor, num_classes: int, momentum: float | str = "auto",
                 start_epoch: int | str = "auto", *, sce_weights: tuple[float, float] | None = None,
                 dtype: torch.dtype = torch.float32, epochs: int | None = None, holdout: float = 0.1,
                 patience: int = 3, residue: float = 0.01, seed: int = 0):
        super().__init__()
        auto_start, self.auto_momentum = start_epoch == "auto", momentum == "auto"
        if (auto_start or self.auto_momentum) and not epochs:
            raise ValueError("SelfAdaptiveTraining chooses its start epoch and momentum from the run's length: give "
                             "epochs= (the number of epochs you train), or give start_epoch= and momentum= (the "
                             "paper: 60 and 0.9 of 200 epochs)")
        if not self.auto_momentum and not (isinstance(momentum, (int, float)) and 0.0 <= momentum < 1.0):
            raise ValueError(f"SAT momentum must lie in [0, 1) or be 'auto', got {momentum!r}")
        if not auto_start and not (isinstance(start_epoch, int) and start_epoch >= 0):
            raise ValueError(f"SAT start epoch must be an integer >= 0 or 'auto', got {start_epoch!r}")
        labels = torch.as_tensor(labels, dtype=torch.long)
        self.fixed_start = None if auto_start else int(start_epoch)
        self.epochs, self.residue = epochs, residue
        self.sce_weights = sce_weights
        self.auto = AutoStart(labels, num_classes, epochs=epochs, holdout=holdout, patience=patience,
                              seed=seed) if auto_start else None
        if not self.auto_momentum:
            chosen = float(momentum)
        elif auto_start:
            chosen = -1.0  # chosen with the start epoch
        else:
            chosen = momentum_for(epochs - self.fixed_start, residue)
        self.store = TargetStore(F.one_hot(labels, num_classes), max(chosen, 0.0), dtype=dtype,
                                 label_distributions=True)
        self.register_buffer("given_labels", labels.clone())
        # the momentum in use (-1: not chosen yet) and the last epoch a batch was seen in (-1: none)
        self.register_buffer("schedule", torch.tensor([chosen, -1.0], dtype=torch.float64))
        self.register_load_state_dict_post_hook(lambda module, keys: module._use_momentum())

    @property
    def targets(self) -> torch.Tensor:
        """The ``N x C`` corrected label distributions."""
        return self.store.values

    @property
    def start_epoch(self) -> int | None:
        """The start epoch: fixed, or chosen by the automatic rule (``None`` until it has chosen)."""
        return self.fixed_start if self.auto is None else self.auto.start_epoch

    @property
    def momentum(self) -> float | None:
        """The target momentum in use (``None`` while the automatic rule has not chosen it)."""
        return None if self.schedule[0] < 0 else float(self.schedule[0])

    @property
    def updates(self) -> int:
        """How many epochs have updated the targets so far."""
        start, last = self.start_epoch, int(self.schedule[1])
        return 0 if start is None else max(0, last - start + 1)

    def _use_momentum(self) -> None:
        if self.momentum is not None:
            self.store.momentum = self.momentum

    def end_epoch(self, epoch: int) -> dict:
        """Close ``epoch`` for the automatic rule; returns its metrics (held-out accuracy, and the
        start epoch and momentum once chosen). Nothing to do for a fixed start epoch."""
        if self.auto is None or self.auto.start_epoch is not None:
            return {}
        metrics = self.auto.close_epoch(epoch)
        if self.auto.start_epoch is not None and self.auto_momentum:
            self.schedule[0] = momentum_for(self.epochs - self.auto.start_epoch, self.residue)
            self._use_momentum()
        if self.auto.start_epoch is not None:
            metrics["sat_momentum"] = self.momentum
        return metrics

    def settings_used(self) -> dict:
        """The momentum and start epoch this run trains with (after any width rule or automatic choice), for its summary."""
        return {"sat_momentum": self.momentum, "sat_start_epoch": self.start_epoch}

    def forward(self, logits: torch.Tensor, targets: torch.Tensor, index: torch.Tensor,
                epoch: int, *, update_from: torch.Tensor | None = None) -> torch.Tensor:
        """The loss on ``logits``; the targets move towards ``softmax(update_from)`` where given
        (e.g. clean predictions while the loss is on adversarial examples), else ``softmax(logits)``."""
        classes = self.store.values.shape[1]
        if logits.dim() != 2 or logits.shape[1] != classes:
            raise SelfAdaptError(f"SAT was built for {classes} classes, but the logits have shape "
                                 f"{tuple(logits.shape)}: the model must output one logit per class")
        self._check_index(index)
        try:
            return self._loss(logits.float(), targets, index, epoch, update_from)
        except IndexError:  # a gather out of the table (the CPU raises it; checking first would wait on a GPU)
            raise self._outside(index) from None

    def _check_index(self, index: torch.Tensor) -> None:
        """A negative index would silently read another sample's target: refuse it, without waiting
        for the device (on a GPU the assertion fails asynchronously, as a device-side assert)."""
        try:
            torch._assert_async((index >= 0).all(), "negative dataset index passed to SelfAdaptiveTraining")
        except RuntimeError:
            raise self._outside(index) from None

    def _outside(self, index: torch.Tensor) -> SelfAdaptError:
        outside = index[(index < 0) | (index >= len(self.given_labels))].tolist()
        return SelfAdaptError(
            f"dataset index {outside[0] if outside else '?'} is outside the target table of {len(self.given_labels)} "
            f"samples (indices 0..{len(self.given_labels) - 1}): pass each sample's position in the training set, "
            "e.g. with selfadapt.IndexedDataset(dataset)")

    def _loss(self, logits, targets, index, epoch, update_from=None):
        if self.auto is not None and epoch > 0:
            self.end_epoch(epoch - 1)  # a loop that never calls end_epoch: close the last epoch now
        self.schedule[1].clamp_(min=epoch)
        start = self.start_epoch
        if start is None:
            return self._held_out_cross_entropy(logits, targets, index, epoch)
        if epoch < start:
            return F.cross_entropy(logits, targets)
        reference = logits if update_from is None else update_from.float()
        soft = self.store.update(index, F.softmax(reference.detach(), dim=1))
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

    def _held_out_cross_entropy(self, logits, targets, index, epoch):
        """Cross-entropy on the batch's samples outside the held-out set; the held-out ones are counted."""
        self.auto.record(index, logits.detach().argmax(1) == targets, epoch)
        keep = ~self.auto.held_out[index]
        per_sample = F.cross_entropy(logits, targets, reduction="none")
        return (per_sample * keep).sum() / keep.sum().clamp_min(1)

    def suspected_label_errors(self) -> LabelIssues:
        """Samples whose corrected label differs from the given one, most suspicious first.

        Warns when the targets cannot have moved enough to flag anything (SAT never started, or
        the given label still weighs more than half of every target).
        """
        problem = too_few_updates(self.start_epoch, self.updates, self.momentum)
        if problem:
            warnings.warn(problem, stacklevel=2)
        return suspected_label_errors(self.targets, self.given_labels)


def too_few_updates(start_epoch: int | None, updates: int, momentum: float | None) -> str | None:
    """Why targets after ``updates`` epochs at ``momentum`` cannot flag a label (or ``None``): the
    given label keeps weight ``momentum ** updates`` in every target, so above 1/2 no argmax can move.

    >>> too_few_updates(4, 8, 0.9) is None, too_few_updates(60, 0, 0.9)[:26]
    (True, 'SAT never updated a target')
    """
    if start_epoch is None or updates == 0:
        when = "its start epoch was not chosen yet" if start_epoch is None else f"it starts at epoch {start_epoch}"
        return f"SAT never updated a target ({when}), so no label can be flagged: train past the start epoch"
    residue = momentum ** updates
    if residue > 0.5:
        return (f"the targets had only {updates} update(s) at momentum {momentum:g}: the given label still weighs "
                f"{residue:.2f} in every target, so no label can be flagged; train more epochs after the start "
                f"epoch or lower the momentum ('auto' ties it to the epochs left)")
    return None


def width_scaled(momentum: float, start_epoch: int, width: int, reference: int = 64) -> tuple[float, int]:
    """The double-descent width rule: ``f = reference / width``, ``m -> m^(1/f)``, ``Es -> int(Es f)``.

    >>> width_scaled(0.9, 40, 64)
    (0.9, 40)
    """
    factor = reference / width
    return momentum ** (1.0 / factor), int(start_epoch * factor)


@dataclass
class SATMomentumOption:
    """SAT's target momentum, declared once for every method built on SAT's targets."""

    sat_momentum: float | Literal["auto"] = setting(
        "auto", "SAT target momentum alpha; auto: min(0.6, 0.01^(1/epochs left)) (the paper: 0.9)",
        check=lambda m: m == "auto" or 0.0 <= m < 1.0, must="lie in [0, 1) or be auto")


@dataclass
class SATScheduleOptions(SATMomentumOption):
    """When SAT starts, declared once for every method that starts SAT after cross-entropy."""

    sat_start_epoch: int | Literal["auto"] = setting(
        "auto", "SAT start epoch Es (0-based; cross-entropy before it); auto: once accuracy on a held-out "
                "share of the noisy training data stops improving (the paper: 60 of 200)",
        check=lambda e: e == "auto" or e >= 0, must="be >= 0 or auto")
    sat_holdout: float = setting(0.1, "auto start: share of the training samples held out of the loss until SAT "
                                      "starts (at least 200 samples, at most a quarter)",
                                 check=lambda v: 0.0 < v <= 0.25, must="lie in (0, 0.25]")
    sat_patience: int = setting(3, "auto start: epochs without a better held-out accuracy before SAT starts",
                                check=lambda v: v >= 1, must="be >= 1")


@dataclass
class SATOptions(SATScheduleOptions):
    sat_width_reference: int = setting(
        0, "double-descent width rule: momentum and start epoch hold at this model width and are rescaled "
           "to the run's width by width_scaled (0: off)", check=lambda w: w >= 0, must="be >= 0")


@dataclass
class SATSCEOptions(SATOptions):
    sat_sce_a: float = setting(1.0, "weight a of SAT's forward term -t log p", check=lambda v: v >= 0, must="be >= 0")
    sat_sce_b: float = setting(0.3, "weight b of SAT's reverse term -p log t", check=lambda v: v >= 0, must="be >= 0")


def momentum_and_start(options: SATOptions, width: int) -> tuple[float | str, int | str]:
    """SAT's momentum and start epoch at model ``width``: as given (numbers or ``"auto"``), or by
    the width rule when ``sat_width_reference`` is set (numbers only, see :func:`_sat_starts_in_time`).

    >>> momentum_and_start(SATOptions(sat_momentum=0.9, sat_start_epoch=40, sat_width_reference=64), 16)
    (0.9740037464252967, 160)
    """
    if not options.sat_width_reference:
        return options.sat_momentum, options.sat_start_epoch
    return width_scaled(options.sat_momentum, options.sat_start_epoch, width, reference=options.sat_width_reference)


def _sat_starts_in_time(options, config) -> str | None:
    from selfadapt.models import model_width

    if options.sat_width_reference and "auto" in (options.sat_momentum, options.sat_start_epoch):
        return ("sat_width_reference rescales a given momentum and start epoch: give sat_momentum and "
                "sat_start_epoch as numbers, not auto")

    width = model_width(config.model.model, config.model.width)
    if options.sat_width_reference and width is None:
        return f"sat_width_reference needs a model with a width; {config.model.model} has none"
    start = momentum_and_start(options, width)[1]
    problem = start_epoch_before_end(start, config.engine.epochs)
    if problem and options.sat_width_reference:
        problem += f" (the width rule moved it from {options.sat_start_epoch} at width {options.sat_width_reference})"
    return problem


def _build_sat(ctx, o: SATOptions, sce_weights=None):
    momentum, start = momentum_and_start(o, ctx.width)
    return LogitLoss(SelfAdaptiveTraining(ctx.labels, ctx.num_classes, momentum=momentum, start_epoch=start,
                                          sce_weights=sce_weights, epochs=ctx.epochs, holdout=o.sat_holdout,
                                          patience=o.sat_patience, seed=ctx.seed))


METHODS = [
    Method("ce", "cross-entropy on the given labels", lambda ctx, o: LogitLoss(CrossEntropy())),
    Method("sat", "self-adaptive training (Huang et al., NeurIPS 2020)", _build_sat, SATOptions,
           validate=_sat_starts_in_time),
    Method("sat-sce", "SAT with the symmetric loss -a t log p - b p log t", lambda ctx, o: _build_sat(
        ctx, o, sce_weights=(o.sat_sce_a, o.sat_sce_b)), SATSCEOptions, validate=_sat_starts_in_time),
]
