"""Frozen-feature evaluators: a kNN classifier every few epochs and a linear probe at the end.

Both read ``model.features`` (the backbone, normalisation included) of un-augmented images: the
memory / training set is ``EvalData.train`` restricted to labelled images (labels are read here,
never by a self-supervised objective); the linear probe's regularisation is chosen on
``EvalData.val`` (``--val-size``) or, without one, on a seeded hold-out of the training features,
never on the test set.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from selfadapt.config.fields import setting
from selfadapt.data.loader import DeviceLoader
from selfadapt.errors import SelfAdaptError
from selfadapt.evaluators.base import Evaluator, EvaluatorSpec, autocast, evaluation_mode, schedule_options, timing


def frozen_features(model: nn.Module, loader: DeviceLoader, *, amp: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """``model.features`` (float, N x D) and labels of the labelled images of an unshuffled loader.

    >>> model = nn.Sequential(nn.Flatten()); model.features = model.forward
    >>> loader = DeviceLoader(torch.zeros(3, 1, 2, 2, dtype=torch.uint8), torch.tensor([0, -1, 1]), batch_size=2)
    >>> [t.shape for t in frozen_features(model, loader)]
    [torch.Size([2, 4]), torch.Size([2])]
    """
    if not hasattr(model, "features"):
        raise SelfAdaptError(f"frozen-feature evaluation needs a model with a backbone (model.features); "
                             f"{type(model).__name__} has none")
    features, labels = [], []
    with evaluation_mode(model):
        for batch in loader:
            with autocast(loader.device, amp):
                h = model.features(batch.x)
            keep = batch.y >= 0
            features.append(h.float()[keep])
            labels.append(batch.y[keep])
    if not features:
        return torch.empty(0, 0, device=loader.device), torch.empty(0, dtype=torch.long, device=loader.device)
    return torch.cat(features), torch.cat(labels)


def knn_predict(queries: torch.Tensor, memory: torch.Tensor, memory_labels: torch.Tensor, num_classes: int, *,
                k: int = 200, temperature: float = 0.1, chunk: int = 1024) -> torch.Tensor:
    """Weighted kNN (Wu et al. 2018): the k most cosine-similar memory rows vote for their label
    with weight ``exp(similarity / temperature)``; the class with most weight wins.

    >>> memory = torch.tensor([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0]])
    >>> knn_predict(torch.tensor([[1.0, 0.2], [0.1, 1.0]]), memory, torch.tensor([0, 0, 1]), 2, k=2).tolist()
    [0, 1]
    """
    memory = F.normalize(memory.float(), dim=1)
    k = min(k, len(memory))
    out = []
    for start in range(0, len(queries), chunk):
        q = F.normalize(queries[start:start + chunk].float(), dim=1)
        similarity, neighbour = (q @ memory.T).topk(k, dim=1)
        votes = torch.zeros(len(q), num_classes, device=q.device)
        votes.scatter_add_(1, memory_labels[neighbour], (similarity / temperature).exp())
        out.append(votes.argmax(1))
    return torch.cat(out) if out else torch.empty(0, dtype=torch.long, device=queries.device)


class KNNAccuracy(Evaluator):
    """``knn_accuracy``: test accuracy of :func:`knn_predict` with the training features as memory."""

    name = "knn"
    primary = "knn_accuracy"

    def __init__(self, *, k: int = 200, temperature: float = 0.1, **when):
        super().__init__(**when)
        self.k, self.temperature = k, temperature

    def __call__(self, model, objective, data, epoch):
        if data.test is None or len(data.test.labels) == 0:
            return {"knn_accuracy": None}
        memory, memory_labels = frozen_features(model, data.train, amp=data.amp)
        queries, labels = frozen_features(model, data.test, amp=data.amp)
        predicted = knn_predict(queries, memory, memory_labels, data.num_classes, k=self.k,
                                temperature=self.temperature)
        return {"knn_accuracy": (predicted == labels).float().mean().item()}


def fit_linear_probe(features: torch.Tensor, labels: torch.Tensor, num_classes: int, weight_decay: float, *,
                     max_iter: int = 200) -> nn.Linear:
    """Multinomial logistic regression ``min CE(W h + b, y) + weight_decay / 2 ||W||^2``, full-batch L-BFGS.

    >>> h = torch.tensor([[1.0, 0.0], [0.0, 1.0]] * 4); y = torch.tensor([0, 1] * 4)
    >>> fit_linear_probe(h, y, 2, 1e-3)(h).argmax(1).tolist() == y.tolist()
    True
    """
    generator = torch.Generator().manual_seed(0)
    probe = nn.Linear(features.shape[1], num_classes).to(features.device)
    with torch.no_grad():
        probe.weight.copy_(torch.randn(probe.weight.shape, generator=generator) * 0.01)
        probe.bias.zero_()
    optimizer = torch.optim.LBFGS(probe.parameters(), max_iter=max_iter, history_size=20,
                                  line_search_fn="strong_wolfe")

    def closure():
        optimizer.zero_grad()
        loss = F.cross_entropy(probe(features), labels) + weight_decay / 2 * probe.weight.pow(2).sum()
        loss.backward()
        return loss

    with torch.enable_grad():
        optimizer.step(closure)
    return probe


def _accuracy(probe: nn.Module, features: torch.Tensor, labels: torch.Tensor) -> float:
    with torch.no_grad():
        return (probe(features).argmax(1) == labels).float().mean().item()


class LinearProbe(Evaluator):
    """``linear_accuracy``: test accuracy of a linear classifier on frozen, standardised features.
    Features are computed once; one probe per weight decay of ``weight_decays`` is fitted on the
    training features and the one with the best validation accuracy is tested."""

    name = "linear-probe"
    primary = "linear_accuracy"

    def __init__(self, *, weight_decays: list[float], val_fraction: float = 0.1, seed: int = 0, **when):
        super().__init__(**when)
        self.weight_decays, self.val_fraction, self.seed = list(weight_decays), val_fraction, seed

    def __call__(self, model, objective, data, epoch):
        if data.test is None or len(data.test.labels) == 0:
            return {"linear_accuracy": None}
        train, train_labels = frozen_features(model, data.train, amp=data.amp)
        if data.val is not None:
            val, val_labels = frozen_features(model, data.val, amp=data.amp)
        else:
            order = torch.randperm(len(train), generator=torch.Generator().manual_seed(self.seed)).to(train.device)
            held = max(1, int(len(train) * self.val_fraction))
            val, val_labels = train[order[:held]], train_labels[order[:held]]
            train, train_labels = train[order[held:]], train_labels[order[held:]]
        test, test_labels = frozen_features(model, data.test, amp=data.amp)
        mean, std = train.mean(0), train.std(0).clamp_min(1e-6)
        train, val, test = ((h - mean) / std for h in (train, val, test))
        scored = [(_accuracy(probe, val, val_labels), wd, probe) for wd in self.weight_decays
                  for probe in [fit_linear_probe(train, train_labels, data.num_classes, wd)]]
        val_accuracy, weight_decay, probe = max(scored, key=lambda s: s[0])
        return {"linear_accuracy": _accuracy(probe, test, test_labels), "linear_val_accuracy": val_accuracy,
                "linear_weight_decay": weight_decay}


@dataclass
class KNNOptions(schedule_options("knn", "kNN accuracy", every=5)):
    knn_k: int = setting(200, "neighbours of the kNN evaluator", check=lambda v: v >= 1, must="be >= 1")
    knn_temperature: float = setting(0.1, "temperature of the kNN vote weights exp(cos / T)", check=lambda v: v > 0,
                                     must="be > 0")


@dataclass
class LinearProbeOptions:
    linear_weight_decays: list[float] = setting([0.0, 1e-4, 1e-3, 1e-2, 1e-1], "L2 strengths the linear probe "
                                                "chooses from on validation data",
                                                check=lambda v: len(v) > 0 and min(v) >= 0, must="be >= 0, one at least")
    linear_val_fraction: float = setting(0.1, "share of the training features held out to choose the probe's "
                                              "L2 strength when the run has no --val-size",
                                         check=lambda v: 0 < v < 1, must="lie in (0, 1)")


EVALUATORS = [
    EvaluatorSpec(
        "knn", "kNN accuracy on frozen backbone features (k 200, cosine, T 0.1; train set as memory)",
        lambda o: KNNAccuracy(k=o.knn_k, temperature=o.knn_temperature, **timing(o, "knn")), KNNOptions),
    EvaluatorSpec(
        "linear-probe", "linear probe on frozen backbone features after the last epoch (L2 chosen on validation data)",
        lambda o: LinearProbe(weight_decays=o.linear_weight_decays, val_fraction=o.linear_val_fraction, final_only=True),
        LinearProbeOptions),
]
