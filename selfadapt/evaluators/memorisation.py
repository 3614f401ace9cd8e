"""Memorisation curves: how much of the label noise the model has learnt, measured in eval mode on
the training images without augmentation (never on augmented or mixed training views)."""
from __future__ import annotations

from selfadapt.evaluators.base import Evaluator, EvaluatorSpec, predict_logits, schedule_options, timing
from selfadapt.targets import label_distribution_store


class Memorisation(Evaluator):
    """One pass over the training images (eval mode, no augmentation):

    - ``train_accuracy_given_eval``: share of the labelled training samples predicted as their given
      (possibly noisy) label; the train error that double descent's interpolation threshold is read
      from (the engine's ``train_accuracy_given`` is a running train-mode accuracy over augmented
      batches while the weights move).

    Where the true training labels are known, also:

    - ``train_accuracy_clean``: share of all training samples predicted as their true label;
    - ``memorised_share`` / ``predicted_clean_share``: of the samples whose given label is wrong,
      the share predicted as that wrong label / as the true one;
    - ``corrected_target_share``: of those samples, the share whose corrected target (the argmax
      of a store of label distributions, e.g. SAT's) is the true label, where the objective has one.

    Example: ``selfadapt train ... --evaluators accuracy,memorisation --memorisation-every 10``.
    """

    name = "memorisation"

    def __call__(self, model, objective, data, epoch):
        predicted = predict_logits(model, objective, data.train, amp=data.amp).argmax(1)
        given = data.train.labels.to(predicted.device)
        labelled = given >= 0
        out = {}
        if labelled.any():
            out["train_accuracy_given_eval"] = (predicted[labelled] == given[labelled]).float().mean().item()
        if data.clean_labels is None:
            return out
        clean = data.clean_labels.to(predicted.device)
        wrong = given != clean
        out["train_accuracy_clean"] = (predicted == clean).float().mean().item()
        if wrong.any():
            out["memorised_share"] = (predicted[wrong] == given[wrong]).float().mean().item()
            out["predicted_clean_share"] = (predicted[wrong] == clean[wrong]).float().mean().item()
            store = label_distribution_store(objective)
            if store is not None:
                corrected = store.values[wrong.to(store.values.device)].argmax(1)
                out["corrected_target_share"] = (corrected == clean[wrong].to(corrected.device)).float().mean().item()
        return out


MemorisationOptions = schedule_options("memorisation", "memorisation curves", every=10)


EVALUATORS = [
    EvaluatorSpec("memorisation", "memorisation of the label noise, on un-augmented training images",
                  lambda o: Memorisation(**timing(o, "memorisation")), MemorisationOptions),
]
