"""Self-supervised objectives on two augmented views: self-supervised SAT, BYOL, SimCLR, rotation.

None reads a label (``uses_labels=False``); all train ``model.features`` (the backbone) and leave the
classification head alone, so kNN and linear probes on frozen features measure what they learnt.
Momentum (EMA) encoders and the per-image target table move in ``after_step``; the engine knows
nothing of them. Every step also reports the collapse monitor of the normalised projections
(:func:`collapse_metrics`).

``ssl-sat`` is OUR RECONSTRUCTION of the self-supervised SAT of the journal version (TPAMI 2022),
whose code and details were not published, not the authors' method:

* a table of N unit vectors ``t_i`` (random, seeded), one per training image;
* loss ``sum_v (2 - 2 cos(q_v, t_i))`` over the two views, ``q_v = predictor(projector(features(x_v)))``;
* after the optimiser step, ``t_i <- normalise(alpha t_i + (1 - alpha) z_i)`` with ``z_i`` the mean of
  the two views' unit-normalised projections (no gradient) from the momentum encoder (default) or
  from the online network (``--ssl-sat-encoder online``: no momentum encoder at all). ``z_i`` is
  taken from this step's forward pass (before the optimiser step), so no extra forward is needed.

>>> from selfadapt.objectives.registry import get_method
>>> [get_method(m).views for m in ("ssl-sat", "byol", "simclr", "rotation")]
[2, 2, 2, 2]
"""
from __future__ import annotations

import copy
import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from selfadapt.batch import StepOutput
from selfadapt.config.fields import setting
from selfadapt.data.ssl_augment import ssl_augmentation_names, ssl_view_augmentations
from selfadapt.errors import SelfAdaptError
from selfadapt.objectives.base import Objective
from selfadapt.objectives.method import Method
from selfadapt.targets import TargetStore

# ---------------------------------------------------------------------------------------------- losses


def normalized_mse(prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """BYOL's loss ``2 - 2 cos(p, z)``, averaged over the batch (the target gets no gradient).

    >>> float(normalized_mse(torch.tensor([[1.0, 0.0]]), torch.tensor([[0.0, 3.0]])))
    2.0
    """
    cos = (F.normalize(prediction.float(), dim=1) * F.normalize(target.detach().float(), dim=1)).sum(1)
    return (2 - 2 * cos).mean()


def nt_xent(z1: torch.Tensor, z2: torch.Tensor, temperature: float) -> torch.Tensor:
    """SimCLR's NT-Xent over the 2B projections: each one's positive is the other view of its image,
    the other 2B - 2 are negatives; cosine similarities over ``temperature``; mean over all 2B.

    >>> z = torch.eye(2)
    >>> round(float(nt_xent(z, z, 0.2)), 4)  # positives identical, negatives orthogonal or identical
    0.0134
    """
    z = F.normalize(torch.cat([z1, z2]).float(), dim=1)
    logits = z @ z.T / temperature
    logits.fill_diagonal_(float("-inf"))
    n = len(z1)
    positives = torch.cat([torch.arange(n, 2 * n), torch.arange(n)]).to(z.device)
    return F.cross_entropy(logits, positives)


@torch.no_grad()
def collapse_metrics(z: torch.Tensor) -> dict[str, torch.Tensor]:
    """The collapse monitor of a batch of projections ``z`` (B x D):

    * ``collapse_std``: the mean over dimensions of the standard deviation of the unit-normalised
      projections, times sqrt(D) (1: spread out like random unit vectors; 0: collapsed to a point);
    * ``effective_rank``: ``exp`` of the entropy of the normalised singular values of the centred
      projections (Roy and Vetterli 2007): D at most, 1 when all lie on a line.

    >>> metrics = collapse_metrics(torch.ones(8, 4))
    >>> float(metrics["collapse_std"])
    0.0
    """
    u = F.normalize(z.float(), dim=1)
    std = u.std(dim=0).mean() * math.sqrt(u.shape[1])
    singular = torch.linalg.svdvals(u - u.mean(dim=0))
    p = singular / singular.sum().clamp_min(1e-12)
    entropy = -(p * p.clamp_min(1e-12).log()).sum()
    return {"collapse_std": std, "effective_rank": entropy.exp()}


def ema_momentum(base: float, fraction: float) -> float:
    """BYOL's momentum schedule: from ``base`` to 1 on a cosine over training (``fraction`` in [0, 1]).

    >>> ema_momentum(0.99, 0.0), ema_momentum(0.99, 1.0)
    (0.99, 1.0)
    """
    return 1 - (1 - base) * (math.cos(math.pi * fraction) + 1) / 2


# ---------------------------------------------------------------------------------------------- parts


def mlp(in_dim: int, hidden: int, out: int, *, batchnorm: bool = True) -> nn.Sequential:
    """Linear -> (BatchNorm) -> ReLU -> Linear: solo-learn's projectors and BYOL's predictor."""
    norm = [nn.BatchNorm1d(hidden)] if batchnorm else []
    return nn.Sequential(nn.Linear(in_dim, hidden), *norm, nn.ReLU(inplace=True), nn.Linear(hidden, out))


def features_of(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """``model.features(x)``; a model without a ``features`` backbone is a :class:`SelfAdaptError`."""
    if not hasattr(model, "features"):
        raise SelfAdaptError(f"self-supervised training needs a model with a backbone (model.features); "
                             f"{type(model).__name__} has none")
    return model.features(x)


class MomentumEncoder(nn.Module):
    """A frozen copy of a model's backbone and a projector, moved towards them by EMA after each step.

    >>> online, projector = nn.Linear(2, 2), nn.Linear(2, 2)
    >>> target = MomentumEncoder(online, projector)
    >>> all(not p.requires_grad for p in target.parameters())
    True
    """

    def __init__(self, model: nn.Module, projector: nn.Module):
        super().__init__()
        self.model = copy.deepcopy(model)
        self.projector = copy.deepcopy(projector)
        for p in self.parameters():
            p.requires_grad_(False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.projector(features_of(self.model, x))

    @torch.no_grad()
    def update(self, model: nn.Module, projector: nn.Module, momentum: float) -> None:
        """``theta_target <- m theta_target + (1 - m) theta_online`` (buffers are copied)."""
        for target, online in ((self.model, model), (self.projector, projector)):
            for t, o in zip(target.parameters(), online.parameters()):
                t.lerp_(o.detach(), 1 - momentum)
            for t, o in zip(target.buffers(), online.buffers()):
                t.copy_(o)


# ---------------------------------------------------------------------------------------------- objectives


class _TwoViewObjective(Objective):
    """Shared checks: two views, a backbone; ``predict`` is the model's (untrained) head."""

    def _views(self, batch) -> tuple[torch.Tensor, torch.Tensor]:
        if len(batch.views) != 2:
            raise SelfAdaptError(f"{type(self).__name__} needs 2 augmented views per batch, got {len(batch.views)}")
        return batch.views


class BYOL(_TwoViewObjective):
    """BYOL (Grill et al. 2020) as solo-learn's CIFAR recipe: projector ``feature_dim -> hidden -> out``,
    predictor ``out -> pred_hidden -> out``, a momentum encoder whose EMA goes from ``base_momentum``
    to 1 on a cosine, symmetric loss ``(2 - 2 cos(q_1, z'_2)) + (2 - 2 cos(q_2, z'_1))``.

    Example
    -------
    >>> from selfadapt.objectives.base import Batch
    >>> model = nn.Sequential(nn.Flatten(), nn.Linear(4, 3)); model.features = model.forward
    >>> byol = BYOL(model, feature_dim=3, proj_hidden=8, proj_dim=4, pred_hidden=8)
    >>> out = byol.training_step(model, Batch((torch.rand(5, 4), torch.rand(5, 4)), torch.full((5,), -1), torch.arange(5)), 0)
    >>> out.loss.shape
    torch.Size([])
    """

    def __init__(self, model: nn.Module, *, feature_dim: int, proj_hidden: int = 4096, proj_dim: int = 256,
                 pred_hidden: int = 4096, base_momentum: float = 0.99):
        super().__init__()
        self.projector = mlp(feature_dim, proj_hidden, proj_dim)
        self.predictor = mlp(proj_dim, pred_hidden, proj_dim)
        self.target = MomentumEncoder(model, self.projector)
        self.base_momentum = base_momentum

    def training_step(self, model, batch, epoch):
        x1, x2 = self._views(batch)
        z1, z2 = self.projector(features_of(model, x1)), self.projector(features_of(model, x2))
        q1, q2 = self.predictor(z1), self.predictor(z2)
        with torch.no_grad():
            t1, t2 = self.target(x1), self.target(x2)
        loss = normalized_mse(q1, t2) + normalized_mse(q2, t1)
        return StepOutput(loss, metrics=collapse_metrics(z1))

    def after_step(self, model, progress):
        self.target.update(model, self.projector, ema_momentum(self.base_momentum, progress.fraction))


class SelfSupervisedSAT(_TwoViewObjective):
    """Self-supervised SAT, our reconstruction of the journal version's (see the module docstring).

    ``encoder="momentum"``: ``z`` from a momentum encoder (EMA ``base_momentum`` -> 1, as BYOL);
    ``encoder="online"``: ``z`` from the online projector, no momentum encoder.
    ``unit_views=False`` averages the raw projections instead of the unit-normalised ones (the
    alternative to our choice, for the comparison in ``docs/results/self-supervised``).

    Example
    -------
    >>> from selfadapt.objectives.base import Batch, Progress
    >>> model = nn.Sequential(nn.Flatten(), nn.Linear(4, 3)); model.features = model.forward
    >>> sat = SelfSupervisedSAT(model, num_samples=10, feature_dim=3, proj_hidden=8, proj_dim=4, pred_hidden=8)
    >>> batch = Batch((torch.rand(5, 4), torch.rand(5, 4)), torch.full((5,), -1), torch.arange(5))
    >>> before = sat.targets.clone(); _ = sat.training_step(model, batch, 0)
    >>> sat.after_step(model, Progress(0, 0, 2, 1))
    >>> bool((sat.targets[:5] != before[:5]).any()), bool((sat.targets[5:] == before[5:]).all())
    (True, True)
    """

    def __init__(self, model: nn.Module, *, num_samples: int, feature_dim: int, proj_hidden: int = 4096,
                 proj_dim: int = 256, pred_hidden: int = 4096, alpha: float = 0.9, encoder: str = "momentum",
                 base_momentum: float = 0.99, seed: int = 0, unit_views: bool = True):
        super().__init__()
        if encoder not in ("momentum", "online"):
            raise SelfAdaptError(f"ssl-sat encoder must be momentum or online, got {encoder!r}")
        self.unit_views = unit_views
        self.projector = mlp(feature_dim, proj_hidden, proj_dim)
        self.predictor = mlp(proj_dim, pred_hidden, proj_dim)
        self.target = MomentumEncoder(model, self.projector) if encoder == "momentum" else None
        self.base_momentum = base_momentum
        initial = F.normalize(torch.randn(num_samples, proj_dim, generator=torch.Generator().manual_seed(seed)), dim=1)
        self.store = TargetStore(initial, alpha, normalize=True)
        self._pending: tuple[torch.Tensor, torch.Tensor] | None = None

    @property
    def targets(self) -> torch.Tensor:
        """The N x D table of unit target vectors."""
        return self.store.values

    def training_step(self, model, batch, epoch):
        x1, x2 = self._views(batch)
        z1, z2 = self.projector(features_of(model, x1)), self.projector(features_of(model, x2))
        targets = self.store.read(batch.index)
        loss = normalized_mse(self.predictor(z1), targets) + normalized_mse(self.predictor(z2), targets)
        with torch.no_grad():
            if self.target is not None:
                z1, z2 = self.target(x1), self.target(x2)
            if self.unit_views:
                z = (F.normalize(z1.float(), dim=1) + F.normalize(z2.float(), dim=1)) / 2
            else:
                z = (z1.float() + z2.float()) / 2
        self._pending = (batch.index, z)
        metrics = collapse_metrics(z1)
        metrics["target_agreement"] = (F.normalize(z, dim=1) * targets).sum(1).mean()
        return StepOutput(loss, metrics=metrics)

    def after_step(self, model, progress):
        if self._pending is not None:
            self.store.update(*self._pending)
            self._pending = None
        if self.target is not None:
            self.target.update(model, self.projector, ema_momentum(self.base_momentum, progress.fraction))


class SimCLR(_TwoViewObjective):
    """SimCLR (Chen et al. 2020): NT-Xent between the projections of the two views (solo-learn's
    projector ``feature_dim -> hidden -> out`` without BatchNorm). Negatives are the local batch."""

    def __init__(self, *, feature_dim: int, proj_hidden: int = 2048, proj_dim: int = 256, temperature: float = 0.2):
        super().__init__()
        self.projector = mlp(feature_dim, proj_hidden, proj_dim, batchnorm=False)
        self.temperature = temperature

    def training_step(self, model, batch, epoch):
        x1, x2 = self._views(batch)
        z1, z2 = self.projector(features_of(model, x1)), self.projector(features_of(model, x2))
        return StepOutput(nt_xent(z1, z2, self.temperature), metrics=collapse_metrics(z1))


def rotation_labels(index: torch.Tensor, epoch: int, view: int) -> torch.Tensor:
    """The rotation (quarter turns, 0-3) of each image's ``view`` in ``epoch``: ``(index + epoch + 2 view) % 4``,
    so the two views differ, every image meets all four rotations and no random number is drawn.

    >>> rotation_labels(torch.arange(5), epoch=1, view=1).tolist()
    [3, 0, 1, 2, 3]
    """
    return (index + epoch + 2 * view) % 4


def rotate(x: torch.Tensor, quarter_turns: torch.Tensor) -> torch.Tensor:
    """Each image of ``x`` (N x C x H x W, square) turned counter-clockwise by its number of quarter turns."""
    out = x.clone()
    for k in range(1, 4):
        chosen = quarter_turns == k
        if chosen.any():
            out[chosen] = torch.rot90(x[chosen], k, dims=(2, 3))
    return out


class RotationPrediction(_TwoViewObjective):
    """Rotation prediction (Gidaris et al. 2018): a linear head on the features classifies the
    rotation (0, 90, 180, 270 degrees) of each view; cross-entropy averaged over both views."""

    def __init__(self, *, feature_dim: int):
        super().__init__()
        self.rotation_head = nn.Linear(feature_dim, 4)

    def training_step(self, model, batch, epoch):
        losses, features = [], None
        for v, x in enumerate(self._views(batch)):
            turns = rotation_labels(batch.index, epoch, v)
            h = features_of(model, rotate(x, turns))
            features = h if features is None else features
            losses.append(F.cross_entropy(self.rotation_head(h).float(), turns))
        return StepOutput(sum(losses) / len(losses), metrics=collapse_metrics(features))


# ---------------------------------------------------------------------------------------------- registry


@dataclass
class ViewOptions:
    ssl_views: str = setting("byol", "augmentation recipe of the two self-supervised views, solo-learn's CIFAR "
                                     "ones (byol: asymmetric, solarise view 2; simclr: symmetric, stronger "
                                     "colour jitter and a Gaussian blur)", choices=ssl_augmentation_names)


@dataclass
class PredictorOptions(ViewOptions):
    ssl_proj_hidden: int = setting(4096, "hidden units of the projector (byol, ssl-sat)", check=lambda v: v > 0,
                                   must="be > 0")
    ssl_proj_dim: int = setting(256, "output dimension of the projector (byol, ssl-sat)", check=lambda v: v > 0,
                                must="be > 0")
    ssl_pred_hidden: int = setting(4096, "hidden units of the predictor (byol, ssl-sat)", check=lambda v: v > 0,
                                   must="be > 0")
    ssl_ema: float = setting(0.99, "base momentum of the momentum encoder (cosine to 1 over training)",
                             check=lambda m: 0.0 <= m <= 1.0, must="lie in [0, 1]")


@dataclass
class SSLSATOptions(PredictorOptions):
    ssl_sat_alpha: float = setting(0.9, "ssl-sat target momentum alpha (t <- normalise(alpha t + (1 - alpha) z))",
                                   check=lambda m: 0.0 <= m < 1.0, must="lie in [0, 1)")
    ssl_sat_encoder: str = setting("momentum", "where ssl-sat's z comes from: a momentum encoder or the online "
                                               "network (no momentum encoder)", choices=lambda: ["momentum", "online"])
    ssl_sat_z: str = setting("unit-mean", "ssl-sat's z: the mean of the two views' unit-normalised projections, "
                                          "or their plain mean", choices=lambda: ["unit-mean", "mean"])


@dataclass
class SimCLROptions(ViewOptions):
    simclr_proj_hidden: int = setting(2048, "hidden units of SimCLR's projector", check=lambda v: v > 0, must="be > 0")
    simclr_proj_dim: int = setting(256, "output dimension of SimCLR's projector", check=lambda v: v > 0,
                                   must="be > 0")
    simclr_temperature: float = setting(0.2, "NT-Xent temperature", check=lambda v: v > 0, must="be > 0")


def _views_of(options, config, dataset) -> list:
    return ssl_view_augmentations(options.ssl_views, views=2, channels=dataset.in_channels,
                                  image_size=dataset.image_size)


def _byol(ctx, o):
    return BYOL(ctx.model, feature_dim=ctx.model.feature_dim, proj_hidden=o.ssl_proj_hidden, proj_dim=o.ssl_proj_dim,
                pred_hidden=o.ssl_pred_hidden, base_momentum=o.ssl_ema)


def _ssl_sat(ctx, o):
    return SelfSupervisedSAT(ctx.model, num_samples=len(ctx.labels), feature_dim=ctx.model.feature_dim,
                             proj_hidden=o.ssl_proj_hidden, proj_dim=o.ssl_proj_dim, pred_hidden=o.ssl_pred_hidden,
                             alpha=o.ssl_sat_alpha, encoder=o.ssl_sat_encoder, base_momentum=o.ssl_ema, seed=ctx.seed,
                             unit_views=o.ssl_sat_z == "unit-mean")


def _simclr(ctx, o):
    return SimCLR(feature_dim=ctx.model.feature_dim, proj_hidden=o.simclr_proj_hidden, proj_dim=o.simclr_proj_dim,
                  temperature=o.simclr_temperature)


_SSL = dict(views=2, uses_labels=False, evaluators=("knn", "linear-probe"), augment=_views_of)
METHODS = [
    Method("ssl-sat", "self-supervised SAT: per-image moving-average unit targets (our reconstruction of "
                      "Huang et al., TPAMI 2022; their code is not published)", _ssl_sat, SSLSATOptions, **_SSL),
    Method("byol", "BYOL: predictor + momentum encoder, 2 - 2 cos (solo-learn's CIFAR recipe)", _byol,
           PredictorOptions, **_SSL),
    Method("simclr", "SimCLR: NT-Xent between two views", _simclr, SimCLROptions, {"ssl_views": "simclr"}, **_SSL),
    Method("rotation", "rotation prediction (4 quarter turns) as a pretext task",
           lambda ctx, o: RotationPrediction(feature_dim=ctx.model.feature_dim), ViewOptions, **_SSL),
]
