"""Evaluators measure what their names say, on known predictions."""
import pytest
import torch
from torch import nn

from selfadapt.data.loader import DeviceLoader
from selfadapt.evaluators.base import EvalData, Evaluator
from selfadapt.evaluators.registry import build_evaluators
from selfadapt.objectives import LogitLoss, Objective, SelfAdaptiveTraining


class LookupModel(nn.Module):
    """Predicts ``table[i]`` for the image whose single pixel is ``i / 255`` (known predictions)."""

    def __init__(self, table, num_classes):
        super().__init__()
        self.register_buffer("logits", 10.0 * torch.eye(num_classes)[torch.as_tensor(table)])
        self.dropout = nn.Dropout(0.5)

    def forward(self, x):
        return self.logits[(x.flatten(1)[:, 0] * 255).round().long()]


def images(n):
    return torch.arange(n, dtype=torch.uint8).reshape(n, 1, 1, 1)


def test_accuracy_and_memorisation_on_known_predictions():
    clean = torch.tensor([0, 1, 2, 0, 1, 2, 0, 1, 2, 0])
    given = torch.tensor([0, 1, 2, 1, 2, 0, 0, 1, 2, 0])          # samples 3, 4, 5 are mislabelled
    predicted = [0, 1, 0, 1, 1, 2, 0, 2, 2, 0]                    # 3 memorised, 4 and 5 predicted clean
    model = LookupModel(predicted, 3)
    sat = SelfAdaptiveTraining(given, 3, momentum=0.9, start_epoch=60)
    sat.store.values[3] = torch.tensor([0.9, 0.1, 0.0])            # corrected to the clean label
    sat.store.values[4] = torch.tensor([0.1, 0.8, 0.1])            # corrected to the clean label
    objective = LogitLoss(sat)
    test_labels = torch.tensor([0, 1, 2, 1])                       # predictions 0, 1, 0, 1 -> 3 of 4 right
    data = EvalData(DeviceLoader(images(4), test_labels, batch_size=3),
                    DeviceLoader(images(10), given, batch_size=4), clean, 3)
    accuracy, memorisation = build_evaluators(["accuracy", "memorisation"], {"memorisation_every": 1})
    model.train()
    assert accuracy(model, objective, data, 0) == {"test_accuracy": 0.75}
    result = memorisation(model, objective, data, 0)
    assert result == pytest.approx({"train_accuracy_given_eval": 6 / 10, "train_accuracy_clean": 7 / 10,
                                    "memorised_share": 1 / 3, "predicted_clean_share": 2 / 3,
                                    "corrected_target_share": 2 / 3})
    assert model.training, "evaluators restore the train/eval mode they found"
    assert memorisation(model, Objective(), data, 0).keys() == {"train_accuracy_given_eval", "train_accuracy_clean",
                                                                "memorised_share", "predicted_clean_share"}
    unknown_truth = EvalData(data.test, data.train, None, 3)
    assert memorisation(model, objective, unknown_truth, 0) == {"train_accuracy_given_eval": pytest.approx(6 / 10)}
    unlabelled = EvalData(data.test, DeviceLoader(images(10), torch.where(given == 2, -1, given), batch_size=4),
                          None, 3)                                # -1: no label; 5 of the 7 labelled are right
    assert memorisation(model, objective, unlabelled, 0) == {"train_accuracy_given_eval": pytest.approx(5 / 7)}


def test_evaluators_run_when_due():
    assert [e for e in range(10) if Evaluator(every=3, start_epoch=4).due(e, 10)] == [6, 9]
    assert [e for e in range(5) if Evaluator(final_only=True).due(e, 5)] == [4]
    memorisation, = build_evaluators(["memorisation"], {"memorisation_every": 4})
    assert [e for e in range(10) if memorisation.due(e, 10)] == [3, 7, 9]
