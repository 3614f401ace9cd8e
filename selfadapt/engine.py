"""The training loop: optimiser, schedule, AMP, evaluation, checkpoint and resume.

It knows nothing about SAT. Each batch goes to ``objective.training_step``; the objective's state
(SAT's targets, ELR's averages, co-teaching's peer network) is saved because the objective is a
module. Per-sample training predictions of the epoch are handed to an optional ``epoch_hook``, which
is how a run adds memorisation curves without the engine knowing about noise.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Callable

import torch
from torch import nn
from tqdm import tqdm

from selfadapt.data.loader import DeviceLoader
from selfadapt.errors import SelfAdaptError
from selfadapt.objectives.base import Objective
from selfadapt.rundir import RunDir

OPTIMIZERS = ("sgd", "adam")
SCHEDULES = ("cosine", "multistep", "constant")


@dataclass
class EngineConfig:
    epochs: int
    optimizer: str = "sgd"
    lr: float = 0.1
    momentum: float = 0.9          # SGD momentum (the paper's 0.9)
    nesterov: bool = False
    weight_decay: float = 5e-4
    schedule: str = "cosine"       # per-epoch cosine from lr to 0, as the SAT code does
    milestones: tuple[int, ...] = field(default_factory=tuple)  # multistep: epochs where lr *= gamma
    gamma: float = 0.1
    device: str = "cpu"
    amp: bool = True               # bf16 autocast, used on CUDA only
    channels_last: bool = True     # used on CUDA only
    compile: bool = False          # torch.compile the model (CUDA)
    progress: bool = True
    eval_batch_size: int = 1024


def learning_rate(config: EngineConfig, epoch: int) -> float:
    """The learning rate of 0-based ``epoch`` (a pure function of the epoch: nothing to checkpoint)."""
    if config.schedule == "cosine":
        return 0.5 * config.lr * (1.0 + math.cos(math.pi * epoch / config.epochs))
    if config.schedule == "multistep":
        return config.lr * config.gamma ** sum(epoch >= m for m in config.milestones)
    return config.lr


def build_optimizer(config: EngineConfig, parameters) -> torch.optim.Optimizer:
    if config.optimizer == "sgd":
        return torch.optim.SGD(parameters, lr=config.lr, momentum=config.momentum,
                               nesterov=config.nesterov, weight_decay=config.weight_decay)
    if config.optimizer == "adam":
        return torch.optim.Adam(parameters, lr=config.lr, weight_decay=config.weight_decay)
    raise SelfAdaptError(f"unknown optimizer {config.optimizer!r}; choose from {', '.join(OPTIMIZERS)}")


@torch.no_grad()
def evaluate(model: nn.Module, loader: DeviceLoader, *, amp: bool = False) -> float | None:
    """Top-1 accuracy of ``model`` over ``loader`` (None for an empty set)."""
    if len(loader.labels) == 0:
        return None
    model.eval()
    correct = torch.zeros((), dtype=torch.long, device=loader.device)
    for x, y, _ in loader:
        with _autocast(loader.device, amp):
            correct += (model(x).argmax(1) == y).sum()
    return correct.item() / len(loader.labels)


@torch.no_grad()
def predict_probabilities(model: nn.Module, loader: DeviceLoader, *, amp: bool = False) -> torch.Tensor:
    """Softmax outputs of ``model`` over an unshuffled loader, in dataset order, on the CPU."""
    model.eval()
    out = []
    for x, _, _ in loader:
        with _autocast(loader.device, amp):
            out.append(torch.softmax(model(x).float(), dim=1).cpu())
    return torch.cat(out)


def _autocast(device: torch.device, enabled: bool):
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=enabled and device.type == "cuda")


class Trainer:
    """Train ``model`` with ``objective``; with a :class:`RunDir`, log, checkpoint and resume.

    ``clean_labels`` (optional, aligned with the training set) adds train accuracy against the
    true labels. ``epoch_hook(epoch, predictions)`` receives the argmax training prediction of
    every sample in the epoch (on the augmented view) and returns extra metrics for the log.

    Example
    -------
    >>> from selfadapt.objectives import LogitLoss, CrossEntropy
    >>> x = torch.randint(0, 256, (32, 1, 4, 4), dtype=torch.uint8); y = torch.randint(0, 2, (32,))
    >>> model = nn.Sequential(nn.Flatten(), nn.Linear(16, 2))
    >>> train = DeviceLoader(x, y, batch_size=8, shuffle=True)
    >>> history = Trainer(model, LogitLoss(CrossEntropy()), train, train, EngineConfig(epochs=2, progress=False)).fit()
    >>> [m["epoch"] for m in history]
    [0, 1]
    """

    def __init__(self, model: nn.Module, objective: Objective, train_loader: DeviceLoader,
                 test_loader: DeviceLoader, config: EngineConfig, *, run: RunDir | None = None,
                 clean_labels: torch.Tensor | None = None,
                 epoch_hook: Callable[[int, torch.Tensor], dict] | None = None):
        self.config = config
        self.device = torch.device(config.device)
        on_cuda = self.device.type == "cuda"
        self.amp = config.amp and on_cuda
        memory_format = torch.channels_last if config.channels_last and on_cuda else torch.preserve_format
        self.model = model.to(self.device, memory_format=memory_format)
        self.objective = objective.to(self.device, memory_format=memory_format)
        self.forward_model = torch.compile(self.model) if config.compile else self.model
        self.train_loader, self.test_loader = train_loader, test_loader
        self.run = run
        self.clean_labels = None if clean_labels is None else clean_labels.to(self.device)
        self.epoch_hook = epoch_hook
        self.optimizer = build_optimizer(config, list(self.model.parameters()) + list(self.objective.parameters()))
        self.start_epoch = 0
        if run is not None:
            self._resume()

    def _resume(self) -> None:
        state = self.run.load_checkpoint()
        if state is None:
            return
        self.model.load_state_dict(state["model"])
        self.objective.load_state_dict(state["objective"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.train_loader.load_state_dict(state["train_loader"])
        torch.set_rng_state(state["rng"]["torch"])
        if self.device.type == "cuda" and "cuda" in state["rng"]:
            torch.cuda.set_rng_state(state["rng"]["cuda"], self.device)
        self.start_epoch = state["epoch"]
        self.run.truncate_metrics(self.start_epoch)

    def _checkpoint(self, epoch_done: int) -> None:
        rng = {"torch": torch.get_rng_state()}
        if self.device.type == "cuda":
            rng["cuda"] = torch.cuda.get_rng_state(self.device)
        self.run.save_checkpoint({
            "format": "selfadapt-checkpoint-1", "config": self.run.config, "epoch": epoch_done,
            "model": self.model.state_dict(), "objective": self.objective.state_dict(),
            "optimizer": self.optimizer.state_dict(), "train_loader": self.train_loader.state_dict(), "rng": rng,
        })

    def fit(self) -> list[dict]:
        """Train from the last checkpoint (or the start) to ``config.epochs``; return all epoch records."""
        history = self.run.metrics() if self.run is not None else []
        epochs = tqdm(range(self.start_epoch, self.config.epochs), desc="epochs", initial=self.start_epoch,
                      total=self.config.epochs, disable=None if self.config.progress else True)
        for epoch in epochs:
            record = self.train_epoch(epoch)
            history.append(record)
            epochs.set_postfix(loss=f"{record['train_loss']:.3f}", test=record["test_accuracy"])
            if self.run is not None:
                self.run.append_metrics(record)
                self._checkpoint(epoch + 1)
        return history

    def train_epoch(self, epoch: int) -> dict:
        start = time.perf_counter()
        lr = learning_rate(self.config, epoch)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        self.model.train()
        self.objective.train()
        n = len(self.train_loader.labels)
        predictions = torch.full((n,), -1, dtype=torch.long, device=self.device)
        loss_sum = torch.zeros((), device=self.device)
        long_epoch = len(self.train_loader) >= 100  # a bar per epoch only where an epoch takes a while
        batches = tqdm(self.train_loader, desc=f"epoch {epoch}", leave=False,
                       disable=None if self.config.progress and long_epoch else True)
        for x, y, index in batches:
            with _autocast(self.device, self.amp):
                step = self.objective.training_step(self.forward_model, x, y, index, epoch)
            self.optimizer.zero_grad(set_to_none=True)
            step.loss.backward()
            self.optimizer.step()
            loss_sum += step.loss.detach() * len(y)
            predictions[index] = step.logits.detach().argmax(1)
        seen = predictions >= 0
        given = self.train_loader.labels
        record = {
            "epoch": epoch, "lr": lr,
            "train_loss": loss_sum.item() / max(int(seen.sum()), 1),
            "train_accuracy_given": (predictions[seen] == given[seen]).float().mean().item(),
        }
        if self.clean_labels is not None:
            record["train_accuracy_clean"] = (predictions[seen] == self.clean_labels[seen]).float().mean().item()
        if not math.isfinite(record["train_loss"]):
            raise SelfAdaptError(f"training diverged at epoch {epoch} (loss {record['train_loss']}); lower --lr")
        record["test_accuracy"] = evaluate(self.forward_model, self.test_loader, amp=self.amp)
        if self.epoch_hook is not None:
            record.update(self.epoch_hook(epoch, predictions))
        record["seconds"] = time.perf_counter() - start
        return record
