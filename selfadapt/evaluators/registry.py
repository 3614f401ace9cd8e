"""Evaluators by name, as ``--evaluators`` and grid files pick them.

Every module of :mod:`selfadapt.evaluators` may list evaluators in ``EVALUATORS``; they are found
here (:func:`selfadapt.plugins.collect`), so adding an evaluator is one file.

>>> sorted(evaluators())[:3]
['accuracy', 'autoattack', 'fgsm']
"""
from __future__ import annotations

import dataclasses

from selfadapt.config.fields import parse_options
from selfadapt.data.corruption import LABEL_CORRUPTIONS
from selfadapt.errors import SelfAdaptError
from selfadapt.evaluators.base import Evaluator, EvaluatorSpec
from selfadapt.plugins import by_name, lookup


def evaluators() -> dict[str, EvaluatorSpec]:
    """Every evaluator by name."""
    return by_name("selfadapt.evaluators", "EVALUATORS", "evaluator")


def get_evaluator(name: str) -> EvaluatorSpec:
    """The evaluator called ``name``; an unknown name is a :class:`SelfAdaptError` listing the known ones."""
    return lookup(evaluators(), name, "evaluator")


def evaluator_names_for(method, noise: str) -> list[str]:
    """A method's default evaluators, plus memorisation curves where label noise is injected."""
    names = list(method.evaluators)
    if noise in LABEL_CORRUPTIONS and "memorisation" not in names:
        names.append("memorisation")
    return names


def resolve_evaluator_options(names: list[str], given: dict, prefix: str = "") -> dict:
    """Every option of the evaluators ``names``: taken from ``given`` where named, else default."""
    if len(set(names)) != len(names):
        raise SelfAdaptError(f"{prefix}an evaluator is listed twice: {', '.join(names)}")
    options = {}
    for name in names:
        spec = get_evaluator(name)
        own = {k: v for k, v in given.items() if k in spec.option_names}
        options.update(dataclasses.asdict(parse_options(spec.options, own, f"{prefix}evaluator {name}")))
    return options


def build_evaluators(names: list[str], options: dict) -> list[Evaluator]:
    """The evaluators ``names``, each built from its part of ``options``."""
    out = []
    for name in names:
        spec = get_evaluator(name)
        out.append(spec.build(parse_options(spec.options, {k: options[k] for k in spec.option_names
                                                           if k in options}, f"evaluator {name}")))
    return out
