"""SAT's automatic start epoch and momentum (selfadapt.auto_start) and the finder's warnings."""
import warnings

import pytest
import torch
import torch.nn.functional as F

from selfadapt import SelfAdaptiveTraining
from selfadapt.apps.noisy_labels.finder import trust_warnings
from selfadapt.errors import SelfAdaptError
from selfadapt.label_errors import suspected_label_errors
from selfadapt.objectives.auto_start import AUTO_MOMENTUM_CAP, momentum_for, stratified_holdout


def logits_predicting(labels, correct, num_classes):
    """Logits whose argmax is ``labels`` where ``correct`` and the next class elsewhere."""
    predicted = torch.where(correct, labels, (labels + 1) % num_classes)
    return 5.0 * F.one_hot(predicted, num_classes).float()


def run_epochs(sat, labels, accuracies, num_classes, start_at=0):
    """One full-batch epoch per held-out accuracy in ``accuracies`` (same share right on every sample)."""
    index = torch.arange(len(labels))
    for epoch, accuracy in enumerate(accuracies, start=start_at):
        correct = torch.rand(len(labels), generator=torch.Generator().manual_seed(epoch)) < accuracy
        sat(logits_predicting(labels, correct, num_classes), labels, index, epoch)
        record = sat.end_epoch(epoch)
    return record


def test_momentum_leaves_the_residue_and_never_exceeds_the_cap():
    assert momentum_for(5, 0.01) == pytest.approx(0.01 ** 0.2) and momentum_for(5, 0.01) ** 5 == pytest.approx(0.01)
    assert momentum_for(10, 0.01, cap=1.0) ** 10 == pytest.approx(0.01)
    assert momentum_for(500) == AUTO_MOMENTUM_CAP == 0.6 and momentum_for(0) == 0.0


def test_holdout_is_stratified_seeded_and_never_a_whole_class():
    labels = torch.tensor([0] * 50 + [1] * 30 + [2] * 1)
    held = stratified_holdout(labels, 0.2, seed=3)
    assert [int(held[labels == c].sum()) for c in range(3)] == [10, 6, 0]
    assert torch.equal(held, stratified_holdout(labels, 0.2, seed=3))
    assert not torch.equal(held, stratified_holdout(labels, 0.2, seed=4))


def test_held_out_samples_get_no_gradient_until_sat_starts_then_do():
    labels = torch.arange(400) % 4
    sat = SelfAdaptiveTraining(labels, 4, momentum="auto", start_epoch="auto", epochs=30, patience=2)
    held = sat.auto.held_out
    assert 0 < held.sum() < len(labels)
    logits = torch.randn(400, 4, requires_grad=True)
    sat(logits, labels, torch.arange(400), 0).backward()
    assert torch.all(logits.grad[held] == 0) and torch.all(logits.grad[~held].abs().sum(1) > 0)
    assert torch.equal(sat.targets, F.one_hot(labels, 4).float())  # no target moves before the start


def test_start_follows_the_peak_of_held_out_accuracy_and_momentum_the_epochs_left():
    labels = torch.arange(1000) % 5
    sat = SelfAdaptiveTraining(labels, 5, momentum="auto", start_epoch="auto", epochs=40, patience=2)
    record = run_epochs(sat, labels, [0.3, 0.5, 0.6, 0.55, 0.5], 5)  # peak at epoch 2, 2 epochs without a gain
    assert sat.start_epoch == 5 and record["sat_start_epoch"] == 5 and record["sat_start_best_epoch"] == 2
    assert record["sat_start_capped"] == 0.0 and "peaked at epoch 2" in sat.auto.describe()
    assert sat.momentum == pytest.approx(momentum_for(35)) and record["sat_momentum"] == sat.momentum
    assert record["sat_start_best_holdout_accuracy"] == pytest.approx(0.6, abs=0.1)
    index = torch.arange(1000)
    logits = torch.randn(1000, 5, requires_grad=True)
    sat(logits, labels, index, 5).backward()  # now every sample, held out or not, trains and is updated
    assert torch.all(logits.grad.abs().sum(1) > 0) and not torch.equal(sat.targets, F.one_hot(labels, 5).float())


def test_a_run_too_short_to_peak_starts_at_the_latest_epoch():
    labels = torch.arange(500) % 2
    sat = SelfAdaptiveTraining(labels, 2, start_epoch="auto", momentum=0.8, epochs=10, patience=3)
    record = run_epochs(sat, labels, [0.5, 0.6, 0.7, 0.8, 0.85], 2)  # still improving at epoch 4
    assert sat.start_epoch == 5 and record["sat_start_capped"] == 1.0 and sat.momentum == 0.8


def test_the_decision_survives_a_checkpoint():
    labels = torch.arange(600) % 3
    def build():
        return SelfAdaptiveTraining(labels, 3, momentum="auto", start_epoch="auto", epochs=20, patience=1)
    sat = build()
    run_epochs(sat, labels, [0.6, 0.5], 3)
    resumed = build()
    resumed.load_state_dict(sat.state_dict())
    assert (resumed.start_epoch, resumed.momentum, resumed.store.momentum) == (2, sat.momentum, sat.momentum)
    assert torch.equal(resumed.auto.held_out, sat.auto.held_out)


def test_auto_needs_the_run_length_and_indices_must_fit_the_table():
    with pytest.raises(ValueError, match="give epochs="):
        SelfAdaptiveTraining(torch.zeros(10, dtype=torch.long), 2, start_epoch="auto")
    sat = SelfAdaptiveTraining(torch.zeros(10, dtype=torch.long), 2, momentum=0.9, start_epoch=0)
    with pytest.raises(SelfAdaptError, match="index 10 is outside the target table of 10 samples"):
        sat(torch.zeros(2, 2), torch.zeros(2, dtype=torch.long), torch.tensor([3, 10]), 0)


# no flags, ten classes, no held-out bound: only the fitting and update checks can speak
NOTHING_FLAGGED = (suspected_label_errors(torch.eye(10)[torch.arange(100) % 10], torch.arange(100) % 10),
                   [str(c) for c in range(10)], None)


def test_too_few_updates_and_a_model_that_never_fitted_are_warned_about():
    labels = torch.arange(100) % 10
    sat = SelfAdaptiveTraining(labels, 10, momentum=0.9, start_epoch=5)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        sat.suspected_label_errors()
    assert "SAT never updated a target" in str(caught[0].message)
    found = trust_warnings(sat, {"final_train_accuracy_given": 0.13}, labels, *NOTHING_FLAGGED)
    assert "never fitted the data" in found[0] and "never updated" in found[1]
    index = torch.arange(100)
    for epoch in range(5, 8):  # 3 updates at 0.9: the given label still weighs 0.73
        sat(torch.randn(100, 10), labels, index, epoch)
    assert "only 3 update(s)" in trust_warnings(sat, {"final_train_accuracy_given": 0.9}, labels, *NOTHING_FLAGGED)[0]
    for epoch in range(8, 15):
        sat(torch.randn(100, 10), labels, index, epoch)
    assert trust_warnings(sat, {"final_train_accuracy_given": 0.9}, labels, *NOTHING_FLAGGED) == []


def test_waiting_for_the_start_never_waits_for_the_device():
    """The held-out bookkeeping of the automatic start stays on the device (see tests/test_host_sync.py)."""
    from selfadapt.testing.host_sync import forbid_host_sync

    labels = torch.arange(300) % 3
    sat = SelfAdaptiveTraining(labels, 3, momentum="auto", start_epoch="auto", epochs=10, patience=1)
    torch.manual_seed(0)
    for epoch in range(6):  # decided by epoch 4 at the latest (half the run), then SAT's own steps
        with forbid_host_sync():
            for index in torch.arange(300).split(64):
                sat(torch.randn(len(index), 3, requires_grad=True), labels[index], index, epoch).backward()
        sat.end_epoch(epoch)  # once per epoch, outside the step loop
    assert sat.start_epoch is not None
