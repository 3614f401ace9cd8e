"""When SAT starts and how fast its targets move, chosen from the noisy training data alone.

The paper's start epoch (60 of 200) and momentum (0.9) were tuned for ResNet-34 with augmentation
on CIFAR; a small model without augmentation memorises every wrong label long before epoch 60,
and a short run leaves the given label's one-hot in every target. The rule here needs no clean
labels (its evidence is in ``docs/results/label-issues.md``):

1. **Hold out** a seeded, class-stratified share of the training samples (by given label). While
   SAT waits, they go through every training step but are left out of the loss, so the model's
   predictions on them are out-of-sample.
2. **Watch** their accuracy against the *given* labels, epoch by epoch. Under label noise that is
   independent of the split, noisy held-out accuracy is an increasing function of clean accuracy,
   so it peaks where clean accuracy peaks: where the model has learnt the patterns shared by most
   samples and starts to memorise the exceptions.
3. **Start** SAT after the first epoch at which held-out accuracy has not beaten its best for
   ``patience`` epochs, or at ``latest`` x epochs at the latest (a run too short to peak).
4. **Fold back**: from the start epoch on the held-out samples train like every other sample.
   Their targets start as the one-hot of the given label as everyone's do, so they get a verdict
   the same way, from a model that has never fitted their (possibly wrong) labels.
5. **Momentum** ``auto``: ``min(0.6, residue ** (1 / remaining epochs))``, so that the given label's
   one-hot weighs at most ``residue`` in the final targets. The cap 0.6 (the paper: 0.9) makes the
   targets leave a wrong label within an epoch or two of the start, before the model memorises it;
   it was chosen on the development settings, where F1 fell from about 0.85-0.90 at 0.6 to
   0.29-0.62 at 0.9 (``docs/results/label-issues.md``).

Under ``torchrun`` the held-out counts are summed over processes and rank 0's decision is
broadcast, so every process starts SAT at the same step.

>>> rule = AutoStart(torch.tensor([0, 1] * 50), num_classes=2, epochs=20, patience=2, holdout=0.2, min_holdout=0)
>>> held = torch.nonzero(rule.held_out).flatten(); len(held)
20
>>> for epoch, right in enumerate([10, 12, 14, 13, 13]):  # held-out samples predicted as their given label
...     rule.record(held, torch.arange(20) < right, epoch)
...     metrics = rule.close_epoch(epoch)
>>> rule.start_epoch, rule.best_epoch, metrics["sat_holdout_accuracy"]
(5, 2, 0.65)
"""
from __future__ import annotations

import math

import torch
from torch import nn

from selfadapt import distributed

AUTO_MOMENTUM_CAP = 0.6  # the automatic momentum never exceeds it (chosen on the development settings)


def momentum_for(remaining_epochs: int, residue: float = 0.01, cap: float = AUTO_MOMENTUM_CAP) -> float:
    """The momentum that leaves ``residue`` of the initial target after ``remaining_epochs`` updates,
    capped at ``cap``: ``min(cap, residue ** (1 / remaining_epochs))``.

    >>> momentum_for(140), round(momentum_for(5), 4), momentum_for(0)
    (0.6, 0.3981, 0.0)
    """
    if remaining_epochs <= 0:
        return 0.0
    return min(cap, residue ** (1.0 / remaining_epochs))


def stratified_holdout(labels: torch.Tensor, share: float, seed: int) -> torch.Tensor:
    """A boolean mask holding out ``round(share x n_c)`` samples of every given class ``c`` (seeded),
    never a whole class.

    >>> stratified_holdout(torch.tensor([0] * 10 + [1] * 5), 0.2, seed=0).sum().item()
    3
    """
    labels = torch.as_tensor(labels).cpu()
    mask = torch.zeros(len(labels), dtype=torch.bool)
    generator = torch.Generator().manual_seed(seed)
    for c in torch.unique(labels[labels >= 0]).tolist():
        members = torch.nonzero(labels == c).flatten()
        take = min(round(share * len(members)), len(members) - 1)
        mask[members[torch.randperm(len(members), generator=generator)[:take]]] = True
    return mask


class AutoStart(nn.Module):
    """Held-out accuracy per epoch and the start epoch it implies (steps 1-3 of the module's rule).

    ``record(index, correct, epoch)`` counts, during training, which held-out samples of a batch the
    model predicted as their given label; ``close_epoch(epoch)`` turns the counts into the epoch's
    accuracy, decides, and returns the epoch's metrics. Its state (the held-out set, the best
    accuracy, the decision) is in buffers, so it is checkpointed with the objective; the start
    epoch and the last closed epoch are mirrored in Python, so a training step reads them without
    waiting for the device.
    """

    def __init__(self, labels: torch.Tensor, num_classes: int, *, epochs: int, holdout: float = 0.1,
                 patience: int = 3, latest: float = 0.5, min_holdout: int = 200, seed: int = 0):
        super().__init__()
        labels = torch.as_tensor(labels, dtype=torch.long)
        n = len(labels)
        share = min(max(holdout, min_holdout / max(n, 1)), 0.25)  # small data: enough samples to measure
        self.num_classes, self.epochs, self.patience = num_classes, int(epochs), int(patience)
        self.latest_start = max(1, min(math.ceil(latest * epochs), epochs - 1))
        self.register_buffer("held_out", stratified_holdout(labels, share, seed))
        self.register_buffer("counts", torch.zeros(2, dtype=torch.float64))  # correct, seen (this epoch)
        # best accuracy, its epoch, the last closed epoch, the start epoch (-1: not yet)
        self.register_buffer("state", torch.tensor([-1.0, -1.0, -1.0, -1.0], dtype=torch.float64))
        self._mirror()
        self.register_load_state_dict_post_hook(lambda module, keys: module._mirror())

    def _mirror(self) -> None:
        start, self._closed = int(self.state[3]), int(self.state[2])
        self._start = None if start < 0 else start

    @property
    def start_epoch(self) -> int | None:
        """The chosen start epoch, ``None`` while undecided."""
        return self._start

    @property
    def best_epoch(self) -> int:
        return int(self.state[1])

    @property
    def best_accuracy(self) -> float:
        return float(self.state[0])

    @torch.no_grad()
    def record(self, index: torch.Tensor, correct: torch.Tensor, epoch: int) -> None:
        """Count the held-out samples of a batch (``correct``: bool per sample of ``index``)."""
        held = self.held_out[index]
        self.counts[0] += (correct & held).sum().double()  # mask products: no wait for the device
        self.counts[1] += held.sum().double()

    def close_epoch(self, epoch: int) -> dict:
        """The held-out accuracy of ``epoch`` and the decision it leads to (once per epoch; later
        calls and calls after the decision return ``{}``). Every process must call it."""
        if self.start_epoch is not None or epoch <= self._closed:
            return {}
        correct, seen = distributed.all_reduce_sum(self.counts).tolist()
        self.counts.zero_()
        self.state[2], self._closed = epoch, epoch
        if not seen:  # no held-out sample went through the loss this epoch
            return {}
        accuracy = correct / seen
        if accuracy > self.best_accuracy:
            self.state[0], self.state[1] = accuracy, epoch
        start = None
        if epoch - self.best_epoch >= self.patience or epoch + 1 >= self.latest_start:
            start = epoch + 1
        start = distributed.broadcast_object(start)
        metrics = {"sat_holdout_accuracy": accuracy}
        if start is not None:
            self.state[3], self._start = start, start
            metrics.update(sat_start_epoch=start, sat_start_best_epoch=self.best_epoch,
                           sat_start_best_holdout_accuracy=self.best_accuracy,
                           sat_start_capped=float(epoch - self.best_epoch < self.patience))
        return metrics

    def describe(self) -> str:
        """One line: which signal chose the start epoch."""
        if self.start_epoch is None:
            return "SAT start not decided yet"
        if self.start_epoch - 1 - self.best_epoch >= self.patience:
            why = f"held-out noisy accuracy peaked at epoch {self.best_epoch} ({self.best_accuracy:.4f}) " \
                  f"and did not improve for {self.patience} epochs"
        else:
            why = f"held-out noisy accuracy was still improving (best {self.best_accuracy:.4f} at epoch " \
                  f"{self.best_epoch}); started at the latest start epoch, {self.latest_start}"
        return f"SAT started at epoch {self.start_epoch}: {why} ({int(self.held_out.sum())} held-out samples)"
