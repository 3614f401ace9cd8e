"""Selective classification: learn to abstain (Huang et al., NeurIPS 2020, section 4).

Every objective here ranks samples for abstention with scores of its own, higher meaning less
confident (abstain first), and hands them to the risk-coverage evaluators through
``predict_with_scores(model, x) -> (class logits, {score name: tensor})``:

- ``sat-selective``: self-adaptive training with an abstain class (Huang et al., NeurIPS 2020);
  C+1 outputs, score ``abstain`` (softmax over C+1, last column);
- ``sat-selective-em``: the same plus entropy minimisation (Feng et al., ICLR 2023), score ``sr``;
- ``deep-gamblers``: ``-log(p_y + p_abstain / o)`` (Liu et al., NeurIPS 2019), score ``abstain``;
- ``selectivenet``: a selection head g and an auxiliary head h on the shared features (Geifman and
  El-Yaniv, ICML 2019), one model per target coverage, score ``g`` (``1 - g(x)``).

Each also reports ``sr`` (``1 - max softmax`` over the C class logits, exact near 0) and ``entropy`` (of that
softmax). Objectives without scores of their own (``ce`` and every other method) are scored by
those two through :func:`predict_with_scores`.

>>> import torch
>>> model = torch.nn.Linear(4, 3 + 1)            # C + 1 outputs for 3 classes
>>> sat = SATSelective(torch.tensor([0, 2, 1]), num_classes=3, pretrain_epochs=0, model=model)
>>> logits, scores = sat.predict_with_scores(model, torch.randn(2, 4))
>>> logits.shape, sorted(scores)
(torch.Size([2, 3]), ['abstain', 'entropy', 'sr'])
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from selfadapt.batch import StepOutput
from selfadapt.config.fields import setting
from selfadapt.errors import SelfAdaptError
from selfadapt.objectives.auto_start import momentum_for
from selfadapt.objectives.base import Objective
from selfadapt.objectives.method import Method, start_epoch_before_end
from selfadapt.objectives.sat import SATMomentumOption
from selfadapt.targets import TargetStore

SELECTIVE_EVALUATORS = ("accuracy", "selective-val", "risk-coverage")


def softmax_scores(class_logits: torch.Tensor) -> dict[str, torch.Tensor]:
    """``sr`` = 1 - max softmax and ``entropy`` of the softmax (nats), per sample; higher = less confident.

    ``sr`` is computed as ``-expm1(max log_softmax)`` with the max log-softmax taken as
    ``-log1p(sum_{j != top} exp(z_j - z_top))``: in float32 ``1 - max softmax`` (and torch's
    ``log_softmax``, which rounds ``1 + eps`` first) is 0 or a multiple of 6e-8 for every
    confident sample, tying thousands of test scores; this keeps their ranking (to ``eps`` ~ 1e-38).

    >>> scores = softmax_scores(torch.tensor([[0.0, 0.0, 0.0, 0.0], [30.0, 0.0, 0.0, 0.0]]))
    >>> [f"{v:.4g}" for v in scores["sr"].tolist()], round(scores["entropy"][0].item(), 4)
    (['0.75', '2.807e-13'], 1.3863)
    """
    logits = class_logits.float()
    log_p = F.log_softmax(logits, dim=1)
    return {"sr": softmax_response(logits), "entropy": softmax_entropy(log_p)}


def softmax_response(logits: torch.Tensor) -> torch.Tensor:
    """``1 - max softmax`` per row, exact near 0: ``-expm1(-log1p(eps))`` with ``eps`` the sum of
    ``exp(z_j - z_top)`` over every class but one top class (a tie for the top adds ``exp(0) = 1``)."""
    top = logits.argmax(dim=1, keepdim=True)
    rest = (logits - logits.gather(1, top)).exp().scatter(1, top, 0.0).sum(dim=1)
    return -torch.expm1(-torch.log1p(rest)) + 0.0      # + 0.0: -0.0 -> 0.0


def softmax_entropy(log_p: torch.Tensor) -> torch.Tensor:
    """``-sum p log p`` per row from log-probabilities (0 log 0 = 0)."""
    return -(log_p.exp() * log_p).nan_to_num().sum(dim=1)


def predict_with_scores(objective: nn.Module, model: nn.Module, x: torch.Tensor):
    """``(class logits, scores)`` of any objective: its own ``predict_with_scores`` where it has one,
    else ``objective.predict`` scored by :func:`softmax_scores`."""
    own = getattr(objective, "predict_with_scores", None)
    if own is not None:
        return own(model, x)
    logits = objective.predict(model, x)
    return logits, softmax_scores(logits)


def primary_score(objective: nn.Module) -> str:
    """The score a method ranks by (``sr`` for objectives without scores of their own)."""
    return getattr(objective, "primary_score", "sr")


class AbstainObjective(Objective):
    """Base of the methods with an abstain output: the model has C+1 outputs, the last abstains.

    Before ``pretrain_epochs`` the loss is cross-entropy on the first C logits; from then on
    :meth:`abstain_loss`. ``predict`` returns the C class logits. A model without the extra
    output is a :class:`SelfAdaptError`.
    """

    primary_score = "abstain"
    method_name = ""

    def __init__(self, num_classes: int, pretrain_epochs: int, model: nn.Module | None = None):
        super().__init__()
        if pretrain_epochs < 0:
            raise ValueError(f"pretraining epochs must be >= 0, got {pretrain_epochs}")
        self.num_classes = int(num_classes)
        self.pretrain_epochs = int(pretrain_epochs)
        head = getattr(model, "head", model)       # a Classifier's head, or a bare linear model
        if isinstance(head, nn.Linear):
            self._check_outputs(head.out_features)

    def _check_outputs(self, outputs: int) -> None:
        if outputs != self.num_classes + 1:
            raise SelfAdaptError(f"method {self.method_name} needs a model with {self.num_classes + 1} outputs "
                                 f"({self.num_classes} classes + abstain), got one with {outputs}")

    def logits(self, model: nn.Module, x: torch.Tensor) -> torch.Tensor:
        """All C+1 logits (float32)."""
        out = model(x)
        self._check_outputs(out.shape[1])
        return out.float()

    def predict(self, model, x):
        return self.logits(model, x)[:, :self.num_classes]

    def predict_with_scores(self, model, x):
        logits = self.logits(model, x)
        class_logits = logits[:, :self.num_classes]
        scores = softmax_scores(class_logits)
        scores["abstain"] = F.softmax(logits, dim=1)[:, self.num_classes]
        return class_logits, scores

    def training_step(self, model, batch, epoch):
        logits = self.logits(model, batch.x)
        class_logits = logits[:, :self.num_classes]
        if epoch < self.pretrain_epochs:
            return StepOutput(F.cross_entropy(class_logits, batch.y), class_logits)
        loss, metrics = self.abstain_loss(logits, batch.y, batch.index)
        return StepOutput(loss, class_logits, metrics)

    def abstain_loss(self, logits: torch.Tensor, y: torch.Tensor, index: torch.Tensor):
        """``(loss, metrics)`` from all C+1 logits after pretraining."""
        raise NotImplementedError


class SATSelective(AbstainObjective):
    """Self-adaptive training with an abstain class.

    Per sample a target t over the C classes, one-hot at first; after pretraining, every batch:
    ``t <- m t + (1 - m) softmax(first C logits)`` (no gradient), then cross-entropy over all C+1
    outputs against ``t_y`` on the labelled class, ``1 - t_y`` on abstain, 0 elsewhere (no sample
    weighting). ``primary_score`` names the score the method ranks by (``abstain``; SAT+EM ``sr``).
    With ``entropy_weight = beta > 0`` (SAT+EM) it adds ``beta * mean H(softmax(first C
    logits))``, the entropy itself; the authors' code adds ``-sum softmax(z) z``, which lacks H's
    ``logsumexp(z)`` term.

    Example
    -------
    >>> labels = torch.tensor([0, 1, 2, 1])
    >>> sat = SATSelective(labels, num_classes=3, momentum=0.9, pretrain_epochs=0)
    >>> loss, metrics = sat.abstain_loss(torch.randn(2, 4), labels[:2], torch.tensor([0, 1]))
    >>> sat.targets.shape, sorted(metrics)
    (torch.Size([4, 3]), ['abstain_target'])
    """

    method_name = "sat-selective"

    def __init__(self, labels: torch.Tensor, num_classes: int, momentum: float = 0.9, pretrain_epochs: int = 150,
                 *, entropy_weight: float = 0.0, primary_score: str = "abstain", model: nn.Module | None = None,
                 dtype: torch.dtype = torch.float32):
        super().__init__(num_classes, pretrain_epochs, model)
        self.primary_score = primary_score
        if entropy_weight < 0:
            raise ValueError(f"the entropy weight must be >= 0, got {entropy_weight}")
        labels = torch.as_tensor(labels, dtype=torch.long)
        self.entropy_weight = float(entropy_weight)
        self.store = TargetStore(F.one_hot(labels, num_classes), momentum, dtype=dtype, label_distributions=True)

    @property
    def targets(self) -> torch.Tensor:
        """The ``N x C`` moving-average class distributions."""
        return self.store.values

    def abstain_loss(self, logits, y, index):
        c = self.num_classes
        class_logits = logits[:, :c]
        targets = self.store.update(index, F.softmax(class_logits.detach(), dim=1)).to(logits.dtype)
        on_label = targets.gather(1, y[:, None])
        soft = torch.zeros_like(logits).scatter_(1, y[:, None], on_label)
        soft[:, c] = 1.0 - on_label[:, 0]
        loss = -(soft * F.log_softmax(logits, dim=1)).sum(dim=1).mean()
        if self.entropy_weight:
            loss = loss + self.entropy_weight * softmax_entropy(F.log_softmax(class_logits, dim=1)).mean()
        return loss, {"abstain_target": soft[:, c].mean().detach()}


class DeepGamblers(AbstainObjective):
    """Deep Gamblers: ``-mean log(p_y + p_abstain / o)`` over the softmax of all C+1 outputs, reward
    ``1 < o <= C`` (computed as a log-sum-exp of log-probabilities, stable for tiny p).

    >>> dg = DeepGamblers(num_classes=2, reward=2.0, pretrain_epochs=0)
    >>> loss, _ = dg.abstain_loss(torch.zeros(1, 3), torch.tensor([0]), torch.tensor([0]))
    >>> round(loss.item(), 4) == round(-math.log(1 / 3 + 1 / 6), 4)
    True
    """

    method_name = "deep-gamblers"

    def __init__(self, num_classes: int, reward: float = 2.2, pretrain_epochs: int = 100,
                 model: nn.Module | None = None):
        super().__init__(num_classes, pretrain_epochs, model)
        if not 1.0 < reward <= num_classes:
            raise SelfAdaptError(f"the Deep Gamblers reward o must lie in (1, {num_classes}] for {num_classes} "
                                 f"classes, got {reward}")
        self.reward = float(reward)

    def abstain_loss(self, logits, y, index):
        log_p = F.log_softmax(logits, dim=1)
        gain = log_p.gather(1, y[:, None])[:, 0]
        reserve = log_p[:, self.num_classes] - math.log(self.reward)
        loss = -torch.logaddexp(gain, reserve).mean()
        return loss, {"abstain_probability": log_p[:, self.num_classes].exp().mean().detach()}


class _Scale(nn.Module):
    def __init__(self, factor: float):
        super().__init__()
        self.factor = factor

    def forward(self, x):
        return x * self.factor


class SelectiveNet(Objective):
    """SelectiveNet on the model's shared features: the model's head is the predictor f, the
    objective holds the selection head g (``Linear-ReLU-BN-/10-Linear-sigmoid``, hidden width the
    feature width: 512 on VGG-16 as in the original) and the auxiliary head h. Loss:
    ``alpha [mean(l g) / mean(g) + lambda max(0, c - mean g)^2] + (1 - alpha) CE(h)`` with l the
    per-sample cross-entropy of f and c the target coverage (a fraction). (The original Keras code
    omits the ``/ mean(g)`` of the paper's empirical selective risk; we follow the paper.)

    Example
    -------
    >>> from selfadapt.models import build_model
    >>> model = build_model("mlp", num_classes=3, in_channels=1, image_size=4, width=8)
    >>> net = SelectiveNet(model, num_classes=3, coverage=0.8)
    >>> logits, scores = net.predict_with_scores(model.eval(), torch.rand(2, 1, 4, 4))
    >>> sorted(scores)
    ['entropy', 'g', 'sr']
    """

    primary_score = "g"

    def __init__(self, model: nn.Module, num_classes: int, coverage: float, *, lam: float = 32.0, alpha: float = 0.5):
        super().__init__()
        if not (hasattr(model, "features") and hasattr(model, "feature_dim") and hasattr(model, "head")):
            raise SelfAdaptError("selectivenet needs a model with features(x), feature_dim and head "
                                 "(every built-in model has them)")
        if not 0.0 < coverage <= 1.0:
            raise ValueError(f"the target coverage must lie in (0, 1], got {coverage}")
        width = model.feature_dim
        self.coverage, self.lam, self.alpha = float(coverage), float(lam), float(alpha)
        self.selector = nn.Sequential(nn.Linear(width, width), nn.ReLU(inplace=True), nn.BatchNorm1d(width),
                                      _Scale(0.1), nn.Linear(width, 1))
        self.auxiliary = nn.Linear(width, num_classes)

    def heads(self, model: nn.Module, x: torch.Tensor):
        """``(f logits, selection logit s, h logits)`` from one pass through the shared features;
        ``g = sigmoid(s)``."""
        features = model.features(x)
        return model.head(features).float(), self.selector(features).float()[:, 0], self.auxiliary(features).float()

    def loss(self, f: torch.Tensor, g: torch.Tensor, h: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        per_sample = F.cross_entropy(f, y, reduction="none")
        selective_risk = (per_sample * g).mean() / g.mean()
        penalty = self.lam * torch.clamp(self.coverage - g.mean(), min=0.0) ** 2
        return self.alpha * (selective_risk + penalty) + (1.0 - self.alpha) * F.cross_entropy(h, y)

    def training_step(self, model, batch, epoch):
        f, s, h = self.heads(model, batch.x)
        g = torch.sigmoid(s)
        return StepOutput(self.loss(f, g, h, batch.y), f, {"selector_mean": g.mean().detach()})

    def predict_with_scores(self, model, x):
        f, s, _ = self.heads(model, x)
        scores = softmax_scores(f)
        scores["g"] = torch.sigmoid(-s)            # 1 - g, without float32's rounding of g near 1
        return f, scores


# --------------------------------------------------------------------------------------------
# options and registration

@dataclass
class SATSelectiveOptions(SATMomentumOption):
    sat_pretrain_epochs: int = setting(150, "selective SAT: cross-entropy on the C class logits for epochs "
                                            "0..N-1 (CIFAR-10 150 of 300, SVHN and Cats vs Dogs 0)",
                                       check=lambda e: e >= 0, must="be >= 0")


@dataclass
class SATSelectiveEMOptions(SATSelectiveOptions):
    sat_em_beta: float = setting(0.001, "SAT+EM: weight beta of the mean entropy of the class softmax",
                                 check=lambda b: b >= 0, must="be >= 0")


@dataclass
class DeepGamblersOptions:
    gamblers_reward: float = setting(2.2, "Deep Gamblers reward o of a correct prediction (abstaining "
                                          "returns 1); 1 < o <= C", check=lambda o: o > 1, must="be > 1")
    gamblers_pretrain_epochs: int = setting(100, "Deep Gamblers: cross-entropy on the C class logits for "
                                                 "epochs 0..N-1 (100 of 300 on CIFAR-10)",
                                            check=lambda e: e >= 0, must="be >= 0")


@dataclass
class SelectiveNetOptions:
    selectivenet_coverage: float = setting(80.0, "SelectiveNet target coverage c in percent (one model per c)",
                                           check=lambda c: 0 < c <= 100, must="lie in (0, 100] (percent)")
    selectivenet_lambda: float = setting(32.0, "SelectiveNet weight lambda of the coverage penalty",
                                         check=lambda v: v >= 0, must="be >= 0")
    selectivenet_alpha: float = setting(0.5, "SelectiveNet weight alpha of the selective loss (1 - alpha: "
                                             "auxiliary head)", check=lambda a: 0 <= a <= 1, must="lie in [0, 1]")


def _sat_pretraining_ends(options, config):
    return start_epoch_before_end(options.sat_pretrain_epochs, config.engine.epochs, "selective SAT",
                                  "--sat-pretrain-epochs")


def _gamblers_pretraining_ends(options, config):
    return start_epoch_before_end(options.gamblers_pretrain_epochs, config.engine.epochs, "the Deep Gamblers loss",
                                  "--gamblers-pretrain-epochs")


def _build_sat(ctx, o, entropy_weight=0.0, primary_score="abstain"):
    momentum = momentum_for(ctx.epochs - o.sat_pretrain_epochs) if o.sat_momentum == "auto" else o.sat_momentum
    return SATSelective(ctx.labels, ctx.num_classes, momentum, o.sat_pretrain_epochs,
                        entropy_weight=entropy_weight, primary_score=primary_score, model=ctx.model)


def _plus_abstain(num_classes: int) -> int:
    return num_classes + 1


METHODS = [
    Method("sat-selective", "SAT with an abstain class, ranked by the abstain probability "
                            "(Huang et al., NeurIPS 2020)", _build_sat, SATSelectiveOptions,
           {"sat_momentum": 0.9},
           outputs=_plus_abstain, evaluators=SELECTIVE_EVALUATORS, validate=_sat_pretraining_ends),
    Method("sat-selective-em", "selective SAT plus entropy minimisation, ranked by softmax response "
                               "(Feng et al., ICLR 2023)",
           lambda ctx, o: _build_sat(ctx, o, o.sat_em_beta, "sr"), SATSelectiveEMOptions, {"sat_momentum": 0.9},
           outputs=_plus_abstain, evaluators=SELECTIVE_EVALUATORS, validate=_sat_pretraining_ends),
    Method("deep-gamblers", "Deep Gamblers, -log(p_y + p_abstain / o) (Liu et al., NeurIPS 2019)",
           lambda ctx, o: DeepGamblers(ctx.num_classes, o.gamblers_reward, o.gamblers_pretrain_epochs, ctx.model),
           DeepGamblersOptions, outputs=_plus_abstain, evaluators=SELECTIVE_EVALUATORS,
           validate=_gamblers_pretraining_ends),
    Method("selectivenet", "SelectiveNet: selection and auxiliary heads, one model per target coverage "
                           "(Geifman and El-Yaniv, ICML 2019)",
           lambda ctx, o: SelectiveNet(ctx.model, ctx.num_classes, o.selectivenet_coverage / 100.0,
                                       lam=o.selectivenet_lambda, alpha=o.selectivenet_alpha),
           SelectiveNetOptions, evaluators=SELECTIVE_EVALUATORS),
]

