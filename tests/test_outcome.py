"""The claim itself: under heavy label noise, SAT ends well above cross-entropy (real Fashion-MNIST)."""
import pytest

from selfadapt.data.registry import load_dataset
from selfadapt.errors import SelfAdaptError
from selfadapt.experiment import RunConfig, run_experiment


def fashion_mnist_available():
    try:
        load_dataset("fashion-mnist")
        return True
    except SelfAdaptError:
        return False


@pytest.mark.slow
@pytest.mark.skipif(not fashion_mnist_available(), reason="Fashion-MNIST not installed (apt-get install dataset-fashion-mnist)")
def test_sat_beats_cross_entropy_by_8_points_at_40_percent_symmetric_noise():
    # An MLP with no weight decay and no augmentation memorises the wrong labels within 30 epochs:
    # CE's test accuracy peaks early and then falls; SAT's targets stop following the noise.
    setting = dict(dataset="fashion-mnist", subset=3000, model="mlp", noise="symmetric", noise_rate=0.4,
                   epochs=30, batch_size=128, lr=0.05, weight_decay=0.0, augment="none",
                   device="cpu", progress=False)
    ce = run_experiment(RunConfig.from_flat({**setting, "method": "ce"}), verbose=False)
    sat = run_experiment(RunConfig.from_flat({**setting, "method": "sat", "sat_start_epoch": 5}), verbose=False)
    assert ce["best_test_accuracy"] - ce["final_test_accuracy"] > 0.05, "CE memorises the noise here"
    assert sat["final_test_accuracy"] >= ce["final_test_accuracy"] + 0.08
    issues = sat["label_issues"]
    assert issues["precision"] > 0.8 and issues["recall"] > 0.5
