"""TRADES, TRADES+SAT, PGD-AT and PGD-AT+SAT against the papers' formulas written as plain loops
(numpy float64 on the logits; the inner attack from the reference loops of test_attacks)."""
import copy
import math

import numpy as np
import pytest
import torch
from test_attacks import reference_pgd, reference_trades_attack
from test_sat import reference_sat
from torch import nn

from selfadapt.batch import Batch
from selfadapt.config.run import RunConfig
from selfadapt.errors import SelfAdaptError
from selfadapt.objectives import TRADES, PGDAdversarialTraining, SelfAdaptiveTraining
from selfadapt.objectives.method import MethodContext
from selfadapt.objectives.registry import get_method
from selfadapt.objectives.sat import CrossEntropy

EPS, STEPS, STEP = 0.1, 4, 0.03


def net():
    """Batch norm included: the attack must see it in eval mode, the loss in train mode."""
    torch.manual_seed(0)
    return nn.Sequential(nn.Flatten(), nn.Linear(16, 12), nn.BatchNorm1d(12), nn.ReLU(), nn.Linear(12, 5)).train()


def log_softmax_rows(logits):
    return [[v - math.log(sum(math.exp(u) for u in row)) for v in row] for row in logits.tolist()]


def reference_cross_entropy(logits, labels):
    log_p = log_softmax_rows(logits)
    return sum(-log_p[i][labels[i]] for i in range(len(log_p))) / len(log_p)


def reference_kl(logits_adv, logits):
    """TRADES' robust term: sum_i sum_j p_ij (log p_ij - log q_ij) / B, p clean, q adversarial."""
    log_p, log_q = log_softmax_rows(logits), log_softmax_rows(logits_adv)
    return sum(math.exp(a) * (a - b) for row_p, row_q in zip(log_p, log_q) for a, b in zip(row_p, row_q)) / len(log_p)


def reference_sat_from_clean(targets, clean_logits, loss_logits, labels, index, momentum):
    """SAT with the targets moved towards softmax(clean) and the weighted soft-target CE on loss_logits."""
    targets = targets.copy()
    clean = [[math.exp(v) for v in row] for row in log_softmax_rows(clean_logits)]
    for i, k in enumerate(index):
        targets[k] = momentum * targets[k] + (1 - momentum) * np.array(clean[i])
    weights = [targets[k].max() for k in index]
    log_q = log_softmax_rows(loss_logits)
    b = len(index)
    loss = sum(w * b / sum(weights) * sum(-targets[k][j] * log_q[i][j] for j in range(len(log_q[i])))
               for i, (k, w) in enumerate(zip(index, weights))) / b
    return targets, loss


def batches(n=24, b=8, seed=0):
    gen = torch.Generator().manual_seed(seed)
    x = torch.rand(n, 1, 4, 4, generator=gen)
    x[:, :, 0] = 0.0                                                   # saturated pixels, as in real images
    labels = torch.randint(0, 5, (n,), generator=gen)
    return x, labels, [torch.arange(i, i + b) for i in range(0, n, b)]


def steps_beside_a_reference(model, objective, x, labels, batches_of_index, attack):
    """Two epochs of ``objective`` steps; before each, a copy of the model and the same random draws
    give the reference attack. Yields ``(epoch, index, step output, clean logits, adversarial logits)``,
    the reference logits computed in train mode, as the loss sees them."""
    for epoch in range(2):
        for k, index in enumerate(batches_of_index):
            reference_model = copy.deepcopy(model)
            torch.manual_seed(10 * epoch + k)
            out = objective.training_step(model, Batch((x[index],), labels[index], index), epoch)
            torch.manual_seed(10 * epoch + k)
            x_adv = attack(reference_model, x[index], labels[index])
            with torch.no_grad():
                yield epoch, index, out, reference_model(x[index]), reference_model(x_adv)


@pytest.mark.slow
@pytest.mark.parametrize("sat", [False, True])
def test_trades_and_trades_sat_match_the_formula(sat):
    model = net()
    x, labels, steps = batches()
    natural = SelfAdaptiveTraining(labels, 5, momentum=0.7, start_epoch=1) if sat else CrossEntropy()
    trades = TRADES(natural, beta=6.0, eps=EPS, steps=STEPS, step_size=STEP)
    targets = np.eye(5)[labels.numpy()]
    attack = lambda m, x, y: reference_trades_attack(m, x, EPS, STEPS, STEP)  # noqa: E731
    for epoch, index, out, logits, logits_adv in steps_beside_a_reference(model, trades, x, labels, steps, attack):
        if sat and epoch >= 1:
            targets, natural_loss = reference_sat_from_clean(targets, logits, logits, labels[index].tolist(),
                                                             index.tolist(), 0.7)
        else:
            natural_loss = reference_cross_entropy(logits, labels[index].tolist())
        robust_loss = reference_kl(logits_adv, logits)
        assert robust_loss > 0
        assert out.metrics["natural_loss"].item() == pytest.approx(natural_loss, rel=1e-5)
        assert out.metrics["robust_loss"].item() == pytest.approx(robust_loss, rel=1e-4, abs=1e-7)
        assert out.loss.item() == pytest.approx(natural_loss + 6.0 * robust_loss, rel=1e-5)
        torch.testing.assert_close(out.logits.detach(), logits, rtol=1e-5, atol=1e-6)   # the clean logits
        assert model.training, "back in train mode for the loss"
        out.loss.backward()                                            # the gradient flows through both terms
        assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in model.parameters())
        model.zero_grad()
    if sat:
        np.testing.assert_allclose(natural.targets.numpy(), targets, rtol=1e-5, atol=1e-6)


@pytest.mark.slow
def test_trades_sat_targets_follow_only_the_clean_predictions():
    model = net()
    x, labels, steps = batches()
    sat = SelfAdaptiveTraining(labels, 5, momentum=0.5, start_epoch=0)
    trades = TRADES(sat, beta=6.0, eps=EPS, steps=STEPS, step_size=STEP)
    index = steps[0]
    with torch.no_grad():
        clean = torch.softmax(copy.deepcopy(model)(x[index]), 1)
    trades.training_step(model, Batch((x[index],), labels[index], index), 0)
    expected = 0.5 * nn.functional.one_hot(labels[index], 5).float() + 0.5 * clean
    torch.testing.assert_close(sat.targets[index], expected, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("sat", [False, True])
def test_pgd_at_and_pgd_at_sat_match_the_formula(sat):
    model = net()
    x, labels, steps = batches(seed=1)
    natural = SelfAdaptiveTraining(labels, 5, momentum=0.7, start_epoch=1) if sat else CrossEntropy()
    objective = PGDAdversarialTraining(natural, eps=EPS, steps=STEPS, step_size=STEP)
    targets = np.eye(5)[labels.numpy()]
    attack = lambda m, x, y: reference_pgd(m, x, y, EPS, STEPS, STEP)  # noqa: E731
    for epoch, index, out, logits, logits_adv in steps_beside_a_reference(model, objective, x, labels, steps, attack):
        if sat and epoch >= 1:
            targets, loss = reference_sat_from_clean(targets, logits, logits_adv, labels[index].tolist(),
                                                     index.tolist(), 0.7)
        else:
            loss = reference_cross_entropy(logits_adv, labels[index].tolist())
        assert out.loss.item() == pytest.approx(loss, rel=1e-5)
        torch.testing.assert_close(out.logits.detach(), logits_adv, rtol=1e-5, atol=1e-6)
        assert model.training
    if sat:
        np.testing.assert_allclose(natural.targets.numpy(), targets, rtol=1e-5, atol=1e-6)


def test_sat_update_from_moves_targets_towards_other_logits_than_the_loss():
    labels = torch.tensor([0, 1, 2, 1])
    gen = torch.Generator().manual_seed(0)
    loss_logits, clean_logits = torch.randn(4, 3, generator=gen), torch.randn(4, 3, generator=gen)
    sat = SelfAdaptiveTraining(labels, 3, momentum=0.6, start_epoch=0, dtype=torch.float64)
    loss = sat(loss_logits.double(), labels, torch.arange(4), 0, update_from=clean_logits.double())
    targets, expected = reference_sat_from_clean(np.eye(3)[labels.numpy()], clean_logits.double(), loss_logits.double(),
                                                 labels.tolist(), list(range(4)), 0.6)
    assert loss.item() == pytest.approx(expected, rel=1e-6)   # SAT computes in float32
    np.testing.assert_allclose(sat.targets.numpy(), targets, rtol=1e-6)
    plain = SelfAdaptiveTraining(labels, 3, momentum=0.6, start_epoch=0, dtype=torch.float64)
    _, same = reference_sat(np.eye(3)[labels.numpy()], loss_logits.double().numpy(), labels.numpy(), np.arange(4),
                            0, 0.6, 0)
    assert plain(loss_logits.double(), labels, torch.arange(4), 0).item() == pytest.approx(same, rel=1e-6)


@pytest.mark.parametrize("name, kind, natural", [("trades", TRADES, CrossEntropy),
                                                  ("trades-sat", TRADES, SelfAdaptiveTraining),
                                                  ("pgd-at", PGDAdversarialTraining, CrossEntropy),
                                                  ("pgd-at-sat", PGDAdversarialTraining, SelfAdaptiveTraining)])
def test_registered_methods_build_with_the_authors_defaults(name, kind, natural):
    method = get_method(name)
    labels = torch.randint(0, 10, (50,))
    objective = method.build(MethodContext(labels=labels, num_classes=10, epochs=100), method.parse({}))
    assert type(objective) is kind and type(objective.natural) is natural
    assert (objective.eps, objective.steps, objective.step_size) == (0.031, 10, 0.007)
    if kind is TRADES:
        assert objective.beta == 6.0
    if natural is SelfAdaptiveTraining:
        assert (objective.natural.store.momentum, objective.natural.start_epoch) == (0.9, 69)
    assert method.evaluators == ("accuracy", "pgd")


@pytest.mark.parametrize("flat, message", [
    ({"method": "trades", "attack_eps": 2.0}, "attack_eps must lie in \\[0, 1\\]"),
    ({"method": "pgd-at", "attack_steps": 0}, "attack_steps must be >= 1"),
    ({"method": "trades-sat", "epochs": 50}, "SAT starts at epoch 69"),
    ({"method": "trades", "robust_eps": -0.1, "evaluators": ["pgd"]}, "robust_eps must lie in \\[0, 1\\]"),
    ({"method": "trades", "evaluators": ["pgd-50"]}, "unknown evaluator 'pgd-50'"),
])
def test_bad_adversarial_settings_are_one_clear_error(flat, message):
    with pytest.raises(SelfAdaptError, match=message):
        RunConfig.from_flat({"dataset": "digits", **flat})
