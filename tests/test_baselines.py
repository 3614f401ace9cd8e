"""Noisy-label baselines against plain float64 references written from the papers' formulas."""
import copy
import io
import math
from fractions import Fraction

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from selfadapt.batch import Batch
from selfadapt.errors import SelfAdaptError
from selfadapt.objectives.base import LogitLoss
from selfadapt.objectives.baselines import (
    EarlyLearningRegularization,
    GeneralizedCrossEntropy,
    HardBootstrapping,
    LabelSmoothing,
    Mixup,
    SoftBootstrapping,
    SymmetricCrossEntropy,
)
from selfadapt.objectives.coteaching import CoTeaching, small_loss_selection
from selfadapt.objectives.method import MethodContext
from selfadapt.objectives.registry import build_objective, methods

SHAPES = [(1, 2), (7, 3), (32, 10), (16, 100)]
BASELINES = ["ls", "bootstrap-soft", "bootstrap-hard", "gce", "sce", "elr", "mixup", "coteaching"]


def close(actual, expected):
    np.testing.assert_allclose(np.asarray(actual, dtype=np.float64), expected, rtol=2e-5, atol=1e-6)


def batch(b, c, seed=0, scale=3.0):
    rng = np.random.default_rng(seed)
    logits = (scale * rng.standard_normal((b, c))).astype(np.float32)
    labels = rng.integers(0, c, size=b)
    return logits, labels


def probs(row):
    """Softmax of one row, in float64, with a loop."""
    row = [float(v) for v in row]
    top = max(row)
    exps = [math.exp(v - top) for v in row]
    total = sum(exps)
    return [e / total for e in exps]


def soft_target_ce(logits, target_rows):
    """mean_i -sum_j t_ij log p_ij."""
    total = 0.0
    for row, target in zip(logits, target_rows):
        p = probs(row)
        total += -sum(t * math.log(pj) for t, pj in zip(target, p))
    return total / len(logits)


def one_hot(label, c):
    return [1.0 if j == label else 0.0 for j in range(c)]


def run(loss, logits, labels, index=None, epoch=0):
    z = torch.tensor(logits, requires_grad=True)
    index = torch.arange(len(labels)) if index is None else torch.as_tensor(index)
    value = loss(z, torch.as_tensor(labels), index, epoch)
    value.backward()
    return value.item(), z.grad.numpy().astype(np.float64)


def assert_soft_target_ce(loss, logits, labels, target_rows):
    """``loss`` is cross-entropy against constant soft targets: the value and the gradient (p - t) / B."""
    value, grad = run(loss, logits, labels)
    close(value, soft_target_ce(logits, target_rows))
    b = len(logits)
    close(grad, np.array([[(pj - tj) / b for pj, tj in zip(probs(row), t)] for row, t in zip(logits, target_rows)]))


# ---------------------------------------------------------------- label smoothing

@pytest.mark.parametrize("b,c", SHAPES)
@pytest.mark.parametrize("eps", [0.0, 0.1, 0.4])
def test_label_smoothing_matches_reference(b, c, eps):
    logits, labels = batch(b, c, seed=b + c)
    targets = [[(1 - eps) * t + eps / c for t in one_hot(y, c)] for y in labels]
    assert_soft_target_ce(LabelSmoothing(eps), logits, labels, targets)


# ---------------------------------------------------------------- bootstrapping

@pytest.mark.parametrize("b,c", SHAPES)
@pytest.mark.parametrize("beta", [0.95, 0.8, 1.0])
def test_soft_bootstrapping_matches_reference(b, c, beta):
    logits, labels = batch(b, c, seed=2 * b + c)
    expected = 0.0
    for row, y in zip(logits, labels):
        p = probs(row)
        expected += -sum((beta * t + (1 - beta) * pj) * math.log(pj) for t, pj in zip(one_hot(y, c), p))
    value, grad = run(SoftBootstrapping(beta), logits, labels)
    close(value, expected / b)
    # The prediction in the target is differentiated through (minimum-entropy regulariser).
    z = torch.tensor(logits, dtype=torch.float64, requires_grad=True)
    p = torch.softmax(z, 1)
    target = beta * F.one_hot(torch.as_tensor(labels), c) + (1 - beta) * p
    (-(target * torch.log(p)).sum(1).mean()).backward()
    close(grad, z.grad.numpy())


def test_soft_bootstrapping_is_not_scaled_cross_entropy():
    """Detaching p would leave beta * CE's gradient; the entropy term must change it."""
    logits, labels = batch(8, 5, seed=3)
    _, grad = run(SoftBootstrapping(0.95), logits, labels)
    _, ce_grad = run(lambda z, y, i, e: 0.95 * F.cross_entropy(z, y), logits, labels)
    assert np.abs(grad - ce_grad).max() > 1e-4


@pytest.mark.parametrize("b,c", SHAPES)
@pytest.mark.parametrize("beta", [0.8, 0.5, 1.0])
def test_hard_bootstrapping_matches_reference(b, c, beta):
    logits, labels = batch(b, c, seed=3 * b + c)
    targets = []
    for row, y in zip(logits, labels):
        predicted = max(range(c), key=lambda j: row[j])
        targets.append([beta * t + (1 - beta) * h for t, h in zip(one_hot(y, c), one_hot(predicted, c))])
    assert_soft_target_ce(HardBootstrapping(beta), logits, labels, targets)


# ---------------------------------------------------------------- GCE

@pytest.mark.parametrize("b,c", SHAPES)
@pytest.mark.parametrize("q", [0.1, 0.7, 1.0])
def test_gce_matches_reference(b, c, q):
    logits, labels = batch(b, c, seed=4 * b + c)
    expected, expected_grad = 0.0, []
    for row, y in zip(logits, labels):
        p = probs(row)
        expected += (1 - p[y] ** q) / q
        # d/dz_j (1 - p_y^q) / q = p_y^q (p_j - [j == y])
        expected_grad.append([p[y] ** q * (pj - t) / b for pj, t in zip(p, one_hot(y, c))])
    value, grad = run(GeneralizedCrossEntropy(q), logits, labels)
    close(value, expected / b)
    close(grad, np.array(expected_grad))


def test_gce_tends_to_cross_entropy_as_q_vanishes():
    logits, labels = batch(16, 10, seed=5)
    value, _ = run(GeneralizedCrossEntropy(1e-4), logits, labels)
    ce = soft_target_ce(logits, [one_hot(y, 10) for y in labels])
    assert abs(value - ce) < 1e-2 * ce


# ---------------------------------------------------------------- SCE

@pytest.mark.parametrize("b,c", SHAPES)
@pytest.mark.parametrize("alpha,beta", [(0.1, 1.0), (6.0, 0.1), (1.0, 0.0)])
def test_sce_matches_reference(b, c, alpha, beta):
    logits, labels = batch(b, c, seed=5 * b + c, scale=8.0)  # large logits: p hits the 1e-7 clamp
    log_zero = math.log(1e-4)
    expected = 0.0
    for row, y in zip(logits, labels):
        p = probs(row)
        ce = -math.log(p[y])
        rce = -sum(max(pj, 1e-7) * log_zero for j, pj in enumerate(p) if j != y)
        expected += alpha * ce + beta * rce
    value, grad = run(SymmetricCrossEntropy(alpha, beta), logits, labels)
    close(value, expected / b)
    assert np.isfinite(grad).all() and (beta == 0 or np.abs(grad).max() > 0)


# ---------------------------------------------------------------- ELR

@pytest.mark.parametrize("b,c", [(7, 3), (32, 10), (16, 100)])
@pytest.mark.parametrize("beta,lam", [(0.7, 3.0), (0.9, 7.0), (0.5, 1.0)])
def test_elr_two_steps_match_reference(b, c, beta, lam):
    n = 2 * b
    rng = np.random.default_rng(b + c)
    elr = EarlyLearningRegularization(n, c, beta=beta, lam=lam)
    reference_targets = np.zeros((n, c))
    first = rng.permutation(n)[:b]
    second = np.concatenate([first[: b // 2], rng.permutation(np.setdiff1d(np.arange(n), first))[: b - b // 2]])
    for step, index in enumerate([first, second]):
        logits, labels = batch(b, c, seed=10 * step + c)
        expected = 0.0
        for row, y, i in zip(logits, labels, index):
            p = [min(max(pj, 1e-4), 1 - 1e-4) for pj in probs(row)]
            total = sum(p)
            reference_targets[i] = [beta * t + (1 - beta) * pj / total for t, pj in zip(reference_targets[i], p)]
            inner = sum(t * pj for t, pj in zip(reference_targets[i], p))
            expected += -math.log(probs(row)[y]) + lam * math.log(1 - inner)
        value, grad = run(elr, logits, labels, index)
        close(value, expected / b)
        close(elr.targets.numpy(), reference_targets)
        # gradient: the targets are constants, p is clamped (no gradient where the clamp is active)
        z = torch.tensor(logits, dtype=torch.float64, requires_grad=True)
        p = torch.softmax(z, 1).clamp(1e-4, 1 - 1e-4)
        t = torch.tensor(reference_targets[index])
        (F.cross_entropy(z, torch.as_tensor(labels)) + lam * torch.log(1 - (t * p).sum(1)).mean()).backward()
        close(grad, z.grad.numpy())


def test_elr_targets_start_at_zero_and_travel_in_state_dict():
    ctx = MethodContext(labels=torch.tensor([0, 1, 2, 1, 0]), num_classes=3, epochs=1)
    objective = build_objective("elr", ctx)
    assert torch.equal(objective.loss.targets, torch.zeros(5, 3))
    model = torch.nn.Linear(4, 3)
    objective.training_step(model, Batch((torch.randn(3, 4),), torch.tensor([0, 1, 2]), torch.tensor([4, 0, 2])), 0)
    buffer = io.BytesIO()
    torch.save(objective.state_dict(), buffer)
    buffer.seek(0)
    restored = build_objective("elr", ctx)
    restored.load_state_dict(torch.load(buffer, weights_only=True))
    assert torch.equal(restored.loss.targets, objective.loss.targets)
    assert objective.loss.targets[[4, 0, 2]].sum(1).allclose(torch.full((3,), 0.3))


# ---------------------------------------------------------------- mixup

def linear_reference(model, x):
    weight = model.weight.detach().double().numpy()
    bias = model.bias.detach().double().numpy()
    return x @ weight.T + bias


@pytest.mark.parametrize("b,c", [(2, 3), (16, 10)])
@pytest.mark.parametrize("alpha", [8.0, 1.0, 0.2])
def test_mixup_matches_reference_with_the_same_draw(b, c, alpha):
    torch.manual_seed(b + c)
    model = torch.nn.Linear(6, c)
    x, y = torch.randn(b, 6), torch.randint(0, c, (b,))
    mixup = Mixup(alpha, seed=b)
    twin = Mixup(alpha, seed=12345)
    twin.load_state_dict(copy.deepcopy(mixup.state_dict()))
    out = mixup.training_step(model, Batch((x,), y, torch.arange(b)), 0)
    lam, perm = twin.sample(b)
    assert 0.0 <= lam <= 1.0 and sorted(perm.tolist()) == list(range(b))
    xn, yn, pn = x.double().numpy(), y.numpy(), perm.numpy()
    logits = linear_reference(model, lam * xn + (1 - lam) * xn[pn])
    expected = 0.0
    for row, ya, yb in zip(logits, yn, yn[pn]):
        p = probs(row)
        expected += -lam * math.log(p[ya]) - (1 - lam) * math.log(p[yb])
    close(out.loss.item(), expected / b)
    close(out.logits.detach().numpy(), logits)
    out.loss.backward()
    assert model.weight.grad is not None and model.weight.grad.abs().sum() > 0


def test_mixup_is_reproducible_and_resumes_exactly():
    first, second = Mixup(8.0, seed=7), Mixup(8.0, seed=7)
    for _ in range(3):
        lam1, perm1 = first.sample(10)
        lam2, perm2 = second.sample(10)
        assert lam1 == lam2 and torch.equal(perm1, perm2)
    assert Mixup(8.0, seed=8).sample(10)[0] != first.sample(10)[0]
    buffer = io.BytesIO()
    torch.save(first.state_dict(), buffer)
    buffer.seek(0)
    resumed = Mixup(8.0, seed=0)
    resumed.load_state_dict(torch.load(buffer, weights_only=True))
    for _ in range(3):
        lam1, perm1 = first.sample(10)
        lam2, perm2 = resumed.sample(10)
        assert lam1 == lam2 and torch.equal(perm1, perm2)


@pytest.mark.parametrize("alpha", [0.5, 8.0])
def test_mixup_lambda_follows_beta_distribution(alpha):
    mixup = Mixup(alpha, seed=1)
    lams = np.array([mixup.sample(1)[0] for _ in range(4000)])
    variance = 1.0 / (4.0 * (2.0 * alpha + 1.0))  # Var Beta(a, a)
    assert abs(lams.mean() - 0.5) < 4 * math.sqrt(variance / len(lams))
    assert abs(lams.var() / variance - 1.0) < 0.1


def test_mixup_alpha_zero_is_cross_entropy():
    model = torch.nn.Linear(4, 3)
    x, y = torch.randn(5, 4), torch.tensor([0, 1, 2, 0, 1])
    out = Mixup(0.0).training_step(model, Batch((x,), y, torch.arange(5)), 0)
    assert torch.allclose(out.loss, F.cross_entropy(model(x), y))


# ---------------------------------------------------------------- co-teaching

@pytest.mark.parametrize("tau,tk,c,epoch,expected", [
    (0.4, 10, 1.0, 0, 0.0), (0.4, 10, 1.0, 5, 0.2), (0.4, 10, 1.0, 10, 0.4), (0.4, 10, 1.0, 150, 0.4),
    (0.2, 10, 1.0, 1, 0.02), (0.5, 10, 2.0, 5, 0.125), (0.5, 4, 0.5, 1, 0.25), (0.3, 0, 1.0, 0, 0.3),
])
def test_forget_rate_schedule(tau, tk, c, epoch, expected):
    objective = CoTeaching(torch.nn.Linear(2, 2), forget_rate=tau, gradual_epochs=tk, exponent=c)
    assert objective.forget_rate_at(epoch) == pytest.approx(expected, abs=1e-12)


@pytest.mark.parametrize("b,rate", [(10, 0.0), (10, 0.2), (10, 0.7), (10, 0.9), (7, 0.3), (256, 0.45), (3, 0.8)])
def test_small_loss_selection_keeps_the_smallest(b, rate):
    losses = np.random.default_rng(b).exponential(size=b)
    keep = max(1, math.floor((1 - Fraction(str(rate))) * b))
    chosen = small_loss_selection(torch.tensor(losses), rate).tolist()
    assert len(chosen) == keep
    assert set(chosen) == set(sorted(range(b), key=lambda i: losses[i])[:keep])


def per_sample_ce(logits, labels):
    return np.array([-math.log(probs(row)[y]) for row, y in zip(logits, labels)])


def ce_weight_grad(logits, labels, x, rows):
    """d/dW of mean_{i in rows} CE(W x_i + b, y_i)."""
    grad = np.zeros((logits.shape[1], x.shape[1]))
    for i in rows:
        error = np.array(probs(logits[i])) - np.array(one_hot(labels[i], logits.shape[1]))
        grad += np.outer(error, x[i])
    return grad / len(rows)


@pytest.mark.parametrize("b,c,epoch,tau", [(16, 4, 20, 0.5), (25, 3, 3, 0.4), (9, 5, 0, 0.3)])
def test_coteaching_trains_each_network_on_the_others_small_loss_samples(b, c, epoch, tau):
    torch.manual_seed(b)
    model, peer = torch.nn.Linear(5, c), torch.nn.Linear(5, c)
    x, y = torch.randn(b, 5), torch.randint(0, c, (b,))
    objective = CoTeaching(peer, forget_rate=tau)
    out = objective.training_step(model, Batch((x,), y, torch.arange(b)), epoch)
    out.loss.backward()

    xn, yn = x.double().numpy(), y.numpy()
    logits, peer_logits = linear_reference(model, xn), linear_reference(peer, xn)
    losses, peer_losses = per_sample_ce(logits, yn), per_sample_ce(peer_logits, yn)
    rate = tau * min(epoch / 10, 1)
    keep = max(1, math.floor((1 - rate) * b + 1e-9))
    by_model = list(np.argsort(losses)[:keep])
    by_peer = list(np.argsort(peer_losses)[:keep])
    if rate > 0:
        assert set(by_model) != set(by_peer)  # otherwise the test could not tell who trains whom
    close(out.loss.item(), losses[by_peer].mean() + peer_losses[by_model].mean())
    close(out.logits.detach().numpy(), logits)
    close(model.weight.grad.numpy(), ce_weight_grad(logits, yn, xn, by_peer))
    close(peer.weight.grad.numpy(), ce_weight_grad(peer_logits, yn, xn, by_model))


def test_coteaching_peer_is_a_submodule_following_the_models_mode():
    peer = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.Dropout(0.5))
    objective = CoTeaching(peer)
    assert {id(p) for p in objective.parameters()} == {id(p) for p in peer.parameters()}
    model = torch.nn.Linear(4, 3).eval()
    objective.training_step(model, Batch((torch.randn(4, 4),), torch.tensor([0, 1, 2, 0]), torch.arange(4)), 0)
    assert not peer.training
    model.train()
    objective.training_step(model, Batch((torch.randn(4, 4),), torch.tensor([0, 1, 2, 0]), torch.arange(4)), 0)
    assert peer.training


def test_coteaching_forget_rate_defaults_to_the_realised_label_error_rate():
    ctx = MethodContext(labels=torch.zeros(4, dtype=torch.long), num_classes=3, epochs=1,
                        model_factory=lambda: torch.nn.Linear(4, 3), label_error_rate=0.36)
    assert build_objective("coteaching", ctx).forget_rate == 0.36
    objective = build_objective("coteaching", ctx, {"coteaching_forget_rate": 0.3, "coteaching_tk": 5})
    assert objective.forget_rate == 0.3 and objective.forget_rate_at(5) == pytest.approx(0.3)
    peer = objective.peer
    assert peer is not build_objective("coteaching", ctx).peer


def test_coteaching_needs_a_forget_rate_where_the_error_rate_is_unknown():
    ctx = MethodContext(labels=torch.zeros(4, dtype=torch.long), num_classes=3, epochs=1,
                        model_factory=lambda: torch.nn.Linear(4, 3))
    with pytest.raises(SelfAdaptError, match="--coteaching-forget-rate"):
        build_objective("coteaching", ctx)
    assert build_objective("coteaching", ctx, {"coteaching_forget_rate": 0.25}).forget_rate == 0.25


def test_coteaching_needs_a_model_factory():
    ctx = MethodContext(labels=torch.zeros(4, dtype=torch.long), num_classes=3, epochs=1, label_error_rate=0.2)
    with pytest.raises(SelfAdaptError, match="model_factory"):
        build_objective("coteaching", ctx)


# ---------------------------------------------------------------- registry

def context():
    return MethodContext(labels=torch.tensor([0, 1, 2, 2, 1, 0]), num_classes=3, epochs=5,
                         model_factory=lambda: torch.nn.Linear(4, 3), label_error_rate=0.2)


@pytest.mark.parametrize("name", BASELINES)
def test_every_baseline_builds_and_trains(name):
    assert name in methods()
    objective = build_objective(name, context())
    model = torch.nn.Linear(4, 3)
    out = objective.training_step(model, Batch((torch.randn(4, 4),), torch.tensor([0, 1, 2, 1]), torch.tensor([5, 1, 2, 3])), 3)
    assert out.loss.dim() == 0 and torch.isfinite(out.loss) and out.logits.shape == (4, 3)
    out.loss.backward()
    assert model.weight.grad.abs().sum() > 0


@pytest.mark.parametrize("name", ["ls", "bootstrap-soft", "bootstrap-hard", "gce", "sce", "elr"])
def test_logit_losses_compute_in_float32(name):
    objective = build_objective(name, context())
    assert isinstance(objective, LogitLoss)
    logits = torch.randn(4, 3).to(torch.bfloat16).requires_grad_()
    loss = objective.loss(logits, torch.tensor([0, 1, 2, 1]), torch.tensor([0, 1, 2, 3]), 0)
    assert loss.dtype == torch.float32


@pytest.mark.parametrize("name,options", [
    ("ls", {"ls_smoothing": 0.1}), ("bootstrap-soft", {"bootstrap_beta": 0.95}),
    ("bootstrap-hard", {"bootstrap_beta": 0.8}), ("gce", {"gce_q": 0.7}),
    ("sce", {"sce_alpha": 0.1, "sce_beta": 1.0}), ("elr", {"elr_beta": 0.7, "elr_lambda": 3.0}),
    ("mixup", {"mixup_alpha": 8.0}),
])
def test_defaults_are_the_papers(name, options):
    built = build_objective(name, context())
    explicit = build_objective(name, context(), options)
    attrs = lambda o: {k: v for m in o.modules() for k, v in vars(m).items() if isinstance(v, float)}
    assert attrs(built) == attrs(explicit) and attrs(built)


@pytest.mark.parametrize("name,options", [
    ("ls", {"ls_smoothing": 1.0}), ("ls", {"ls_smoothing": -0.1}), ("bootstrap-soft", {"bootstrap_beta": 1.2}),
    ("bootstrap-hard", {"bootstrap_beta": -0.5}), ("gce", {"gce_q": 0.0}), ("gce", {"gce_q": 1.5}),
    ("gce", {"gce_q": float("nan")}), ("sce", {"sce_alpha": -1.0}), ("sce", {"sce_beta": -0.1}),
    ("elr", {"elr_beta": 1.0}), ("elr", {"elr_lambda": -3.0}), ("mixup", {"mixup_alpha": -1.0}),
    ("coteaching", {"coteaching_forget_rate": 1.0}), ("coteaching", {"coteaching_forget_rate": -0.1}),
    ("coteaching", {"coteaching_tk": -1}), ("coteaching", {"coteaching_tk": 2.5}),
])
def test_out_of_range_options_are_rejected(name, options):
    with pytest.raises(SelfAdaptError):
        build_objective(name, context(), options)
