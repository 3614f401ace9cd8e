"""Risk-coverage evaluation of any classifier (selective classification).

Every score the objective ranks by is evaluated side by side (``sr`` and ``entropy`` for every
classifier, ``abstain`` or ``g`` where the method has one; see
:func:`selfadapt.objectives.selective.predict_with_scores`). Metric names end in the score:

- ``selective-val`` (cheap, every epoch): ``val_aurc_<score>`` on the validation split, and
  ``val_aurc`` for the method's own score (primary, lower is better);
- ``risk-coverage`` (after the last epoch): on the test set, ``test_aurc_<score>``,
  ``test_eaurc_<score>`` (and ``test_aurc`` / ``test_eaurc`` for the method's own score); per target
  coverage c, the honest protocol (thresholds fitted on the validation split, applied to the test
  set) as ``selective_error_<c>_<score>`` with the test coverage reached, ``coverage_<c>_<score>``;
  the original code's protocol as ``paper_selective_error_<c>_<score>`` / ``paper_coverage_<c>_<score>``.
  With a run directory it also writes ``selective_scores.npz``: every test sample's scores and
  whether its prediction was wrong, for risk-coverage plots.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from selfadapt.config.fields import setting
from selfadapt.errors import SelfAdaptError
from selfadapt.evaluators.base import Evaluator, EvaluatorSpec, autocast, evaluation_mode, schedule_options, timing
from selfadapt.evaluators.selective_metrics import (
    COVERAGES,
    aurc,
    check_coverages,
    coverage_name,
    eaurc,
    fit_thresholds,
    paper_protocol,
    selective_risk,
)
from selfadapt.objectives.selective import predict_with_scores, primary_score

SCORES_FILE = "selective_scores.npz"


def _needs_validation(config) -> str | None:
    if not config.data.val_size:
        return ("risk-coverage evaluation fits its thresholds on a validation split held out of the training "
                "data: give --val-size N (e.g. 5000 on CIFAR-10)")
    return None


def collect_scores(model, objective, loader, *, amp: bool = False) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Every score of every sample of ``loader`` and whether its prediction is wrong (numpy, float64/bool)."""
    scores: dict[str, list] = {}
    wrong = []
    with evaluation_mode(model, objective):
        for batch in loader:
            with autocast(loader.device, amp):
                logits, batch_scores = predict_with_scores(objective, model, batch.x)
            wrong.append((logits.argmax(1) != batch.y).cpu())
            for name, values in batch_scores.items():
                scores.setdefault(name, []).append(values.float().cpu())
    if not wrong:
        raise SelfAdaptError("risk-coverage evaluation got an empty split")
    return ({name: torch.cat(v).double().numpy() for name, v in scores.items()},
            torch.cat(wrong).numpy().astype(bool))


def _validation_split(data):
    if data.val is None or len(data.val.labels) == 0:
        raise SelfAdaptError("risk-coverage evaluation needs the validation split (--val-size N): its thresholds "
                             "are fitted there, never on the test set")
    return data.val


def _number(value: float) -> float | None:
    return None if value != value else float(value)   # nan (nothing kept) -> None


class SelectiveValidation(Evaluator):
    """``val_aurc`` (the method's own score) and ``val_aurc_<score>`` on the validation split."""

    name = "selective-val"
    primary = "val_aurc"
    higher_is_better = False

    def __call__(self, model, objective, data, epoch):
        scores, wrong = collect_scores(model, objective, _validation_split(data), amp=data.amp)
        out = {f"val_aurc_{name}": aurc(values, wrong) for name, values in scores.items()}
        out["val_aurc"] = out[f"val_aurc_{primary_score(objective)}"]
        out["val_error"] = float(wrong.mean())
        return out


class RiskCoverage(Evaluator):
    """Selective error at target coverages (honest and paper protocols), AURC and E-AURC on the test set."""

    name = "risk-coverage"
    primary = "test_aurc"
    higher_is_better = False

    def __init__(self, coverages=COVERAGES, **when):
        super().__init__(**when)
        self.coverages = check_coverages(coverages)

    def __call__(self, model, objective, data, epoch):
        val_scores, _ = collect_scores(model, objective, _validation_split(data), amp=data.amp)
        if data.test is None:
            raise SelfAdaptError("risk-coverage evaluation needs a test set")
        scores, wrong = collect_scores(model, objective, data.test, amp=data.amp)
        out = {}
        for name, values in scores.items():
            out[f"test_aurc_{name}"] = aurc(values, wrong)
            out[f"test_eaurc_{name}"] = eaurc(values, wrong)
            for coverage, threshold in zip(self.coverages, fit_thresholds(val_scores[name], self.coverages)):
                reached, error = selective_risk(values, wrong, threshold)
                out[f"selective_error_{coverage_name(coverage)}_{name}"] = _number(error)
                out[f"coverage_{coverage_name(coverage)}_{name}"] = reached
            paper, samples = paper_protocol(values, wrong, self.coverages)
            for coverage, (reached, error) in zip(self.coverages, paper):
                out[f"paper_selective_error_{coverage_name(coverage)}_{name}"] = _number(error)
                out[f"paper_coverage_{coverage_name(coverage)}_{name}"] = reached
            out["paper_protocol_samples"] = samples
        own = primary_score(objective)
        out["test_aurc"], out["test_eaurc"] = out[f"test_aurc_{own}"], out[f"test_eaurc_{own}"]
        if data.run_dir is not None:
            np.savez(data.run_dir / SCORES_FILE, wrong=wrong, primary=np.array(own),
                     **{f"score_{name}": values for name, values in scores.items()})
        return out


SelectiveValidationOptions = schedule_options("selective_val", "validation AURC", every=1)


@dataclass
class RiskCoverageOptions:
    selective_coverages: list[float] = setting(list(COVERAGES), "target coverages in percent of the "
                                                                "risk-coverage evaluation",
                                               check=lambda cs: bool(cs) and all(0 < c <= 100 for c in cs),
                                               must="each lie in (0, 100] (percent)")


EVALUATORS = [
    EvaluatorSpec("selective-val", "AURC of every selection score on the validation split (cheap)",
                  lambda o: SelectiveValidation(**timing(o, "selective_val")),
                  SelectiveValidationOptions, validate=_needs_validation),
    EvaluatorSpec("risk-coverage", "selective error at target coverages (thresholds fitted on the "
                                   "validation split; and the paper's protocol), AURC, E-AURC",
                  lambda o: RiskCoverage(o.selective_coverages, final_only=True),
                  RiskCoverageOptions, validate=_needs_validation),
]
