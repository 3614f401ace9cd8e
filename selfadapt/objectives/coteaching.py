"""Co-teaching: two networks each pick their small-loss samples to train the other.

Han et al., "Co-teaching: Robust Training of Deep Neural Networks with Extremely Noisy Labels",
NeurIPS 2018.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from selfadapt.batch import StepOutput
from selfadapt.config.fields import setting
from selfadapt.errors import SelfAdaptError, check_range
from selfadapt.objectives.base import Objective
from selfadapt.objectives.method import Method


def small_loss_selection(losses: torch.Tensor, forget_rate: float) -> torch.Tensor:
    """Indices of the ``floor((1 - forget_rate) * B)`` smallest losses (at least one), smallest first.

    >>> small_loss_selection(torch.tensor([0.3, 0.1, 2.0, 0.2]), forget_rate=0.5)
    tensor([1, 3])
    """
    # The 1e-9 keeps float round-off from dropping a sample: (1 - 0.9) * 10 = 0.99999...
    keep = max(1, math.floor((1.0 - forget_rate) * losses.shape[0] + 1e-9))
    return torch.argsort(losses.detach(), stable=True)[:keep]


class CoTeaching(Objective):
    """The model and a peer network trained on each other's small-loss samples.

    Each step both networks see ``x``; each keeps the ``1 - R(e)`` fraction of the batch with its
    smallest per-sample cross-entropy, and the *other* network is trained on it:
    ``loss = CE(model on peer's selection) + CE(peer on model's selection)``. The parameters are
    disjoint, so one optimizer over ``model.parameters()`` and ``objective.parameters()`` does what
    the paper's two optimizers do. The forget rate grows linearly to the noise rate ``tau``:
    ``R(e) = tau * min(e / T_k, 1) ** c`` (paper: T_k = 10, c = 1; ``e`` is the 0-based epoch, so
    the first epoch keeps every sample). The peer follows the model's train/eval mode.

    Example
    -------
    >>> objective = CoTeaching(torch.nn.Linear(4, 3), forget_rate=0.2)
    >>> model = torch.nn.Linear(4, 3)
    >>> from selfadapt.objectives.base import Batch
    >>> out = objective.training_step(model, Batch((torch.randn(8, 4),), torch.randint(0, 3, (8,)), torch.arange(8)), 12)
    >>> out.loss.backward()
    >>> objective.forget_rate_at(5)
    0.1
    """

    def __init__(self, peer: nn.Module, forget_rate: float = 0.2, gradual_epochs: int = 10,
                 exponent: float = 1.0):
        super().__init__()
        self.peer = peer
        self.forget_rate = check_range("co-teaching forget rate", forget_rate, 0.0, 1.0, high_open=True)
        if int(gradual_epochs) != gradual_epochs or gradual_epochs < 0:
            raise SelfAdaptError(f"co-teaching T_k must be a non-negative integer, got {gradual_epochs}")
        self.gradual_epochs = int(gradual_epochs)
        self.exponent = check_range("co-teaching exponent c", exponent, 0.0, float("inf"), low_open=True)

    def forget_rate_at(self, epoch: int) -> float:
        """``R(e) = tau * min(e / T_k, 1) ** c`` for the 0-based epoch ``e``."""
        ramp = 1.0 if self.gradual_epochs == 0 else min(epoch / self.gradual_epochs, 1.0)
        return self.forget_rate * ramp ** self.exponent

    def training_step(self, model, batch, epoch):
        x, y = batch.x, batch.y
        self.peer.train(model.training)
        logits = model(x)
        losses = F.cross_entropy(logits.float(), y, reduction="none")
        peer_losses = F.cross_entropy(self.peer(x).float(), y, reduction="none")
        rate = self.forget_rate_at(epoch)
        chosen_by_model = small_loss_selection(losses, rate)
        chosen_by_peer = small_loss_selection(peer_losses, rate)
        loss = losses[chosen_by_peer].mean() + peer_losses[chosen_by_model].mean()
        return StepOutput(loss, logits)


@dataclass
class CoTeachingOptions:
    coteaching_forget_rate: float | None = setting(
        None, "final forget rate tau (default: the run's realised label-error rate)",
        check=lambda v: v is None or 0.0 <= v < 1.0, must="lie in [0, 1)")
    coteaching_tk: int = setting(10, "epochs over which the forget rate ramps up to tau", check=lambda v: v >= 0,
                                 must="be >= 0")
    coteaching_exponent: float = setting(1.0, "exponent c of the ramp", check=lambda v: v > 0, must="be > 0")


def _build(ctx, o: CoTeachingOptions) -> CoTeaching:
    if ctx.model_factory is None:
        raise SelfAdaptError("coteaching trains a peer network and needs MethodContext.model_factory")
    tau = o.coteaching_forget_rate if o.coteaching_forget_rate is not None else ctx.label_error_rate
    if tau is None:
        raise SelfAdaptError("coteaching's forget rate defaults to the run's label-error rate, which is unknown "
                             "here (no injected or human noise): give --coteaching-forget-rate")
    return CoTeaching(ctx.model_factory(), forget_rate=tau, gradual_epochs=o.coteaching_tk,
                      exponent=o.coteaching_exponent)


def _forget_rate_known(options, config) -> str | None:
    if options.coteaching_forget_rate is None and config.data.noise == "none":
        return ("coteaching's forget rate defaults to the run's label-error rate, which is unknown without "
                "injected or human noise: give --coteaching-forget-rate")
    return None


METHODS = [
    Method("coteaching", "two networks trained on each other's small-loss samples (Han et al. 2018)",
           _build, CoTeachingOptions, validate=_forget_rate_known),
]
