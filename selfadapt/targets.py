"""The per-sample moving-average target store: the one piece of state every SAT objective shares.

Noisy labels keep class distributions, selective classification a distribution plus abstain,
TRADES+SAT the natural-loss targets, self-supervised SAT unit vectors. Each is a row of an
``N x D`` tensor indexed by dataset index, moved towards the model's predictions with momentum.
"""
from __future__ import annotations

import torch
import torch.distributed as dist
from torch import nn


class TargetStore(nn.Module):
    """``N x D`` targets updated as ``t[i] <- momentum * t[i] + (1 - momentum) * p[i]``.

    The table is a buffer, so ``.to(device)``, ``state_dict()`` and ``load_state_dict()`` carry it
    with the module that owns the store. Under ``torch.distributed`` every process gathers the
    ``(index, prediction)`` pairs of all processes before updating, so all replicas stay identical.

    Example
    -------
    >>> store = TargetStore(torch.eye(3)[[0, 2]], momentum=0.9)
    >>> store.update(torch.tensor([1]), torch.tensor([[1.0, 0.0, 0.0]]))
    tensor([[0.1000, 0.0000, 0.9000]])
    """

    def __init__(self, initial: torch.Tensor, momentum: float, *, dtype: torch.dtype = torch.float32):
        super().__init__()
        if not 0.0 <= momentum < 1.0:
            raise ValueError(f"momentum must lie in [0, 1), got {momentum}")
        self.momentum = float(momentum)
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
        index, prediction = _gather_across_processes(index, prediction.detach())
        prediction = prediction.to(self.values.dtype)
        self.values[index] = self.momentum * self.values[index] + (1.0 - self.momentum) * prediction
        return self.values[local_index]


def _gather_across_processes(index: torch.Tensor, prediction: torch.Tensor):
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return index, prediction
    world = dist.get_world_size()
    indices = [torch.empty_like(index) for _ in range(world)]
    predictions = [torch.empty_like(prediction) for _ in range(world)]
    dist.all_gather(indices, index)
    dist.all_gather(predictions, prediction)
    return torch.cat(indices), torch.cat(predictions)
