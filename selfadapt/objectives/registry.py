"""Methods by name, as ``--method NAME`` and grid files pick them.

A :class:`Method` declares everything a run needs to know about it: how to build its objective,
its typed options (a dataclass of :func:`~selfadapt.settings.setting` fields), how many model
outputs it needs for C classes, how many augmented views per batch, whether it reads labels, and
its default evaluators, and (optionally) its own augmentation of each view. The code that builds a
run reads these and names no method. Each objective module registers its own methods with
:func:`register`.

>>> method = get_method("gce")
>>> method.option_names, method.outputs(10)
(('gce_q',), 10)
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Callable

import torch
from torch import nn

from selfadapt.errors import SelfAdaptError
from selfadapt.objectives.base import Objective
from selfadapt.settings import parse_options


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
    name: str
    summary: str                                          # one line for `selfadapt methods`
    build: Callable[[MethodContext, Any], Objective]      # (context, options) -> objective
    options: type = NoOptions                             # dataclass of setting() fields
    outputs: Callable[[int], int] = _same                 # model outputs for C classes
    views: int = 1                                        # augmented views per batch
    uses_labels: bool = True                              # False: trains on unlabeled data
    evaluators: tuple[str, ...] = ("accuracy",)           # default evaluators
    validate: Callable[[Any, Any], str | None] | None = None  # (options, RunConfig) -> problem or None
    # (options, RunConfig, Dataset) -> one augmentation per view; None: --augment for every view
    augment: Callable[[Any, Any, Any], list] | None = None
    needs_images: bool = False                            # True: works on pixels (views, attacks), not feature vectors

    @property
    def option_names(self) -> tuple[str, ...]:
        return tuple(f.name for f in dataclasses.fields(self.options))

    def parse(self, values: dict | None = None):
        """The typed options from a dict of (flat) option names; defaults fill the rest."""
        return parse_options(self.options, values or {}, f"method {self.name}")

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


METHODS: dict[str, Method] = {}


def register(method: Method) -> Method:
    """Add ``method`` to the registry (each name once)."""
    if method.name in METHODS:
        raise ValueError(f"method {method.name!r} is registered twice")
    METHODS[method.name] = method
    return method


def get_method(name: str) -> Method:
    """The method called ``name``; an unknown name is a :class:`SelfAdaptError` listing the known ones."""
    import selfadapt.objectives  # noqa: F401  (the objective modules register their methods)

    if name not in METHODS:
        raise SelfAdaptError(f"unknown method {name!r}; choose from {', '.join(sorted(METHODS))}")
    return METHODS[name]


def build_objective(name: str, context: MethodContext, options: dict | None = None) -> Objective:
    """The objective of method ``name`` with ``options`` (flat option names; defaults for the rest).

    >>> ctx = MethodContext(labels=torch.tensor([0, 1, 1]), num_classes=2, epochs=3)
    >>> build_objective("gce", ctx, {"gce_q": 0.5}).loss.q
    0.5
    """
    method = get_method(name)
    return method.build(context, method.parse(options))


def start_epoch_before_end(start_epoch: int, epochs: int, what: str = "SAT") -> str | None:
    """A validation rule shared by the SAT-style methods: their start epoch must be inside the run."""
    if isinstance(start_epoch, int) and start_epoch >= epochs:
        return (f"{what} starts at epoch {start_epoch} (0-based) but the run has only {epochs} epochs, "
                f"so {what} would never run: lower the start epoch or raise --epochs")
    return None
