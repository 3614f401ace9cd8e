"""A command an application adds to ``selfadapt`` (``selfadapt find-label-issues``, ``selfadapt demo``).

>>> import argparse
>>> command = Command("hello", "say hello", lambda parser: None, lambda args: 0)
>>> command.run(argparse.Namespace())
0
"""
from __future__ import annotations

import argparse
from dataclasses import dataclass
from typing import Callable


@dataclass(frozen=True)
class Command:
    """``add_arguments(parser)`` declares the command's flags; ``run(args)`` does it and returns the
    exit status. ``description`` is the longer text of ``selfadapt NAME --help``."""

    name: str
    help: str
    add_arguments: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace], int]
    description: str = ""
