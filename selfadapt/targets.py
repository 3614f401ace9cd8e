"""The per-sample moving-average target store: the one piece of state every SAT objective shares.

Noisy labels keep class distributions, selective classification a distribution plus abstain,
TRADES+SAT the natural-loss targets, self-supervised SAT unit vectors. Each is a row of an
``N x D`` tensor indexed by dataset index, moved towards the model's predictions with momentum.
"""
from __future__ import annotations

import torch
from torch import nn

from selfadapt import distributed


class TargetStore(nn.Module):
    """``N x D`` targets updated as ``t[i] <- momentum * t[i] + (1 - momentum) * p[i]``.

    The table is a buffer, so ``.to(device)``, ``state_dict()`` and ``load_state_dict()`` carry it
    with the module that owns the store. Under ``torch.distributed`` every process gathers the
    ``(index, prediction)`` pairs of all processes (batches may differ in size) before updating,
    so all replicas stay identical. ``label_distributions=True`` marks a table of class
    distributions over the given labels (SAT's): its argmax is a corrected label, which is how runs
    find suspected label errors without knowing which method made the table. ``normalize=True``
    rescales every updated row to unit length after the moving average (self-supervised SAT keeps
    unit vectors: ``t[i] <- normalize(momentum * t[i] + (1 - momentum) * p[i])``, ``normalize`` to unit length).

    Example
    -------
    >>> store = TargetStore(torch.eye(3)[[0, 2]], momentum=0.9)
    >>> store.update(torch.tensor([1]), torch.tensor([[1.0, 0.0, 0.0]]))
    tensor([[0.1000, 0.0000, 0.9000]])
    >>> unit = TargetStore(torch.eye(2), momentum=0.5, normalize=True)
    >>> unit.update(torch.tensor([0]), torch.tensor([[0.0, 1.0]]))
    tensor([[0.7071, 0.7071]])
    """

    def __init__(self, initial: torch.Tensor, momentum: float, *, dtype: torch.dtype = torch.float32,
                 label_distributions: bool = False, normalize: bool = False):
        super().__init__()
        if not 0.0 <= momentum < 1.0:
            raise ValueError(f"momentum must lie in [0, 1), got {momentum}")
        self.momentum = float(momentum)
        self.label_distributions = label_distributions
        self.normalize = normalize
        self.register_buffer("values", initial.detach().to(dtype).clone())

    def __len__(self) -> int:
        return self.values.shape[0]

    def read(self, index: torch.Tensor) -> torch.Tensor:
        """The current targets of the samples in ``index``."""
        return self.values[index]

    @torch.no_grad()
    def update(self, index: torch.Tensor, prediction: torch.Tensor) -> torch.Tensor:
        """Move the targets of ``index`` towards ``prediction`` and return the new rows."""
        local_index = index
        index = distributed.all_gather_rows(index)
        prediction = distributed.all_gather_rows(prediction.detach()).to(self.values.dtype)
        moved = self.momentum * self.values[index] + (1.0 - self.momentum) * prediction
        if self.normalize:
            moved = torch.nn.functional.normalize(moved, dim=1)
        self.values[index] = moved
        return self.values[local_index]


def find_target_stores(module: nn.Module) -> dict[str, TargetStore]:
    """Every :class:`TargetStore` inside ``module`` by its dotted name (``"loss.store"``).

    >>> from selfadapt.objectives import SelfAdaptiveTraining
    >>> list(find_target_stores(SelfAdaptiveTraining(torch.tensor([0, 1]), 2, momentum=0.9, start_epoch=0)))
    ['store']
    """
    return {name: m for name, m in module.named_modules() if isinstance(m, TargetStore)}


def label_distribution_store(module: nn.Module) -> TargetStore | None:
    """The first store of class distributions over the given labels inside ``module``, if any."""
    return next((s for s in find_target_stores(module).values() if s.label_distributions), None)
