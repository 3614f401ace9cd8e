"""The training loop: optimiser, schedule, AMP, multi-process, evaluators, checkpoint and resume.

It knows no method. Each batch goes to ``objective.training_step``, then ``objective.after_step``;
the objective's state (SAT's targets, ELR's averages, co-teaching's peer network) is saved because
the objective is a module. What is measured comes from the evaluators; the engine itself logs only
the training loss, the train accuracy against the given labels and the objective's step metrics.

Under ``torchrun`` the model and the objective's parameters train as one DistributedDataParallel
module; each process takes a shard of every global batch, and a loss that is a mean over the local
batch is rescaled so that the averaged gradient equals that of the global batch in one process.
"""
from __future__ import annotations

import math
import signal
import sys
import time
from contextlib import contextmanager

import torch
from torch import nn
from tqdm import tqdm

from selfadapt import distributed
from selfadapt.batch import Progress
from selfadapt.config.sections import EngineSettings
from selfadapt.data.loader import DeviceLoader
from selfadapt.engine.loggers import Loggers
from selfadapt.engine.optim import build_optimizer, learning_rate
from selfadapt.engine.profiling import Profiler
from selfadapt.engine.rundir import CHECKPOINT_FORMAT, RunDir
from selfadapt.errors import SelfAdaptError
from selfadapt.evaluators.base import EvalData, Evaluator, autocast
from selfadapt.objectives.base import Objective


class _TrainingStep(nn.Module):
    """Model and objective as one module, so DistributedDataParallel syncs both's gradients."""

    def __init__(self, model: nn.Module, objective: Objective, forward_model: nn.Module):
        super().__init__()
        self.model, self.objective = model, objective
        self.__dict__["forward_model"] = forward_model  # the compiled model, not a second registration

    def forward(self, batch, epoch):
        return self.objective.training_step(self.forward_model, batch, epoch)


def _per_process_buffers(step: _TrainingStep) -> list[str]:
    """Buffers of the objective's parameter-free parts (target stores, given labels): each
    process keeps them in sync itself, so DDP must not overwrite them with rank 0's every step."""
    names = []
    for prefix, module in step.objective.named_modules(prefix="objective"):
        if next(module.parameters(), None) is None:
            names += [f"{prefix}.{name}" for name, _ in module.named_buffers(recurse=False)]
    return names


@contextmanager
def sigterm_as_interrupt():
    """SIGTERM (a scheduler's kill, ``timeout``) unwinds like Ctrl-C: temporary files are removed
    and the last complete checkpoint stays."""
    def interrupt(signum, frame):
        raise KeyboardInterrupt
    try:
        previous = signal.signal(signal.SIGTERM, interrupt)
    except ValueError:  # not the main thread: leave signals alone
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


class RunInterrupted(KeyboardInterrupt):
    """Ctrl-C or SIGTERM during training, saying what running the same command again will do."""


# A CPU run projected to train longer than this gets a warning after its first PROJECTION_STEPS steps.
LONG_CPU_RUN_SECONDS = 3600.0
PROJECTION_STEPS = 10


class Trainer:
    """Train ``model`` with ``objective``; run ``evaluators`` on ``eval_data``; with a
    :class:`RunDir`, log, checkpoint and resume.

    Example
    -------
    >>> from selfadapt.objectives import LogitLoss, CrossEntropy
    >>> x = torch.randint(0, 256, (32, 1, 4, 4), dtype=torch.uint8); y = torch.randint(0, 2, (32,))
    >>> model = nn.Sequential(nn.Flatten(), nn.Linear(16, 2))
    >>> train = DeviceLoader(x, y, batch_size=8, shuffle=True)
    >>> history = Trainer(model, LogitLoss(CrossEntropy()), train, EngineSettings(epochs=2, progress=False)).fit()
    >>> [m["epoch"] for m in history]
    [0, 1]
    """

    def __init__(self, model: nn.Module, objective: Objective, train_loader: DeviceLoader, config: EngineSettings,
                 *, evaluators: list[Evaluator] = (), eval_data: EvalData | None = None, run: RunDir | None = None):
        self.config = config
        self.device = train_loader.device
        on_cuda = self.device.type == "cuda"
        self.amp = config.amp and on_cuda
        if config.sync_batchnorm and distributed.active():
            if not on_cuda:
                raise SelfAdaptError("--sync-batchnorm needs CUDA (SyncBatchNorm does not run on the CPU)")
            model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
        memory_format = torch.channels_last if config.channels_last and on_cuda else torch.preserve_format
        self.model = model.to(self.device, memory_format=memory_format)
        self.objective = objective.to(self.device, memory_format=memory_format)
        self.forward_model = torch.compile(self.model) if config.compile else self.model
        step = _TrainingStep(self.model, self.objective, self.forward_model)
        if distributed.active():
            nn.parallel.DistributedDataParallel._set_params_and_buffers_to_ignore_for_model(
                step, _per_process_buffers(step))
            step = nn.parallel.DistributedDataParallel(step, device_ids=[self.device] if on_cuda else None)
        self.step = step
        self.train_loader = train_loader
        self.evaluators, self.eval_data = list(evaluators), eval_data
        self.run = run
        self.optimizer = build_optimizer(config, list(self.model.parameters()) + list(self.objective.parameters()))
        self.profiler = Profiler(self.device, enabled=config.profile, path=run.path / "profile.json"
                                 if run is not None and distributed.is_main() else None)
        self.profiler.instrument(self.objective)
        self.start_epoch = 0
        if run is not None:
            self._resume()
        self.checkpointed = self.start_epoch if run is not None else None   # epochs the last checkpoint holds
        self.loggers = None  # --logger: the main process streams each epoch's record to the trackers
        if run is not None and config.logger and distributed.is_main():
            self.loggers = Loggers(config.logger, run.path, run.path.name, start_step=self.start_epoch)
            self.loggers.log_config(run.config)
        # the CPU run's length is projected once, after a few steps (see _warn_if_long)
        self._project_after_step = PROJECTION_STEPS if self.device.type == "cpu" and distributed.is_main() else None

    # ------------------------------------------------------------------ checkpoint

    def _resume(self) -> None:
        state = self.run.load_checkpoint()
        if state is None:
            if distributed.is_main():
                self.run.rewrite_metrics([])   # epochs logged before an interruption that left no checkpoint
            return
        self.model.load_state_dict(state["model"])
        self.objective.load_state_dict(state["objective"])
        self.optimizer.load_state_dict(state["optimizer"])
        processes = state["processes"]
        own = processes[distributed.rank()] if len(processes) == distributed.world_size() else processes[0]
        self.train_loader.load_state_dict(own["train_loader"])
        torch.set_rng_state(own["rng"]["torch"])
        if self.device.type == "cuda" and "cuda" in own["rng"]:
            torch.cuda.set_rng_state(own["rng"]["cuda"], self.device)
        self.start_epoch = state["epoch"]
        if len(processes) != distributed.world_size() and distributed.is_main():
            print(f"selfadapt: warning: this run was checkpointed by {len(processes)} process(es) and resumes on "
                  f"{distributed.world_size()}: the data order and the model continue exactly, the per-process "
                  "augmentation streams do not", file=sys.stderr, flush=True)
        if distributed.is_main():
            if "metrics" in state:
                self.run.rewrite_metrics(state["metrics"])
            else:                              # a checkpoint written before checkpoints held the metrics
                self.run.truncate_metrics(self.start_epoch)
        self.run.checkpoint = None             # drop the mapped file; the states are copied

    def _checkpoint(self, epoch_done: int, history: list[dict]) -> None:
        rng = {"torch": torch.get_rng_state()}
        if self.device.type == "cuda":
            rng["cuda"] = torch.cuda.get_rng_state(self.device)
        processes = distributed.all_gather_object({"rng": rng, "train_loader": self.train_loader.state_dict()})
        if distributed.is_main():
            self.run.save_checkpoint({
                "format": CHECKPOINT_FORMAT, "config": self.run.config, "epoch": epoch_done,
                "model": self.model.state_dict(), "objective": self.objective.state_dict(),
                "optimizer": self.optimizer.state_dict(), "processes": processes, "metrics": history,
            })
        self.checkpointed = epoch_done

    # ------------------------------------------------------------------ loop

    def fit(self) -> list[dict]:
        """Train from the last checkpoint (or the start) to ``config.epochs``; return all epoch records."""
        history = self.run.metrics() if self.run is not None else []
        epochs = self.config.epochs
        bar_wanted = self.config.progress and distributed.is_main()
        interactive = bar_wanted and sys.stdout.isatty()
        bar = tqdm(range(self.start_epoch, epochs), desc="epochs", initial=self.start_epoch, total=epochs,
                   disable=not interactive)
        shown = ["train_loss", "train_accuracy_given", *(e.primary for e in self.evaluators if e.primary)]
        try:
            with sigterm_as_interrupt():
                for epoch in bar:
                    self.profiler.begin_epoch(epoch)
                    record = self.train_epoch(epoch)
                    history.append(record)
                    if interactive:
                        bar.set_postfix_str(_short(record, shown))
                    elif bar_wanted:
                        print(f"epoch {epoch} [0..{epochs - 1}]: {_short(record, shown)}", flush=True)
                    if self.loggers is not None:
                        self.loggers.log_metrics(record, epoch)
                    self._log_and_checkpoint(epoch, record, history)
                    self.profiler.end_epoch()
        except KeyboardInterrupt:
            raise RunInterrupted(self._after_interrupt()) from None
        if self.profiler.epochs and distributed.is_main():
            print(self.profiler.summary_line(), flush=True)
        return history

    def _log_and_checkpoint(self, epoch: int, record: dict, history: list[dict]) -> None:
        if self.run is None:
            return
        if distributed.is_main():
            self.run.append_metrics(record)
        if (epoch + 1) % self.config.checkpoint_every == 0 or epoch + 1 == self.config.epochs:
            with self.profiler.phase("checkpoint"):
                self._checkpoint(epoch + 1, history)

    def _after_interrupt(self) -> str:
        """What running the same command again will do, after an interruption."""
        if self.run is None:
            return "nothing was saved"
        if not self.checkpointed:
            return "there is no checkpoint yet, so running the same command again starts the run over"
        return (f"running the same command again resumes after epoch {self.checkpointed - 1} (0-based), "
                "from the last checkpoint")

    def train_epoch(self, epoch: int) -> dict:
        """One epoch of training, then the evaluators that are due; returns the epoch's record."""
        start = time.perf_counter()
        lr = learning_rate(self.config, epoch)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        self.model.train()
        self.objective.train()
        sums = torch.zeros(4, device=self.device)  # loss x n, samples, correct, labelled with logits
        extra: dict[str, torch.Tensor] = {}
        world = distributed.world_size()
        global_sizes = self.train_loader.global_batch_sizes()
        steps = len(global_sizes)
        batches = tqdm(self.train_loader, desc=f"epoch {epoch}", leave=False,
                       disable=not (self.config.progress and steps >= 100 and sys.stdout.isatty()
                                    and distributed.is_main()))
        for step, batch in enumerate(self.profiler.timed(batches, "data")):
            with self.profiler.phase("forward_loss"), autocast(self.device, self.amp):
                out = self.step(batch, epoch)
            n = len(batch.index)
            loss = out.loss if world == 1 else out.loss * (n * world / global_sizes[step])
            self.optimizer.zero_grad(set_to_none=True)
            with self.profiler.phase("backward"):
                loss.backward()
            with self.profiler.phase("optimizer"):
                self.optimizer.step()
            with self.profiler.phase("after_step"):
                self.objective.after_step(self.model, Progress(epoch, step, steps, self.config.epochs))
            sums[0] += out.loss.detach().float() * n
            sums[1] += n
            if out.logits is not None:
                labeled = batch.y >= 0  # counted with a mask product, not a mask index (no host sync)
                sums[2] += ((out.logits.detach().argmax(1) == batch.y) & labeled).sum()
                sums[3] += labeled.sum()
            for key, value in (out.metrics or {}).items():
                extra[key] = extra.get(key, 0) + value.detach().float() * n
            if step + 1 == self._project_after_step or (self._project_after_step and step + 1 == steps):
                self._warn_if_long(epoch, step + 1, steps, time.perf_counter() - start)
        sums = distributed.all_reduce_sum(sums).tolist()
        record = {"epoch": epoch, "lr": lr, "train_loss": sums[0] / max(sums[1], 1)}
        if sums[3]:
            record["train_accuracy_given"] = sums[2] / sums[3]
        for key, value in extra.items():
            record[key] = distributed.all_reduce_sum(value).item() / max(sums[1], 1)
        record.update(self.objective.end_epoch(epoch))
        if not math.isfinite(record["train_loss"]):
            raise SelfAdaptError(f"training diverged at epoch {epoch} (loss {record['train_loss']}); lower --lr")
        record["train_seconds"] = time.perf_counter() - start
        with self.profiler.phase("evaluation"):
            record.update(self.evaluate(epoch))
        record["seconds"] = time.perf_counter() - start
        return record

    def _warn_if_long(self, epoch: int, done: int, steps: int, seconds: float) -> None:
        """Once per process: warn on stderr when the training steps left project past
        :data:`LONG_CPU_RUN_SECONDS` on the CPU (evaluation not counted)."""
        self._project_after_step = None
        left = seconds / done * (steps * (self.config.epochs - epoch) - done)
        if left > LONG_CPU_RUN_SECONDS:
            print(f"selfadapt: warning: this run's training takes about {left / 3600:.1f} h more on the CPU "
                  f"({seconds / done:.2f} s a step, {steps} steps an epoch, {self.config.epochs - epoch} epochs "
                  "to go). A GPU (--device cuda), a smaller --model, --subset or fewer --epochs is faster; "
                  "Ctrl-C keeps the last checkpoint and the same command resumes.", file=sys.stderr, flush=True)

    def evaluate(self, epoch: int) -> dict:
        """The metrics of the evaluators due after ``epoch`` (measured by the main process, shared
        with every process so all make the same decisions)."""
        due = [e for e in self.evaluators if e.due(epoch, self.config.epochs)]
        if not due:
            return {}
        metrics = {}
        if distributed.is_main():
            start = time.perf_counter()
            for evaluator in due:
                metrics.update(evaluator(self.forward_model, self.objective, self.eval_data, epoch))
            metrics["eval_seconds"] = time.perf_counter() - start
        return distributed.broadcast_object(metrics)


def _short(record: dict, keys: list[str]) -> str:
    """A one-line view of an epoch record for logs: the loss, train accuracy and the evaluators'
    primary metrics (``metrics.jsonl`` holds the rest).

    >>> _short({"train_loss": 0.5, "test_accuracy": 0.9, "aurc_sr": 0.1, "seconds": 2.0}, ["train_loss", "test_accuracy"])
    'train_loss 0.5000, test_accuracy 0.9000, 2.0 s'
    """
    text = ", ".join(f"{k} {record[k]:.4f}" for k in dict.fromkeys(keys) if isinstance(record.get(k), float))
    return f"{text}, {record['seconds']:.1f} s"
