"""Evaluators by name, as ``--evaluators`` and grid files pick them.

Every module of :mod:`selfadapt.evaluators` may list evaluators in ``EVALUATORS``; they are found
here (:func:`selfadapt.plugins.collect`), so adding an evaluator is one file.

>>> sorted(evaluators())[:3]
['accuracy', 'autoattack', 'fgsm']
"""
from __future__ import annotations

import dataclasses
import functools

from selfadapt.config.fields import parse_options
from selfadapt.data.corruption import LABEL_CORRUPTIONS
from selfadapt.errors import SelfAdaptError
from selfadapt.evaluators.base import Evaluator, EvaluatorSpec
from selfadapt.plugins import collect


@functools.cache
def evaluators() -> dict[str, EvaluatorSpec]:
    """Every evaluator by name (each name once)."""
    out: dict[str, EvaluatorSpec] = {}
    for spec in collect("selfadapt.evaluators", "EVALUATORS"):
        if out.setdefault(spec.name, spec) is not spec:
            raise TypeError(f"evaluator {spec.name!r} is declared twice")
    return out


def get_evaluator(name: str) -> EvaluatorSpec:
    """The evaluator called ``name``; an unknown name is a :class:`SelfAdaptError` listing the known ones."""
    if name not in evaluators():
        raise SelfAdaptError(f"unknown evaluator {name!r}; choose from {', '.join(sorted(evaluators()))}")
    return evaluators()[name]


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
