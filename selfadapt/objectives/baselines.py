"""Noisy-label baselines to compare SAT against (the SAT paper's Table 1 and more), each a small module.

Losses take the common ``(logits, targets, index, epoch)`` signature of :mod:`selfadapt.objectives.sat`
and compute in float32; the registry wraps them in :class:`~selfadapt.objectives.base.LogitLoss`.
:class:`Mixup` changes the input, so it is an :class:`~selfadapt.objectives.base.Objective` itself.
Co-teaching trains a second network and lives in :mod:`selfadapt.objectives.coteaching`.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from selfadapt.batch import StepOutput
from selfadapt.config.fields import setting
from selfadapt.errors import check_range
from selfadapt.objectives.base import LogitLoss, Objective
from selfadapt.objectives.method import Method
from selfadapt.targets import TargetStore


class LabelSmoothing(nn.Module):
    """Cross-entropy against ``(1 - eps) * onehot(y) + eps / C``.

    Szegedy et al., "Rethinking the Inception Architecture for Computer Vision", CVPR 2016
    (eps = 0.1 there and here).

    Example
    -------
    >>> loss = LabelSmoothing(0.1)(torch.randn(4, 10), torch.tensor([0, 1, 2, 3]))
    """

    def __init__(self, smoothing: float = 0.1):
        super().__init__()
        self.smoothing = check_range("label smoothing", smoothing, 0.0, 1.0, high_open=True)

    def forward(self, logits, targets, index=None, epoch=0):
        return F.cross_entropy(logits.float(), targets, label_smoothing=self.smoothing)


class SoftBootstrapping(nn.Module):
    """``-sum_j (beta * y_j + (1 - beta) * p_j) log p_j`` with ``p = softmax(logits)``.

    Reed et al., "Training Deep Neural Networks on Noisy Labels with Bootstrapping", ICLR 2015
    workshop (beta = 0.95 for soft bootstrapping on MNIST/TFD).

    The prediction in the target is *not* detached: Reed et al. present the soft variant as
    softmax regression with minimum-entropy regularisation (``beta * CE + (1 - beta) * H(p)``),
    which is what the undetached loss is. Detaching ``p`` would make the gradient of the second
    term ``(1 - beta) * (p - p) = 0``, i.e. the method would collapse to ``beta * CE``.

    Example
    -------
    >>> loss = SoftBootstrapping(0.95)(torch.randn(4, 10), torch.tensor([0, 1, 2, 3]))
    """

    def __init__(self, beta: float = 0.95):
        super().__init__()
        self.beta = check_range("bootstrapping beta", beta, 0.0, 1.0)

    def forward(self, logits, targets, index=None, epoch=0):
        log_prob = F.log_softmax(logits.float(), dim=1)
        entropy = -(log_prob.exp() * log_prob).sum(dim=1)
        return self.beta * F.nll_loss(log_prob, targets) + (1.0 - self.beta) * entropy.mean()


class HardBootstrapping(nn.Module):
    """Cross-entropy against ``beta * onehot(y) + (1 - beta) * onehot(argmax p)``.

    Reed et al., "Training Deep Neural Networks on Noisy Labels with Bootstrapping", ICLR 2015
    workshop (beta = 0.8 for hard bootstrapping). The argmax carries no gradient.

    Example
    -------
    >>> loss = HardBootstrapping(0.8)(torch.randn(4, 10), torch.tensor([0, 1, 2, 3]))
    """

    def __init__(self, beta: float = 0.8):
        super().__init__()
        self.beta = check_range("bootstrapping beta", beta, 0.0, 1.0)

    def forward(self, logits, targets, index=None, epoch=0):
        log_prob = F.log_softmax(logits.float(), dim=1)
        predicted = log_prob.detach().argmax(dim=1)
        return (self.beta * F.nll_loss(log_prob, targets)
                + (1.0 - self.beta) * F.nll_loss(log_prob, predicted))


class GeneralizedCrossEntropy(nn.Module):
    """The Lq loss ``(1 - p_y^q) / q``: CE as ``q -> 0``, MAE (up to a factor) at ``q = 1``.

    Zhang & Sabuncu, "Generalized Cross Entropy Loss for Training Deep Neural Networks with Noisy
    Labels", NeurIPS 2018 (q = 0.7; the untruncated loss).

    Example
    -------
    >>> loss = GeneralizedCrossEntropy(0.7)(torch.randn(4, 10), torch.tensor([0, 1, 2, 3]))
    """

    def __init__(self, q: float = 0.7):
        super().__init__()
        self.q = check_range("GCE q", q, 0.0, 1.0, low_open=True)

    def forward(self, logits, targets, index=None, epoch=0):
        log_p_y = F.log_softmax(logits.float(), dim=1).gather(1, targets[:, None]).squeeze(1)
        return ((1.0 - torch.exp(self.q * log_p_y)) / self.q).mean()


class SymmetricCrossEntropy(nn.Module):
    """``alpha * CE + beta * RCE`` with ``RCE = -sum_j p_j log y_j`` and ``log 0`` clamped to ``log 1e-4``.

    Wang et al., "Symmetric Cross Entropy for Robust Learning with Noisy Labels", ICCV 2019
    (CIFAR-10: alpha = 0.1, beta = 1.0; CIFAR-100: alpha = 6.0, beta = 0.1). As in the official
    code, ``p`` is clamped to ``[1e-7, 1]`` and the one-hot label to ``[1e-4, 1]``, so ``log 0``
    becomes ``ln 1e-4 = -9.21`` (the paper's ``A = -4`` is the same clamp written in base 10).

    Example
    -------
    >>> loss = SymmetricCrossEntropy(0.1, 1.0)(torch.randn(4, 10), torch.tensor([0, 1, 2, 3]))
    """

    def __init__(self, alpha: float = 0.1, beta: float = 1.0):
        super().__init__()
        self.alpha = check_range("SCE alpha", alpha, 0.0, float("inf"))
        self.beta = check_range("SCE beta", beta, 0.0, float("inf"))

    def forward(self, logits, targets, index=None, epoch=0):
        logits = logits.float()
        prob = F.softmax(logits, dim=1).clamp(1e-7, 1.0)
        label = F.one_hot(targets, logits.shape[1]).to(logits.dtype).clamp(1e-4, 1.0)
        reverse = -(prob * label.log()).sum(dim=1)
        return self.alpha * F.cross_entropy(logits, targets) + self.beta * reverse.mean()


class EarlyLearningRegularization(nn.Module):
    """ELR: ``CE(logits, y) + lambda * mean_i log(1 - <t_i, p_i>)`` with per-sample averaged targets.

    Liu et al., "Early-Learning Regularization Prevents Memorization of Noisy Labels", NeurIPS 2020
    (CIFAR-10: beta = 0.7, lambda = 3; CIFAR-100: beta = 0.9, lambda = 7). As in the official code,
    ``p = clamp(softmax(logits), 1e-4, 1 - 1e-4)``, the targets start at zero and are updated before
    the regulariser: ``t_i <- beta t_i + (1 - beta) p_i / sum_j p_ij`` (no gradient). The targets
    are a :class:`~selfadapt.targets.TargetStore`, so they travel with ``state_dict()``.

    Example
    -------
    >>> elr = EarlyLearningRegularization(num_samples=100, num_classes=10)
    >>> loss = elr(torch.randn(4, 10), torch.tensor([0, 1, 2, 3]), torch.tensor([7, 8, 9, 10]), epoch=0)
    """

    def __init__(self, num_samples: int, num_classes: int, beta: float = 0.7, lam: float = 3.0):
        super().__init__()
        self.beta = check_range("ELR beta", beta, 0.0, 1.0, high_open=True)
        self.lam = check_range("ELR lambda", lam, 0.0, float("inf"))
        self.store = TargetStore(torch.zeros(num_samples, num_classes), self.beta)

    @property
    def targets(self) -> torch.Tensor:
        """The ``N x C`` running averages of the normalised predictions."""
        return self.store.values

    def forward(self, logits, targets, index, epoch=0):
        logits = logits.float()
        prob = F.softmax(logits, dim=1).clamp(1e-4, 1.0 - 1e-4)
        detached = prob.detach()
        average = self.store.update(index, detached / detached.sum(dim=1, keepdim=True))
        regulariser = torch.log(1.0 - (average * prob).sum(dim=1)).mean()
        return F.cross_entropy(logits, targets) + self.lam * regulariser


class Mixup(Objective):
    """Train on ``lam * x + (1 - lam) * x[perm]`` with ``lam * CE(out, y) + (1 - lam) * CE(out, y[perm])``.

    Zhang et al., "mixup: Beyond Empirical Risk Minimization", ICLR 2018. ``lam ~ Beta(alpha, alpha)``
    once per batch, ``perm`` a random permutation of the batch (as in the official CIFAR code).
    Default ``alpha = 8``: the paper's corrupted-label experiment (CIFAR-10, PreAct ResNet-18,
    alpha in {1, 2, 8, 32}) found large alphas memorise fewer wrong labels, alpha = 8 best at 20%
    corruption and alpha = 32 at 50% and 80%; alpha = 1 is the clean-data CIFAR default.
    ``alpha = 0`` means ``lam = 1`` (plain CE).

    The objective owns a CPU ``torch.Generator`` for ``lam`` and ``perm``: a run is reproducible from
    ``seed`` and the generator state is part of ``state_dict()``, so a resumed run draws the same
    ``lam`` and ``perm`` as an uninterrupted one. Returns the logits of the mixed batch.

    Example
    -------
    >>> mixup = Mixup(alpha=8.0, seed=0)
    >>> model = torch.nn.Linear(4, 3)
    >>> from selfadapt.objectives.base import Batch
    >>> batch = Batch((torch.randn(5, 4),), torch.tensor([0, 1, 2, 0, 1]), torch.arange(5))
    >>> out = mixup.training_step(model, batch, 0)
    >>> out.logits.shape
    torch.Size([5, 3])
    """

    def __init__(self, alpha: float = 8.0, seed: int = 0):
        super().__init__()
        self.alpha = check_range("mixup alpha", alpha, 0.0, float("inf"))
        self.generator = torch.Generator().manual_seed(int(seed))

    def sample(self, batch_size: int) -> tuple[float, torch.Tensor]:
        """Draw the next ``(lam, perm)`` from the objective's generator."""
        if self.alpha > 0:
            # Beta(a, a) as G1 / (G1 + G2) with G ~ Gamma(a): torch.distributions takes no generator.
            gammas = torch._standard_gamma(torch.full((2,), self.alpha, dtype=torch.float64),
                                           generator=self.generator)
            lam = float(gammas[0] / gammas.sum())
        else:
            lam = 1.0
        return lam, torch.randperm(batch_size, generator=self.generator)

    def training_step(self, model, batch, epoch):
        x, y = batch.x, batch.y
        lam, perm = self.sample(x.shape[0])
        perm = perm.to(x.device)
        logits = model(lam * x + (1.0 - lam) * x[perm])
        out = logits.float()
        loss = lam * F.cross_entropy(out, y) + (1.0 - lam) * F.cross_entropy(out, y[perm])
        return StepOutput(loss, logits)

    def get_extra_state(self):
        return {"generator": self.generator.get_state()}

    def set_extra_state(self, state):
        self.generator.set_state(state["generator"].cpu())


# Registry entries. Defaults are the papers' CIFAR-10 values (see each class's docstring); the
# option checks repeat the constructors' so a bad value is refused before any data is read.
_unit = dict(check=lambda v: 0.0 <= v <= 1.0, must="lie in [0, 1]")
_non_negative = dict(check=lambda v: v >= 0, must="be >= 0")


@dataclass
class LSOptions:
    ls_smoothing: float = setting(0.1, "label smoothing epsilon", check=lambda v: 0.0 <= v < 1.0, must="lie in [0, 1)")


@dataclass
class BootstrapOptions:
    bootstrap_beta: float = setting(0.95, "weight of the given label; 1 - beta goes to the prediction (soft: the "
                                          "predicted distribution, hard: the predicted class)", **_unit)


@dataclass
class GCEOptions:
    gce_q: float = setting(0.7, "exponent q of the Lq loss", check=lambda v: 0.0 < v <= 1.0, must="lie in (0, 1]")


@dataclass
class SCEOptions:
    sce_alpha: float = setting(0.1, "weight of cross-entropy (CIFAR-100: 6.0)", **_non_negative)
    sce_beta: float = setting(1.0, "weight of reverse cross-entropy (CIFAR-100: 0.1)", **_non_negative)


@dataclass
class ELROptions:
    elr_beta: float = setting(0.7, "momentum of the target averages (CIFAR-100: 0.9)",
                              check=lambda v: 0.0 <= v < 1.0, must="lie in [0, 1)")
    elr_lambda: float = setting(3.0, "weight of the regulariser (CIFAR-100: 7)", **_non_negative)


@dataclass
class MixupOptions:
    mixup_alpha: float = setting(8.0, "Beta(alpha, alpha) of the mixing weight (0: plain CE)", **_non_negative)


METHODS = [
    Method("ls", "label smoothing (Szegedy et al. 2016)",
           lambda ctx, o: LogitLoss(LabelSmoothing(o.ls_smoothing)), LSOptions),
    Method("bootstrap-soft", "soft bootstrapping (Reed et al. 2015)",
           lambda ctx, o: LogitLoss(SoftBootstrapping(o.bootstrap_beta)), BootstrapOptions),
    Method("bootstrap-hard", "hard bootstrapping (Reed et al. 2015)",
           lambda ctx, o: LogitLoss(HardBootstrapping(o.bootstrap_beta)), BootstrapOptions,
           {"bootstrap_beta": 0.8}),
    Method("gce", "generalized cross-entropy (Zhang & Sabuncu 2018)",
           lambda ctx, o: LogitLoss(GeneralizedCrossEntropy(o.gce_q)), GCEOptions),
    Method("sce", "symmetric cross-entropy (Wang et al. 2019)",
           lambda ctx, o: LogitLoss(SymmetricCrossEntropy(o.sce_alpha, o.sce_beta)), SCEOptions),
    Method("elr", "early-learning regularization (Liu et al. 2020)", lambda ctx, o: LogitLoss(
        EarlyLearningRegularization(len(ctx.labels), ctx.num_classes, beta=o.elr_beta, lam=o.elr_lambda)), ELROptions),
    Method("mixup", "mixup (Zhang et al. 2018); its generator is seeded by the data seed",
           lambda ctx, o: Mixup(o.mixup_alpha, seed=ctx.seed), MixupOptions),
]
