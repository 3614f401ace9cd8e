"""Robust accuracy: PGD-k and FGSM per epoch from a start epoch on, AutoAttack after the last epoch.

All attack ``objective.predict`` (the class logits the other evaluators score) on test images in
[0, 1], on the whole test set or on a fixed subset: the first N of a permutation of the test set
drawn with seed 0, the same for every run and every evaluator (AutoAttack's N images are the first
N of PGD's). The subset size is recorded with the metrics (``pgd_examples``, ...).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from selfadapt.attacks import AUTOATTACK_VERSIONS, autoattack, autoattack_class, fgsm, frozen, model_fingerprint, pgd
from selfadapt.config.fields import setting
from selfadapt.evaluators.base import Evaluator, EvaluatorSpec, schedule_options, timing

# Attacks keep every step's activations for the input gradient: at most this many images at once
# (bounds the attack's memory; not tuned).
ATTACK_BATCH = 256


class ClassLogits(nn.Module):
    """``objective.predict(model, x)`` as one module, so an attack freezes both."""

    def __init__(self, model: nn.Module, objective: nn.Module):
        super().__init__()
        self.model, self.objective = model, objective

    def forward(self, x):
        return self.objective.predict(self.model, x).float()


def fixed_subset(n_total: int, n: int | None) -> torch.Tensor:
    """The first ``n`` of a seed-0 permutation of ``range(n_total)``, sorted (all for ``None``).

    >>> fixed_subset(10, 3).tolist() == sorted(torch.randperm(10, generator=torch.Generator().manual_seed(0))[:3].tolist())
    True
    """
    if n is None or n >= n_total:
        return torch.arange(n_total)
    return torch.randperm(n_total, generator=torch.Generator().manual_seed(0))[:n].sort().values


def test_images(data, n: int | None) -> tuple[torch.Tensor, torch.Tensor]:
    """The fixed subset of ``n`` test images (float, [0, 1]) and their labels, on the test device."""
    index = fixed_subset(len(data.test.labels), n).to(data.test.device)
    return data.test.images[index].float().div(255), data.test.labels[index]


class RobustAccuracy(Evaluator):
    """``<name>_accuracy``: share of the (subset of) test images still classified correctly after the
    attack; ``<name>_clean_accuracy`` on the same images; ``<name>_examples`` how many. Random starts
    are drawn from a generator seeded with 0 at every call, apart from the global one that training uses."""

    higher_is_better = True

    def __init__(self, name: str, attack, *, subset: int | None, every: int, start_epoch: int):
        super().__init__(every=every, start_epoch=start_epoch)
        self.name, self.primary = name, f"{name}_accuracy"
        self.attack, self.subset = attack, subset

    def __call__(self, model, objective, data, epoch):
        if data.test is None or len(data.test.labels) == 0:
            return {self.primary: None}
        x, y = test_images(data, self.subset)
        net = ClassLogits(model, objective)
        batch = min(data.test.batch_size, ATTACK_BATCH)
        correct = torch.zeros(2, dtype=torch.long, device=y.device)
        with torch.random.fork_rng(devices=[y.device] if y.device.type == "cuda" else []):
            torch.manual_seed(0)               # the same random starts every epoch; training's draws untouched
            for i in range(0, len(y), batch):
                xb, yb = x[i:i + batch], y[i:i + batch]
                x_adv = self.attack(net, xb, yb)
                with torch.no_grad(), frozen(net):
                    correct[0] += (net(xb).argmax(1) == yb).sum()
                    correct[1] += (net(x_adv).argmax(1) == yb).sum()
        clean, robust = (correct.float() / len(y)).tolist()
        return {self.primary: robust, f"{self.name}_clean_accuracy": clean, f"{self.name}_examples": len(y)}


class AutoAttackAccuracy(Evaluator):
    """``autoattack_accuracy`` after the last epoch (AutoAttack is far too costly per epoch), with
    ``autoattack_clean_accuracy``, the accuracy after each attack (``autoattack_after_apgd_ce`` ...)
    and ``autoattack_examples``. Where the run has a directory, a state file there named by the
    model's fingerprint lets an interrupted evaluation resume."""

    name = "autoattack"
    primary = "autoattack_accuracy"

    def __init__(self, *, eps: float, n_ex: int | None, version: str):
        super().__init__(final_only=True)
        autoattack_class()                   # a missing package is reported before training, not after it
        self.eps, self.n_ex, self.version = eps, n_ex, version

    def __call__(self, model, objective, data, epoch):
        if data.test is None or len(data.test.labels) == 0:
            return {self.primary: None}
        x, y = test_images(data, self.n_ex)
        net = ClassLogits(model, objective)
        state = None
        if data.run_dir is not None:
            state = data.run_dir / f"autoattack-{model_fingerprint(net)}-{self.version}-eps{self.eps:g}-n{len(y)}.json"
        result = autoattack(net, x, y, eps=self.eps, version=self.version, batch_size=min(data.test.batch_size, ATTACK_BATCH),
                            state_path=state)
        out = {self.primary: result.robust_accuracy, "autoattack_clean_accuracy": result.clean_accuracy,
               "autoattack_examples": result.n_examples}
        out.update({f"autoattack_after_{name.replace('-', '_')}": value for name, value in result.after.items()})
        return out


@dataclass
class EpsOption:
    robust_eps: float = setting(0.031, "L-inf radius of the evaluation attacks (PGD, FGSM, AutoAttack; pixels in "
                                       "[0, 1])", check=lambda v: 0.0 <= v <= 1.0, must="lie in [0, 1]")


@dataclass
class RobustOptions(EpsOption):
    robust_subset: int | None = setting(None, "PGD/FGSM on a fixed subset of N test images (seed 0); default all",
                                        check=lambda v: v is None or v >= 1, must="be >= 1")


@dataclass
class PGDOptions(RobustOptions, schedule_options("pgd", "the per-epoch PGD evaluation", start_epoch=0)):
    pgd_steps: int = setting(20, "PGD steps k", check=lambda v: v >= 0, must="be >= 0")
    pgd_step_size: float = setting(0.003, "PGD step size", check=lambda v: v > 0, must="be > 0")
    pgd_restarts: int = setting(1, "PGD random restarts (a sample counts as robust if no restart fools it)",
                                check=lambda v: v >= 1, must="be >= 1")


@dataclass
class FGSMOptions(RobustOptions, schedule_options("fgsm", "the per-epoch FGSM evaluation", start_epoch=0)):
    """FGSM's radius, test subset and schedule."""


@dataclass
class AutoAttackOptions(EpsOption):
    autoattack_n_ex: int | None = setting(1000, "AutoAttack on a fixed subset of N test images (seed 0; "
                                                "the first N of PGD's); none = all",
                                          check=lambda v: v is None or v >= 1, must="be >= 1")
    autoattack_version: str = setting("standard", "AutoAttack version", choices=lambda: list(AUTOATTACK_VERSIONS))


def _build_pgd(o: PGDOptions) -> RobustAccuracy:
    def attack(net, x, y):
        return pgd(net, x, y, eps=o.robust_eps, steps=o.pgd_steps, step_size=o.pgd_step_size, restarts=o.pgd_restarts)
    return RobustAccuracy("pgd", attack, subset=o.robust_subset, **timing(o, "pgd"))


def _build_fgsm(o: FGSMOptions) -> RobustAccuracy:
    return RobustAccuracy("fgsm", lambda net, x, y: fgsm(net, x, y, eps=o.robust_eps), subset=o.robust_subset,
                          **timing(o, "fgsm"))


EVALUATORS = [
    EvaluatorSpec("pgd", "accuracy under PGD-k on cross-entropy (L-inf, random start), per epoch "
                         "from pgd_start_epoch", _build_pgd, PGDOptions),
    EvaluatorSpec("fgsm", "accuracy under FGSM (L-inf), per epoch from fgsm_start_epoch",
                  _build_fgsm, FGSMOptions),
    EvaluatorSpec("autoattack", "accuracy under AutoAttack (L-inf; needs selfadapt[adversarial]), "
                                "after the last epoch", lambda o: AutoAttackAccuracy(
                                    eps=o.robust_eps, n_ex=o.autoattack_n_ex,
                                    version=o.autoattack_version), AutoAttackOptions),
]
