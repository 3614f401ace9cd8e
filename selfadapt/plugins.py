"""Registries find their entries by reading the modules of a package, so adding one is one file.

A method, an evaluator, a data format, a model family or an application declares itself in its
own module as a list (``METHODS = [Method(...)]``, ``FORMATS = [...]``); the registry of that kind
calls :func:`collect` on its package. Declaring modules import only the types they declare with,
never the registry, so the import graph has no cycle.

>>> [m.name for m in collect("selfadapt.objectives", "METHODS")][:2]
['trades', 'trades-sat']
"""
from __future__ import annotations

import functools
import importlib
import pkgutil

from selfadapt.errors import SelfAdaptError


@functools.cache
def collect(package: str, attribute: str) -> tuple:
    """The entries of ``attribute`` in every module under ``package`` (subpackages included),
    modules in name order, entries in their order within each module."""
    root = importlib.import_module(package)
    names = sorted(info.name for info in pkgutil.walk_packages(root.__path__, prefix=f"{package}."))
    entries = []
    for name in names:
        entries += list(getattr(importlib.import_module(name), attribute, ()))
    return tuple(entries)


@functools.cache
def by_name(package: str, attribute: str, kind: str) -> dict:
    """The entries :func:`collect` finds, by their ``name`` (each name once).

    >>> sorted(by_name("selfadapt.evaluators", "EVALUATORS", "evaluator"))[:2]
    ['accuracy', 'autoattack']
    """
    out = {}
    for entry in collect(package, attribute):
        if out.setdefault(entry.name, entry) is not entry:
            raise TypeError(f"{kind} {entry.name!r} is declared twice")
    return out


def lookup(entries: dict, name: str, kind: str):
    """``entries[name]``; an unknown name is one :class:`SelfAdaptError` listing the known ones."""
    if name not in entries:
        raise SelfAdaptError(f"unknown {kind} {name!r}; choose from {', '.join(sorted(entries))}")
    return entries[name]
