"""Methods by name, as ``--method NAME`` and grid files pick them.

Every module of :mod:`selfadapt.objectives` may list methods in ``METHODS``; they are found here
(:func:`selfadapt.plugins.collect`), so adding a method is one file.

>>> sorted(methods())[:3]
['bootstrap-hard', 'bootstrap-soft', 'byol']
"""
from __future__ import annotations

from selfadapt.objectives.base import Objective
from selfadapt.objectives.method import Method, MethodContext
from selfadapt.plugins import by_name, lookup


def methods() -> dict[str, Method]:
    """Every method by name."""
    return by_name("selfadapt.objectives", "METHODS", "method")


def get_method(name: str) -> Method:
    """The method called ``name``; an unknown name is a :class:`SelfAdaptError` listing the known ones."""
    return lookup(methods(), name, "method")


def build_objective(name: str, context: MethodContext, options: dict | None = None) -> Objective:
    """The objective of method ``name`` with ``options`` (flat option names; defaults for the rest).

    >>> import torch
    >>> ctx = MethodContext(labels=torch.tensor([0, 1, 1]), num_classes=2, epochs=3)
    >>> build_objective("gce", ctx, {"gce_q": 0.5}).loss.q
    0.5
    """
    method = get_method(name)
    return method.build(context, method.parse(options))
