"""Top-1 test accuracy of the objective's class predictions."""
from __future__ import annotations

import torch

from selfadapt.evaluators.base import Evaluator, EvaluatorSpec, autocast, evaluation_mode, schedule_options, timing


class TestAccuracy(Evaluator):
    """``test_accuracy``: share of test images whose ``objective.predict`` argmax is the label
    (``None`` for an empty test set).

    >>> from selfadapt.data.loader import DeviceLoader
    >>> from selfadapt.evaluators.base import EvalData
    >>> from selfadapt.objectives import Objective
    >>> images, labels = torch.zeros(4, 1, 2, 2, dtype=torch.uint8), torch.tensor([0, 1, 0, 1])
    >>> loader = DeviceLoader(images, labels, batch_size=2)
    >>> model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(4, 2))
    >>> TestAccuracy()(model, Objective(), EvalData(loader, loader, None, 2), epoch=0)["test_accuracy"]
    0.5
    """

    name = "accuracy"
    primary = "test_accuracy"

    def __call__(self, model, objective, data, epoch):
        if data.test is None or len(data.test.labels) == 0:
            return {"test_accuracy": None}
        correct = torch.zeros((), dtype=torch.long, device=data.test.device)
        with evaluation_mode(model, objective):
            for batch in data.test:
                with autocast(data.test.device, data.amp):
                    correct += (objective.predict(model, batch.x).argmax(1) == batch.y).sum()
        return {"test_accuracy": correct.item() / len(data.test.labels)}


AccuracyOptions = schedule_options("accuracy", "test accuracy", every=1)


EVALUATORS = [
    EvaluatorSpec("accuracy", "top-1 accuracy on the test set",
                  lambda o: TestAccuracy(**timing(o, "accuracy")), AccuracyOptions),
]
