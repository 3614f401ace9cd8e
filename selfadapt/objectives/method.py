"""What a training method declares about itself (:class:`Method`), read by the code that builds a run.

A method's module lists its entries (``METHODS = [Method(...)]``); :mod:`selfadapt.objectives.registry`
finds them. An entry says how to build its objective, its typed options (a dataclass of
:func:`~selfadapt.config.fields.setting` fields) and any per-method defaults of shared options,
how many model outputs it needs for C classes, how many augmented views per batch, whether it
reads labels, its default evaluators and (optionally) its own augmentation of each view.

>>> from selfadapt.objectives.registry import get_method
>>> method = get_method("gce")
>>> method.option_names, method.outputs(10)
(('gce_q',), 10)
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Callable

import torch
from torch import nn

from selfadapt.config.fields import parse_options
from selfadapt.errors import SelfAdaptError
from selfadapt.objectives.base import Objective


@dataclass
class MethodContext:
    """What a run knows when it builds an objective."""

    labels: torch.Tensor                  # given (possibly noisy) training labels, N; -1 for unlabeled
    num_classes: int
    epochs: int
    model: nn.Module | None = None        # the model being trained (its feature_dim, its outputs)
    model_factory: Callable[[], nn.Module] | None = None  # a fresh, independently initialised model
    label_error_rate: float | None = None  # realised share of wrong labels where known (injected or human noise)
    seed: int = 0                          # the run's data seed, for objectives that draw randomness
    width: int | None = None               # the model's width (SAT's double-descent width rule)


@dataclass
class NoOptions:
    """A method without options."""


def _same(num_classes: int) -> int:
    return num_classes


@dataclass(frozen=True)
class Method:
    """One method's declaration. ``defaults`` gives this method's default of options it shares
    with others (their type, help and rules stay the one declaration in ``options``).

    >>> from selfadapt.objectives.registry import get_method
    >>> get_method("trades-sat").default("sat_momentum"), get_method("sat").default("sat_momentum")
    (0.9, 'auto')
    """

    name: str
    summary: str                                          # one line for `selfadapt methods`
    build: Callable[[MethodContext, Any], Objective]      # (context, options) -> objective
    options: type = NoOptions                             # dataclass of setting() fields
    defaults: dict = field(default_factory=dict)          # option name -> this method's default
    outputs: Callable[[int], int] = _same                 # model outputs for C classes
    views: int = 1                                        # augmented views per batch
    uses_labels: bool = True                              # False: trains on unlabeled data
    evaluators: tuple[str, ...] = ("accuracy",)           # default evaluators
    validate: Callable[[Any, Any], str | None] | None = None  # (options, RunConfig) -> problem or None
    # (options, RunConfig, Dataset) -> one augmentation per view; None: --augment for every view
    augment: Callable[[Any, Any, Any], list] | None = None

    @property
    def option_names(self) -> tuple[str, ...]:
        return tuple(f.name for f in dataclasses.fields(self.options))

    def parse(self, values: dict | None = None, owner: str | None = None):
        """The typed options from a dict of (flat) option names; this method's defaults fill the rest."""
        return parse_options(self.options, {**self.defaults, **(values or {})}, owner or f"method {self.name}")

    def default(self, name: str):
        """This method's default of its option ``name``."""
        if name in self.defaults:
            return self.defaults[name]
        f = next(f for f in dataclasses.fields(self.options) if f.name == name)
        return f.default if f.default is not dataclasses.MISSING else f.default_factory()

    def view_augmentations(self, config, dataset) -> list | None:
        """The method's own augmentation of each of its views, or ``None`` (the run's ``--augment``)."""
        if self.augment is None:
            return None
        augmentations = self.augment(self.parse(config.method.options), config, dataset)
        if len(augmentations) != self.views:
            raise SelfAdaptError(f"method {self.name} needs {self.views} view(s) per batch but its augmentation "
                                 f"gives {len(augmentations)}")
        return augmentations

    def check(self, config, prefix: str = "") -> None:
        """Reject settings under which this method cannot work (one clear line)."""
        if self.validate is not None:
            problem = self.validate(self.parse(config.method.options), config)
            if problem:
                raise SelfAdaptError(f"{prefix}{problem}")


def start_epoch_before_end(start_epoch: int, epochs: int, what: str = "SAT",
                           flag: str = "--sat-start-epoch") -> str | None:
    """A validation rule shared by the SAT-style methods: their start epoch (the option ``flag``)
    must be inside the run.

    >>> start_epoch_before_end(150, 100, "selective SAT", "--sat-pretrain-epochs")[-62:]
    'would never run: lower --sat-pretrain-epochs or raise --epochs'
    """
    if isinstance(start_epoch, int) and start_epoch >= epochs:
        return (f"{what} starts at epoch {start_epoch} (0-based) but the run has only {epochs} epochs, "
                f"so {what} would never run: lower {flag} or raise --epochs")
    return None
