"""The applications' commands and grid reports, found in every module of :mod:`selfadapt.apps`
(:func:`selfadapt.plugins.collect`), so adding an application is one file.

>>> sorted(c.name for c in commands())[:3]
['apply-review', 'demo', 'embed']
"""
from __future__ import annotations

from selfadapt.apps.command import Command
from selfadapt.grid.reports import GridReport
from selfadapt.plugins import collect


def commands() -> list[Command]:
    """Every application's commands, by module name."""
    return list(collect("selfadapt.apps", "COMMANDS"))


def grid_reports() -> list[GridReport]:
    """Every application's grid tables and figures, by module name."""
    return list(collect("selfadapt.apps", "GRID_REPORTS"))
