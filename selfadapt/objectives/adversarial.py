"""Adversarial training (Huang et al., TPAMI 2022, section 5): TRADES, TRADES+SAT, PGD-AT (Madry et al.) and PGD-AT+SAT.

Each objective owns its inner attack (:mod:`selfadapt.attacks`), run with the model frozen in eval
mode; the outer loss is computed back in the mode the engine set (train). Images stay in [0, 1]
throughout; the model normalises them itself.

- ``trades``: ``CE(f(x), y) + beta * KL(softmax f(x) || softmax f(x_adv)) / B`` with ``x_adv`` from
  TRADES' KL attack (the authors' ``losses/trades.py``; beta 6, eps 0.031, 10 steps of 0.007).
- ``trades-sat``: the natural term is SAT's loss (:class:`SelfAdaptiveTraining`): targets move
  towards the clean predictions only, from ``sat_start_epoch`` (0-based) on; the robust term is
  unchanged (the authors' ``TRADES_SAT``).
- ``pgd-at``: ``CE(f(x_adv), y)`` with ``x_adv`` from PGD on the cross-entropy (uniform random start).
- ``pgd-at-sat``: SAT's weighted soft-target loss on ``f(x_adv)``, its targets moved towards the
  clean predictions ``softmax f(x)`` (one extra forward without gradient, in train mode, as
  TRADES+SAT's clean forward), so the targets, as in TRADES+SAT, never follow adversarial predictions.

>>> from selfadapt.batch import Batch
>>> model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(4, 3))
>>> trades = TRADES(CrossEntropy(), beta=6.0, eps=0.031, steps=2, step_size=0.007)
>>> out = trades.training_step(model, Batch((torch.rand(5, 1, 2, 2),), torch.randint(0, 3, (5,)), torch.arange(5)), 0)
>>> sorted(out.metrics)
['natural_loss', 'robust_loss']
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from selfadapt.attacks import pgd, trades_attack
from selfadapt.batch import StepOutput
from selfadapt.config.fields import setting
from selfadapt.objectives.base import Objective
from selfadapt.objectives.method import Method, start_epoch_before_end
from selfadapt.objectives.sat import CrossEntropy, SATScheduleOptions, SelfAdaptiveTraining


def trades_kl(logits_adv: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
    """``KL(softmax(logits) || softmax(logits_adv))`` summed over classes, averaged over the batch
    (TRADES' robust term; the gradient flows through both)."""
    return F.kl_div(F.log_softmax(logits_adv.float(), dim=1), F.softmax(logits.float(), dim=1),
                    reduction="sum") / len(logits)


class NaturalLossObjective(Objective):
    """An adversarial objective around a ``natural`` loss (cross-entropy or SAT): the loss's
    end-of-epoch decisions (SAT's automatic start) and derived settings pass through."""

    def end_epoch(self, epoch):
        end = getattr(self.natural, "end_epoch", None)
        return end(epoch) if end is not None else {}

    def settings_used(self) -> dict:
        return self.natural.settings_used() if hasattr(self.natural, "settings_used") else {}


class TRADES(NaturalLossObjective):
    """``natural(f(x), y, index, epoch) + beta * trades_kl(f(x_adv), f(x))`` (Zhang et al., 2019).

    ``natural`` is any loss with the ``(logits, targets, index, epoch)`` signature: cross-entropy
    for TRADES, :class:`SelfAdaptiveTraining` for TRADES+SAT (its targets then follow the clean
    predictions, the only logits it sees). Logged per epoch: ``natural_loss``, ``robust_loss``.
    """

    def __init__(self, natural: nn.Module, *, beta: float, eps: float, steps: int, step_size: float):
        super().__init__()
        self.natural = natural
        self.beta, self.eps, self.steps, self.step_size = beta, eps, steps, step_size

    def training_step(self, model, batch, epoch):
        x_adv = trades_attack(model, batch.x, eps=self.eps, steps=self.steps, step_size=self.step_size)
        logits = model(batch.x)
        natural = self.natural(logits, batch.y, batch.index, epoch)
        robust = trades_kl(model(x_adv), logits)
        return StepOutput(natural + self.beta * robust, logits,
                          {"natural_loss": natural.detach(), "robust_loss": robust.detach()})


class PGDAdversarialTraining(NaturalLossObjective):
    """The loss on PGD examples (Madry et al., 2018): ``CE(f(x_adv), y)``; with
    ``natural=SelfAdaptiveTraining(...)`` SAT's loss on ``f(x_adv)`` whose targets follow the clean
    predictions. The logits returned (train accuracy) are the adversarial examples'."""

    def __init__(self, natural: nn.Module, *, eps: float, steps: int, step_size: float):
        super().__init__()
        self.natural = natural
        self.eps, self.steps, self.step_size = eps, steps, step_size

    def training_step(self, model, batch, epoch):
        x_adv = pgd(model, batch.x, batch.y, eps=self.eps, steps=self.steps, step_size=self.step_size)
        logits_adv = model(x_adv)
        if isinstance(self.natural, SelfAdaptiveTraining):
            clean, start = None, self.natural.start_epoch
            if start is not None and epoch >= start:  # None: the automatic start has not chosen yet
                with torch.no_grad():
                    clean = model(batch.x)
            loss = self.natural(logits_adv, batch.y, batch.index, epoch, update_from=clean)
        else:
            loss = self.natural(logits_adv, batch.y, batch.index, epoch)
        return StepOutput(loss, logits_adv)


# --------------------------------------------------------------------------------------------
# registry entries


@dataclass
class AttackOptions:
    attack_eps: float = setting(0.031, "L-inf radius of the training attack (pixels in [0, 1])",
                                check=lambda v: 0.0 <= v <= 1.0, must="lie in [0, 1]")
    attack_steps: int = setting(10, "steps of the training attack", check=lambda v: v >= 1, must="be >= 1")
    attack_step_size: float = setting(0.007, "step size of the training attack", check=lambda v: v > 0, must="be > 0")


@dataclass
class TRADESOptions(AttackOptions):
    trades_beta: float = setting(6.0, "TRADES weight beta of the robust KL term", check=lambda v: v >= 0,
                                 must="be >= 0")


@dataclass
class TRADESSATOptions(TRADESOptions, SATScheduleOptions):
    """TRADES' and SAT's options."""


@dataclass
class PGDATSATOptions(AttackOptions, SATScheduleOptions):
    """PGD-AT's and SAT's options."""


# The authors' scripts count epochs from 1 and start SAT at their epoch 70 (`epoch < es` is
# cross-entropy): that is our 0-based epoch 69; alpha is theirs, 0.9.
SAT_DEFAULTS = {"sat_momentum": 0.9, "sat_start_epoch": 69}


def _attack(o: AttackOptions) -> dict:
    return {"eps": o.attack_eps, "steps": o.attack_steps, "step_size": o.attack_step_size}


def _sat(ctx, o) -> SelfAdaptiveTraining:
    return SelfAdaptiveTraining(ctx.labels, ctx.num_classes, momentum=o.sat_momentum, start_epoch=o.sat_start_epoch,
                                epochs=ctx.epochs, holdout=o.sat_holdout, patience=o.sat_patience, seed=ctx.seed)


def _sat_starts_in_time(options, config) -> str | None:
    return start_epoch_before_end(options.sat_start_epoch, config.engine.epochs)


EVALUATORS = ("accuracy", "pgd")

METHODS = [
    Method("trades", "TRADES adversarial training (Zhang et al., 2019)", lambda ctx, o: TRADES(
        CrossEntropy(), beta=o.trades_beta, **_attack(o)), TRADESOptions, evaluators=EVALUATORS),
    Method("trades-sat", "TRADES with SAT's loss as the natural term (targets from clean predictions)",
           lambda ctx, o: TRADES(_sat(ctx, o), beta=o.trades_beta, **_attack(o)), TRADESSATOptions, SAT_DEFAULTS,
           evaluators=EVALUATORS, validate=_sat_starts_in_time),
    Method("pgd-at", "PGD adversarial training (Madry et al., 2018)", lambda ctx, o: PGDAdversarialTraining(
        CrossEntropy(), **_attack(o)), AttackOptions, evaluators=EVALUATORS),
    Method("pgd-at-sat", "PGD-AT with SAT's loss on the adversarial examples (targets from clean predictions)",
           lambda ctx, o: PGDAdversarialTraining(_sat(ctx, o), **_attack(o)), PGDATSATOptions, SAT_DEFAULTS,
           evaluators=EVALUATORS, validate=_sat_starts_in_time),
]
