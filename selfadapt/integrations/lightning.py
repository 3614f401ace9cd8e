"""SAT for your own ``LightningModule``: a callback keeps the targets, ``training_step`` asks it for the loss.

::

    import lightning.pytorch as pl
    from selfadapt import IndexedDataset, SelfAdaptiveTraining
    from selfadapt.integrations.lightning import SATCallback

    class Classifier(pl.LightningModule):
        def __init__(self, sat: SATCallback):
            super().__init__()
            self.net = nn.Sequential(nn.Linear(64, 256), nn.ReLU(), nn.Linear(256, 10))
            self.sat = sat                                   # a callback, not a submodule
        def training_step(self, batch, batch_idx):
            x, y, index = batch                              # IndexedDataset adds the index
            return self.sat.loss(self.net(x), y, index)
        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.1, momentum=0.9)

    sat = SATCallback(SelfAdaptiveTraining(labels, num_classes=10, start_epoch="auto", momentum="auto", epochs=30))
    trainer = pl.Trainer(max_epochs=30, callbacks=[sat])
    trainer.fit(Classifier(sat), DataLoader(IndexedDataset(train_set), batch_size=64, shuffle=True))
    sat.sat.suspected_label_errors()                         # the corrected labels, most suspicious first

A callback rather than a mixin: its epoch hooks run whatever hooks the module overrides (a mixin's
``on_train_epoch_end`` is lost as soon as a module defines its own without calling ``super()``);
the ``N x C`` table stays out of the model's ``state_dict``, so the weights load into a plain model
for inference, and out of the DDP module, so DDP never broadcasts it. Lightning saves the callback's
state in its checkpoint and restores it on ``fit(..., ckpt_path=...)``.

What the callback does beyond calling :class:`~selfadapt.SelfAdaptiveTraining`:

- ``end_epoch`` after every training epoch (the automatic start decides there); its metrics are
  logged as ``sat/<name>``.
- The checkpoint holds SAT's whole state and every process's random number generators (torch,
  CUDA, NumPy, ``random``): resuming from an end-of-epoch checkpoint (Lightning's default) continues
  as the uninterrupted run would, shuffled order included.
- Under Lightning's DDP strategy, :class:`~selfadapt.TargetStore` gathers every process's updates;
  the ``DistributedSampler`` pads the last batches with samples already seen this epoch, and those
  repeats are left out of the update and the loss; the loss is scaled so that the averaged gradient
  is the global batch's, as in one process (N processes x batch B/N train like one process x B).
"""
from __future__ import annotations

import random

import numpy as np
import torch

from selfadapt import distributed
from selfadapt.errors import SelfAdaptError, require
from selfadapt.objectives.sat import SelfAdaptiveTraining

pl = require("lightning.pytorch", "lightning", "selfadapt.integrations.lightning")

__all__ = ["SATCallback"]


class SATCallback(pl.Callback):
    """Owns a :class:`~selfadapt.SelfAdaptiveTraining` for a Lightning ``Trainer``; call :meth:`loss`
    from ``training_step`` with the batch's logits, given labels and dataset indices.

    ``restore_rng=False`` leaves the random number generators out of the checkpoint.
    """

    def __init__(self, sat: SelfAdaptiveTraining, *, restore_rng: bool = True):
        super().__init__()
        if not isinstance(sat, SelfAdaptiveTraining):
            raise TypeError(f"SATCallback needs a selfadapt.SelfAdaptiveTraining, got {type(sat).__name__}")
        self.sat, self.restore_rng = sat, restore_rng
        self.history: list[dict] = []   # the SAT metrics of every epoch (held-out accuracy, start, momentum)
        self._trainer = None
        self._seen: torch.Tensor | None = None  # under DDP: the samples already in this epoch's loss

    # ------------------------------------------------------------------ Lightning hooks

    def setup(self, trainer, pl_module, stage: str) -> None:
        self._trainer = trainer
        self.sat.to(trainer.strategy.root_device)

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        self._seen = None

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        record = {k: float(v) for k, v in self.sat.end_epoch(trainer.current_epoch).items() if v is not None}
        self.history.append({"epoch": trainer.current_epoch, **record})
        if record:
            pl_module.log_dict({f"sat/{k}": v for k, v in record.items()}, on_epoch=True, sync_dist=True)

    def state_dict(self) -> dict:
        state = {"sat": self.sat.state_dict(), "history": self.history}
        if self.restore_rng:  # every process's generators (Lightning calls this on every process)
            state["rng"] = distributed.all_gather_object(_rng_state())
        return state

    def load_state_dict(self, state: dict) -> None:
        stored, own = len(state["sat"]["given_labels"]), len(self.sat.given_labels)
        if stored != own:
            raise SelfAdaptError(f"the checkpoint's SAT targets cover {stored} samples, this training set has {own}: "
                                 "resume with the data the checkpoint was trained on")
        self.sat.load_state_dict(state["sat"])
        self.history = list(state.get("history", []))
        if self.restore_rng and "rng" in state:
            states = state["rng"]
            _set_rng_state(states[distributed.rank()] if len(states) == distributed.world_size() else states[0])

    # ------------------------------------------------------------------ the loss

    def loss(self, logits: torch.Tensor, targets: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
        """SAT's loss of the current epoch on this batch (``index``: dataset positions, e.g. from
        :class:`~selfadapt.IndexedDataset`)."""
        if self._trainer is None:
            raise SelfAdaptError("SATCallback.loss was called outside training: pass the callback to "
                                 "Trainer(callbacks=[...]) and call loss from training_step")
        epoch = self._trainer.current_epoch
        if not distributed.active():
            return self.sat(logits, targets, index, epoch)
        fresh, every, every_fresh = self._first_in_epoch(index)
        loss = self.sat(logits[fresh], targets[fresh], index[fresh], epoch)
        counted, every_counted = fresh, every_fresh
        if self.sat.start_epoch is None:  # the automatic start's held-out samples are not in the loss yet
            counted = fresh & ~self.sat.auto.held_out[index]
            every_counted = every_fresh & ~self.sat.auto.held_out[every]
        local, total = int(counted.sum()), int(every_counted.sum())
        if local == 0:  # nothing of this process's batch is in the loss; DDP still needs a graph
            return logits.sum() * 0.0
        return loss * (local * distributed.world_size() / total)

    def _first_in_epoch(self, index: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Which of this process's samples enter the epoch for the first time, judged over every
        process's batch in rank order (the DistributedSampler's padding repeats earlier samples);
        also every process's indices and which of those are first."""
        size = len(self.sat.given_labels)
        rank = distributed.rank()
        every = distributed.all_gather_rows(torch.stack([index, torch.full_like(index, rank)], dim=1))
        every, mine = every[:, 0], every[:, 1] == rank
        if len(every) and (int(every.min()) < 0 or int(every.max()) >= size):
            outside = every[(every < 0) | (every >= size)][0].item()
            raise SelfAdaptError(f"dataset index {outside} is outside the target table of {size} samples: pass each "
                                 "sample's position in the training set, e.g. with selfadapt.IndexedDataset(dataset)")
        if self._seen is None:
            self._seen = torch.zeros(size, dtype=torch.bool, device=index.device)
        unique, inverse = torch.unique(every, return_inverse=True)
        order = torch.arange(len(every), device=every.device)
        first = torch.full((len(unique),), len(every), device=every.device).scatter_reduce(0, inverse, order, "amin")
        every_fresh = (first[inverse] == order) & ~self._seen[every]
        self._seen[every] = True
        return every_fresh[mine], every, every_fresh


def _rng_state() -> dict:
    """This process's random number generator states, in types a ``weights_only`` load accepts."""
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    state = {"torch": torch.get_rng_state(), "python": random.getstate(),
             "numpy": (kind, torch.from_numpy(keys.astype(np.int64)), pos, has_gauss, gauss)}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state()
    return state


def _set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    random.setstate(state["python"])
    kind, keys, pos, has_gauss, gauss = state["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, gauss))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state(state["cuda"])
