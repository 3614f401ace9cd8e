"""One training run from a :class:`RunConfig`: data -> corruption -> model -> objective -> engine -> report.

``run_experiment(config, out)`` is what ``selfadapt train`` calls; the grid runner and the demo call
it too. Every seed is separate and recorded: ``noise_seed`` (corruption), ``data_seed`` (subset,
shuffling, augmentation) and ``seed`` (initialisation).
"""
from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from selfadapt.data.augment import AUGMENTATIONS, Augment
from selfadapt.data.corruption import CORRUPTIONS, INPUT_CORRUPTIONS, corrupt, find_human_labels_file, load_human_labels
from selfadapt.data.datasets import Dataset, class_balanced_subset, default_data_dir, load_dataset
from selfadapt.data.loader import DeviceLoader
from selfadapt.engine import OPTIMIZERS, SCHEDULES, EngineConfig, Trainer
from selfadapt.errors import SelfAdaptError
from selfadapt.label_issues import label_issue_scores
from selfadapt.models import build_model, model_names
from selfadapt.objectives import OBJECTIVES, ObjectiveContext, build_objective, sat_loss_of
from selfadapt.rundir import RunDir


@dataclass
class RunConfig:
    """Everything that decides a run. Defaults are the paper's CIFAR protocol (SPEC section 3)."""

    dataset: str = "cifar10"
    data_dir: str | None = None
    subset: int | None = None            # seeded class-balanced subset of the training set
    test_subset: int | None = None       # fixed class-balanced subset of the test set (quick CPU grids)
    model: str = "resnet34"
    width: int | None = None             # base width (ResNets) or hidden size (MLP)
    method: str = "sat"
    method_options: dict = field(default_factory=dict)   # e.g. {"gce_q": 0.7}
    noise: str = "none"
    noise_rate: float = 0.0
    noise_seed: int = 0
    noise_variant: str | None = None     # CIFAR-N label set for --noise human (worse, aggre, random1..3, noisy)
    seed: int = 0                        # model initialisation
    data_seed: int | None = None         # subset, data order and augmentation; defaults to seed
    epochs: int = 200
    batch_size: int = 256
    optimizer: str = "sgd"
    lr: float = 0.1
    momentum: float = 0.9
    nesterov: bool = False
    weight_decay: float = 5e-4
    schedule: str = "cosine"
    milestones: list[int] = field(default_factory=list)
    gamma: float = 0.1
    sat_momentum: float = 0.9
    sat_start_epoch: int = 60
    augment: str = "crop-flip"
    device: str = "auto"
    amp: bool = True
    channels_last: bool = True
    compile: bool = False
    deterministic: bool = True
    progress: bool = True

    def __post_init__(self):
        if self.data_seed is None:
            self.data_seed = self.seed

    def to_dict(self) -> dict:
        return json.loads(json.dumps(dataclasses.asdict(self)))

    @classmethod
    def from_dict(cls, values: dict) -> "RunConfig":
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise SelfAdaptError(f"unknown setting(s) {', '.join(unknown)}")
        return cls(**values)


def validate(config: RunConfig) -> None:
    """Reject bad settings with one clear line, before any data is read."""
    checks = [
        (0.0 <= config.noise_rate <= 1.0, f"noise rate must lie in [0, 1], got {config.noise_rate}"),
        (0.0 <= config.sat_momentum < 1.0, f"SAT momentum must lie in [0, 1), got {config.sat_momentum}"),
        (config.sat_start_epoch >= 0, f"SAT start epoch must be >= 0, got {config.sat_start_epoch}"),
        (config.epochs >= 1, f"epochs must be >= 1, got {config.epochs}"),
        (config.batch_size >= 1, f"batch size must be >= 1, got {config.batch_size}"),
        (config.lr > 0, f"learning rate must be > 0, got {config.lr}"),
        (config.weight_decay >= 0, f"weight decay must be >= 0, got {config.weight_decay}"),
        (config.subset is None or config.subset > 0, f"subset must be > 0, got {config.subset}"),
        (config.test_subset is None or config.test_subset > 0, f"test subset must be > 0, got {config.test_subset}"),
        (config.method in OBJECTIVES, f"unknown method {config.method!r}; choose from {', '.join(sorted(OBJECTIVES))}"),
        (config.model in model_names(), f"unknown model {config.model!r}; choose from {', '.join(model_names())}"),
        (config.noise in CORRUPTIONS, f"unknown noise {config.noise!r}; choose from {', '.join(CORRUPTIONS)}"),
        (config.optimizer in OPTIMIZERS, f"unknown optimizer {config.optimizer!r}; choose from {', '.join(OPTIMIZERS)}"),
        (config.schedule in SCHEDULES, f"unknown schedule {config.schedule!r}; choose from {', '.join(SCHEDULES)}"),
        (config.augment in AUGMENTATIONS, f"unknown augmentation {config.augment!r}; choose from {', '.join(AUGMENTATIONS)}"),
    ]
    for ok, message in checks:
        if not ok:
            raise SelfAdaptError(message)
    resolve_device(config.device)


def resolve_device(name: str) -> str:
    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    try:
        device = torch.device(name)
    except RuntimeError:
        raise SelfAdaptError(f"unknown device {name!r}; use cpu, cuda, cuda:N or auto") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SelfAdaptError(f"device {name!r} asked for, but this machine has no CUDA GPU")
    return name


@dataclass
class PreparedData:
    """The training data as the run sees it, with its truth kept beside it."""

    dataset: Dataset
    images: torch.Tensor          # training images after any input corruption
    labels: torch.Tensor          # given (possibly corrupted) labels
    clean_labels: torch.Tensor
    noise: object                 # NoiseRecord

    @property
    def label_errors(self) -> torch.Tensor:
        return self.labels != self.clean_labels


def prepare_data(config: RunConfig, *, verbose: bool = True) -> PreparedData:
    """Load, subset and corrupt the training data exactly as ``config`` says."""
    dataset = load_dataset(config.dataset, config.data_dir)
    if config.subset is not None and config.subset < len(dataset.train):
        dataset.train = class_balanced_subset(dataset.train, config.subset, seed=config.data_seed)
        if dataset.coarse_train_labels is not None:
            dataset.coarse_train_labels = dataset.coarse_train_labels[dataset.train.source_index]
    if config.test_subset is not None and config.test_subset < len(dataset.test):
        dataset.test = class_balanced_subset(dataset.test, config.test_subset, seed=0)  # the same for every run
    train = dataset.train
    human = None
    if config.noise == "human":
        path = find_human_labels_file(config.dataset, config.data_dir or default_data_dir())
        human = load_human_labels(path, variant=config.noise_variant or "worse")
    images, labels, record = corrupt(
        train.images, train.labels, kind=config.noise, rate=config.noise_rate, seed=config.noise_seed,
        num_classes=dataset.num_classes, dataset=config.dataset, coarse_labels=dataset.coarse_train_labels,
        source_index=train.source_index, human_labels=human, mean=dataset.mean, std=dataset.std)
    if verbose and config.noise != "none":
        what = "images corrupted" if config.noise in INPUT_CORRUPTIONS else "labels wrong"
        print(f"{config.noise} noise (rate {config.noise_rate}, seed {config.noise_seed}): "
              f"{record.realised_error_rate:.2%} of {len(labels)} training {what}")
    return PreparedData(dataset, images, labels, train.labels.clone(), record)


def make_model_factory(config: RunConfig, dataset: Dataset):
    def factory():
        return build_model(config.model, num_classes=dataset.num_classes, in_channels=dataset.in_channels,
                           image_size=dataset.image_size, mean=dataset.mean, std=dataset.std, width=config.width)
    return factory


def configure_determinism(config: RunConfig, device: str) -> None:
    """CPU kernels are deterministic already; on CUDA, deterministic mode trades speed for it."""
    if device.startswith("cuda"):
        torch.use_deterministic_algorithms(config.deterministic, warn_only=True)
        torch.backends.cudnn.benchmark = not config.deterministic


def memorisation_hook(data: PreparedData, objective):
    """Per-epoch shares of label-corrupted samples predicted as their given / clean label (and, for
    SAT, whose corrected target's argmax is the clean label)."""
    wrong = data.label_errors
    if not wrong.any():
        return None
    sat = sat_loss_of(objective)

    def hook(epoch, predictions):
        mask = wrong.to(predictions.device)
        given = data.labels.to(predictions.device)[mask]
        clean = data.clean_labels.to(predictions.device)[mask]
        seen = predictions[mask] >= 0
        preds = predictions[mask][seen]
        out = {"memorised_share": (preds == given[seen]).float().mean().item(),
               "predicted_clean_share": (preds == clean[seen]).float().mean().item()}
        if sat is not None:
            out["corrected_target_share"] = (sat.targets[mask].argmax(1) == clean).float().mean().item()
        return out
    return hook


@dataclass
class RunResult:
    summary: dict
    data: PreparedData
    objective: object   # the trained Objective (SAT's targets live in it)


def run_experiment(config: RunConfig, out: str | Path | None = None, *, verbose: bool = True) -> dict:
    """Train one run and return its summary (also written to ``out/summary.json``).

    Example: ``run_experiment(RunConfig(dataset="digits", model="mlp", epochs=5), "runs/x")``.
    """
    return train_run(config, out, verbose=verbose).summary


def train_run(config: RunConfig, out: str | Path | None = None, *, verbose: bool = True) -> RunResult:
    """Like :func:`run_experiment`, but also hand back the data and the trained objective."""
    validate(config)
    device = resolve_device(config.device)
    run = RunDir(out, config.to_dict()) if out is not None else None
    data = prepare_data(config, verbose=verbose)
    if run is not None:
        data.noise.save(run.path / "noise.npz")
    configure_determinism(config, device)
    torch.manual_seed(config.seed)
    factory = make_model_factory(config, data.dataset)
    model = factory()
    options = {"sat_momentum": config.sat_momentum, "sat_start_epoch": config.sat_start_epoch,
               "noise_rate": config.noise_rate, "seed": config.data_seed, **config.method_options}
    objective = build_objective(config.method, ObjectiveContext(
        labels=data.labels, num_classes=data.dataset.num_classes, epochs=config.epochs,
        model_factory=factory, options=options))
    engine_config = EngineConfig(
        epochs=config.epochs, optimizer=config.optimizer, lr=config.lr, momentum=config.momentum,
        nesterov=config.nesterov, weight_decay=config.weight_decay, schedule=config.schedule,
        milestones=tuple(config.milestones), gamma=config.gamma, device=device, amp=config.amp,
        channels_last=config.channels_last, compile=config.compile, progress=config.progress and verbose)
    on_cuda = device.startswith("cuda")
    train_loader = DeviceLoader(data.images, data.labels, batch_size=config.batch_size, shuffle=True,
                                seed=config.data_seed, augment=Augment(config.augment), device=device,
                                channels_last=on_cuda and config.channels_last)
    test = data.dataset.test
    test_loader = DeviceLoader(test.images, test.labels, batch_size=engine_config.eval_batch_size,
                               device=device, channels_last=on_cuda and config.channels_last)
    trainer = Trainer(model, objective, train_loader, test_loader, engine_config, run=run,
                      clean_labels=data.clean_labels, epoch_hook=memorisation_hook(data, objective))
    if verbose and trainer.start_epoch:
        print(f"resuming {out} from epoch {trainer.start_epoch}")
    history = trainer.fit()
    summary = summarise(config, history, data, objective)
    if run is not None:
        sat = sat_loss_of(objective)
        if sat is not None:
            np.save(run.path / "targets.npy", sat.targets.cpu().numpy())
        run.write_summary(summary)
    if verbose:
        print(f"{config.method}: final test accuracy {_pct(summary['final_test_accuracy'])}, "
              f"best {_pct(summary['best_test_accuracy'])} (epoch {summary['best_epoch']})")
    return RunResult(summary, data, objective)


def summarise(config: RunConfig, history: list[dict], data: PreparedData, objective) -> dict:
    tested = [m for m in history if m.get("test_accuracy") is not None]
    best = max(tested, key=lambda m: m["test_accuracy"], default=None)
    summary = {
        "method": config.method, "dataset": config.dataset, "model": config.model,
        "epochs": len(history),
        "final_test_accuracy": history[-1].get("test_accuracy") if history else None,
        "best_test_accuracy": best["test_accuracy"] if best else None,
        "best_epoch": best["epoch"] if best else None,
        "best_note": "best epoch chosen on the test set (optimistic); report final_test_accuracy",
        "final_train_accuracy_clean": history[-1].get("train_accuracy_clean") if history else None,
        "seconds": sum(m["seconds"] for m in history),
        "noise": data.noise.summary(),
    }
    sat = sat_loss_of(objective)
    if sat is not None and data.label_errors.any():
        flagged = sat.suspected_label_errors().index.cpu()
        summary["label_issues"] = label_issue_scores(flagged, data.label_errors)
    return summary


def _pct(value) -> str:
    return "n/a" if value is None else f"{100 * value:.2f}%"
