"""SAT loss and target update against a plain, loop-by-loop reference of SPEC section 1."""
import math

import numpy as np
import pytest
import torch

from selfadapt import SelfAdaptiveTraining, TargetStore, width_scaled


def reference_sat(targets, logits, labels, index, epoch, momentum, start_epoch, sce=None):
    """SPEC section 1 written with Python loops over samples and classes (numpy float64)."""
    targets = targets.copy()
    b, c = logits.shape
    log_p = [[logits[i, j] - math.log(sum(math.exp(v) for v in logits[i])) for j in range(c)] for i in range(b)]
    if epoch < start_epoch:  # plain cross-entropy, with or without SCE (the authors' SAT-SCE)
        return targets, sum(-log_p[i][labels[i]] for i in range(b)) / b
    for i in range(b):
        p = [math.exp(v) for v in log_p[i]]
        for j in range(c):
            targets[index[i], j] = momentum * targets[index[i], j] + (1 - momentum) * p[j]
    soft = [list(targets[index[i]]) for i in range(b)]
    weights = [max(row) for row in soft]
    total = sum(weights)
    weights = [w * b / total for w in weights]
    loss = 0.0
    for i in range(b):
        per = sum(-soft[i][j] * log_p[i][j] for j in range(c))
        if sce is not None:
            a, beta = sce
            rev = sum(-math.exp(log_p[i][j]) * math.log(max(soft[i][j], 1e-4)) for j in range(c))
            per = a * per + beta * rev
        loss += weights[i] * per
    return targets, loss / b


@pytest.mark.parametrize("num_classes,batch", [(3, 4), (10, 16), (7, 1)])
@pytest.mark.parametrize("sce", [None, (1.0, 0.3)])
def test_sat_matches_reference_over_epochs(num_classes, batch, sce):
    gen = torch.Generator().manual_seed(num_classes * 100 + batch)
    n = 3 * batch
    labels = torch.randint(0, num_classes, (n,), generator=gen)
    sat = SelfAdaptiveTraining(labels, num_classes, momentum=0.8, start_epoch=1, sce_weights=sce,
                               dtype=torch.float64)
    ref_targets = np.eye(num_classes)[labels.numpy()]
    for epoch in range(3):
        for step in range(3):
            index = torch.randperm(n, generator=gen)[:batch]
            logits = torch.randn(batch, num_classes, generator=gen, dtype=torch.float64) * 3
            loss = sat(logits, labels[index], index, epoch)
            ref_targets, ref_loss = reference_sat(ref_targets, logits.numpy(), labels[index].numpy(),
                                                  index.numpy(), epoch, 0.8, 1, sce)
            assert loss.item() == pytest.approx(ref_loss, rel=1e-6, abs=1e-6)
            np.testing.assert_allclose(sat.targets.numpy(), ref_targets, rtol=1e-6, atol=1e-9)


def test_sat_sce_is_plain_cross_entropy_before_start_epoch_and_sce_after():
    gen = torch.Generator().manual_seed(7)
    labels = torch.randint(0, 5, (8,), generator=gen)
    sat = SelfAdaptiveTraining(labels, 5, momentum=0.9, start_epoch=2, sce_weights=(1.0, 0.3),
                               dtype=torch.float64)
    for epoch in range(2):
        logits = (torch.randn(8, 5, generator=gen) * 3).requires_grad_()
        plain = logits.detach().clone().requires_grad_()
        loss = sat(logits, labels, torch.arange(8), epoch)
        loss.backward()
        expected = torch.nn.functional.cross_entropy(plain, labels)
        expected.backward()
        assert torch.equal(loss, expected)
        assert torch.equal(logits.grad, plain.grad)
        assert torch.equal(sat.targets, torch.eye(5, dtype=torch.float64)[labels])
    ref_targets = np.eye(5)[labels.numpy()]
    for epoch in (2, 3):
        logits = torch.randn(8, 5, generator=gen, dtype=torch.float64) * 3
        loss = sat(logits, labels, torch.arange(8), epoch)
        ref_targets, ref_loss = reference_sat(ref_targets, logits.numpy(), labels.numpy(), np.arange(8),
                                              epoch, 0.9, 2, (1.0, 0.3))
        assert loss.item() == pytest.approx(ref_loss, rel=1e-6, abs=1e-6)
        np.testing.assert_allclose(sat.targets.numpy(), ref_targets, rtol=1e-6, atol=1e-9)
        assert loss.item() != pytest.approx(torch.nn.functional.cross_entropy(logits, labels).item(), rel=1e-3)


def test_targets_untouched_before_start_epoch_and_loss_is_cross_entropy():
    labels = torch.tensor([0, 1, 2, 0])
    sat = SelfAdaptiveTraining(labels, 3, momentum=0.9, start_epoch=5)
    logits = torch.randn(4, 3)
    loss = sat(logits, labels, torch.arange(4), epoch=4)
    assert torch.equal(sat.targets, torch.eye(3)[labels])
    assert loss.item() == pytest.approx(torch.nn.functional.cross_entropy(logits, labels).item())


def test_update_happens_before_the_loss_and_weights_average_to_one():
    # one sample per class, a confident wrong prediction: the target moves before the loss uses it
    labels = torch.tensor([0, 1])
    sat = SelfAdaptiveTraining(labels, 2, momentum=0.5, start_epoch=0)
    logits = torch.tensor([[-20.0, 20.0], [0.0, 0.0]], requires_grad=True)
    loss = sat(logits, labels, torch.tensor([0, 1]), epoch=0)
    loss.backward()
    np.testing.assert_allclose(sat.targets[0].numpy(), [0.5, 0.5], atol=1e-6)
    np.testing.assert_allclose(sat.targets[1].numpy(), [0.25, 0.75], atol=1e-6)
    # the weights, recomputed from the updated targets: w = max_j t_ij, rescaled to sum to B
    t = sat.targets.double().tolist()
    w = [max(row) for row in t]
    w = [v * len(w) / sum(w) for v in w]
    assert w == pytest.approx([0.8, 1.2]) and sum(w) / len(w) == pytest.approx(1.0, abs=1e-12)
    z = logits.detach().double().tolist()
    ce = [-sum(tj * (zj - math.log(sum(math.exp(v) for v in zi))) for tj, zj in zip(ti, zi)) for ti, zi in zip(t, z)]
    assert loss.item() == pytest.approx(sum(wi * ci for wi, ci in zip(w, ce)) / len(w), rel=1e-6)
    # gradient only through log_softmax: targets and weights are constants
    assert logits.grad is not None and torch.isfinite(logits.grad).all()


def test_loss_gradient_treats_targets_and_weights_as_constants():
    labels = torch.tensor([0, 1, 1])
    sat = SelfAdaptiveTraining(labels, 2, momentum=0.9, start_epoch=0)
    logits = torch.randn(3, 2, requires_grad=True)
    loss = sat(logits, labels, torch.arange(3), epoch=0)
    loss.backward()
    t = sat.targets
    w = t.max(1).values
    w = w * 3 / w.sum()
    expected = (w[:, None] * (torch.softmax(logits.detach(), 1) - t)) / 3
    np.testing.assert_allclose(logits.grad.numpy(), expected.numpy(), atol=1e-6)


def test_suspected_label_errors_ranked_by_confidence():
    labels = torch.tensor([0, 1, 2, 0])
    sat = SelfAdaptiveTraining(labels, 3, momentum=0.0, start_epoch=0)
    probs = torch.tensor([[0.9, 0.05, 0.05], [0.6, 0.3, 0.1], [0.1, 0.1, 0.8], [0.05, 0.9, 0.05]])
    sat(probs.log(), labels, torch.arange(4), epoch=0)
    issues = sat.suspected_label_errors()
    assert issues.index.tolist() == [3, 1]
    assert issues.suggested_label.tolist() == [1, 0]
    assert issues.given_label.tolist() == [0, 1]
    np.testing.assert_allclose(issues.confidence.numpy(), [0.9, 0.6], atol=1e-6)


def test_state_dict_round_trip_and_dtype():
    labels = torch.tensor([1, 0, 1])
    sat = SelfAdaptiveTraining(labels, 2, momentum=0.9, start_epoch=0, dtype=torch.float16)
    sat(torch.randn(2, 2), labels[:2], torch.tensor([0, 1]), epoch=0)
    assert sat.targets.dtype == torch.float16
    fresh = SelfAdaptiveTraining(labels, 2, momentum=0.9, start_epoch=0, dtype=torch.float16)
    fresh.load_state_dict(sat.state_dict())
    assert torch.equal(fresh.targets, sat.targets)


def test_bf16_logits_give_float32_loss():
    labels = torch.tensor([0, 1])
    sat = SelfAdaptiveTraining(labels, 2, momentum=0.9, start_epoch=0)
    loss = sat(torch.randn(2, 2).bfloat16(), labels, torch.arange(2), epoch=0)
    assert loss.dtype == torch.float32 and sat.targets.dtype == torch.float32


@pytest.mark.parametrize("bad", [-0.1, 1.0, 1.5])
def test_momentum_out_of_range_is_refused(bad):
    with pytest.raises(ValueError, match="momentum"):
        SelfAdaptiveTraining(torch.tensor([0]), 2, momentum=bad)


def test_target_store_update_and_read():
    store = TargetStore(torch.zeros(5, 2), momentum=0.75)
    rows = store.update(torch.tensor([4, 1]), torch.tensor([[1.0, 0.0], [0.0, 4.0]]))
    np.testing.assert_allclose(rows.numpy(), [[0.25, 0.0], [0.0, 1.0]])
    np.testing.assert_allclose(store.read(torch.tensor([1])).numpy(), [[0.0, 1.0]])
    assert len(store) == 5 and store.values[0].abs().sum() == 0


def test_width_rule():
    momentum, start = width_scaled(0.9, 40, 16)
    assert momentum == pytest.approx(0.9 ** 0.25) and start == 160
