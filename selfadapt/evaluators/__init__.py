"""Evaluators by name (see :mod:`selfadapt.evaluators.base`); importing this package registers them."""
from selfadapt.evaluators import accuracy, features, memorisation, robust, selective  # noqa: F401  (registration)
from selfadapt.evaluators.base import (EVALUATORS, EvalData, Evaluator, EvaluatorSpec, build_evaluators,
                                       evaluation_mode, evaluator_names_for, get_evaluator, predict_logits,
                                       register_evaluator, resolve_evaluator_options)

__all__ = ["EVALUATORS", "EvalData", "Evaluator", "EvaluatorSpec", "build_evaluators", "evaluation_mode",
           "evaluator_names_for", "get_evaluator", "predict_logits", "register_evaluator",
           "resolve_evaluator_options"]
