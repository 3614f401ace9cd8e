"""One training run from a :class:`~selfadapt.config.run.RunConfig`:
data -> corruption -> model -> objective -> engine -> evaluators -> report.

``run_experiment(config, out)`` is what ``selfadapt train`` calls; the grid runner and the demo call
it too. The code names no method: the method's registry entry says how many outputs the model
needs, how many views a batch has, how to build the objective and what to evaluate. Every seed is
separate and recorded: ``noise_seed`` (corruption), ``data_seed`` (subset, shuffling,
augmentation) and ``seed`` (initialisation).
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

import torch

from selfadapt import distributed
from selfadapt.config.provenance import provenance
from selfadapt.config.run import RunConfig
from selfadapt.data.augment import Augment
from selfadapt.data.corruption import INPUT_CORRUPTIONS, corrupt
from selfadapt.data.diskimages import take
from selfadapt.data.files import default_data_dir
from selfadapt.data.human_labels import find_human_labels_file, load_human_labels
from selfadapt.data.label_overrides import read_label_overrides
from selfadapt.data.loader import DeviceLoader
from selfadapt.data.registry import load_dataset, load_unlabeled_split
from selfadapt.data.splits import class_balanced_subset
from selfadapt.data.stream import make_loader
from selfadapt.data.types import Dataset, ImageSet, LoadOptions
from selfadapt.engine.loggers import check_available
from selfadapt.engine.rundir import RunDir, load_checkpoint
from selfadapt.engine.trainer import Trainer
from selfadapt.errors import SelfAdaptError
from selfadapt.evaluators.base import EvalData, Evaluator
from selfadapt.evaluators.registry import build_evaluators, resolve_evaluator_options
from selfadapt.frozen_backbone import freeze_backbone, head_model
from selfadapt.models import build_model, model_width
from selfadapt.models.registry import has_stem
from selfadapt.models.resnet import resolve_stem
from selfadapt.objectives.base import Objective
from selfadapt.objectives.method import Method, MethodContext
from selfadapt.objectives.registry import get_method
from selfadapt.summary import describe_summary, save_targets, summarise

__all__ = ["PreparedData", "RunConfig", "RunParts", "RunResult", "build_run", "evaluate_checkpoint", "prepare_data",
           "resolve_device", "run_experiment", "train_run"]


def resolve_device(name: str) -> str:
    """``auto`` -> ``cuda`` where a GPU is visible, else ``cpu``; an impossible device is an error."""
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
class Split:
    """Images with their given (possibly corrupted) and true labels, and their rows in the data set's
    training split (``ImageSet.source_index`` maps those to the official order)."""

    images: torch.Tensor
    labels: torch.Tensor
    clean_labels: torch.Tensor
    rows: torch.Tensor

    def select(self, rows: torch.Tensor) -> Split:
        return Split(take(self.images, rows), self.labels[rows], self.clean_labels[rows], self.rows[rows])


@dataclass
class PreparedData:
    """The training data as the run sees it, with its truth kept beside it, and the validation split
    held out of it (``val``, ``None`` without ``--val-size``; its labels are corrupted like the rest)."""

    dataset: Dataset
    images: torch.Tensor          # training images after any input corruption
    labels: torch.Tensor          # given (possibly corrupted) labels
    clean_labels: torch.Tensor
    noise: object                 # NoiseRecord, over the training split before the validation split is held out
    val: Split | None = None
    unlabeled: torch.Tensor | None = None  # extra training images without labels (--unlabeled), after `images`
    pictures: torch.Tensor | None = None   # the training images where `images` holds their features (--freeze-backbone)
    relabelled: bool = False               # --labels-from laid corrected labels over the (corrupted) ones

    @property
    def training_images(self) -> torch.Tensor:
        """What the model trains on: the labelled images, then any unlabeled ones."""
        return self.images if self.unlabeled is None else torch.cat([self.images, self.unlabeled])

    @property
    def training_labels(self) -> torch.Tensor:
        """The given labels of :attr:`training_images`, ``-1`` for the unlabeled ones."""
        if self.unlabeled is None:
            return self.labels
        return torch.cat([self.labels, self.labels.new_full((len(self.unlabeled),), -1)])

    @property
    def label_errors(self) -> torch.Tensor:
        return self.labels != self.clean_labels

    @property
    def label_error_rate(self) -> float | None:
        """The realised share of wrong labels where the corruption is known (after ``--labels-from``:
        of the corrected labels), else ``None``."""
        if self.noise.kind == "none":
            return None
        return float(self.label_errors.float().mean()) if self.relabelled else self.noise.realised_error_rate

    @property
    def truth_known(self) -> bool:
        """Whether ``clean_labels`` are the truth (a corruption was injected, or human labels read)."""
        return self.noise.kind != "none"


def prepare_data(config: RunConfig, *, verbose: bool = True) -> PreparedData:
    """Load, subset and corrupt the training data exactly as ``config`` says; with ``--unlabeled``,
    add the data set's unlabeled split (never subset, corrupted or held out)."""
    prepared = _prepare_labeled(config, verbose=verbose)
    if config.data.unlabeled:
        prepared.unlabeled = load_unlabeled_split(config.data.dataset, config.data.data_dir)
        if verbose:
            print(f"pre-training on {len(prepared.images)} labelled and {len(prepared.unlabeled)} unlabeled images "
                  "(labels unused)")
    return prepared


def load_options(config: RunConfig, *, verbose: bool) -> LoadOptions:
    """How ``config`` reads its data set (image collections: size, cache, streaming, columns, and the
    model and device an automatic image size is chosen for)."""
    data = config.data
    return LoadOptions(skip_unreadable=data.skip_unreadable, image_size=data.image_size, cache_dir=data.cache_dir,
                       stream=data.stream, image_column=data.image_column, label_column=data.label_column,
                       model=config.model.model, device=resolve_device(config.engine.device), verbose=verbose)


def _prepare_labeled(config: RunConfig, *, verbose: bool) -> PreparedData:
    data = config.data
    dataset = load_dataset(data.dataset, data.data_dir, options=load_options(config, verbose=verbose))
    overrides = read_label_overrides(data.labels_from, dataset) if data.labels_from else None
    for flag, wanted, split in (("--subset", data.subset, dataset.train), ("--test-subset", data.test_subset,
                                                                             dataset.test)):
        if wanted is not None and wanted > len(split):
            raise SelfAdaptError(f"{flag} {wanted} is more than the {len(split)} samples of {data.dataset}'s "
                                 f"{'training' if split is dataset.train else 'test'} split")
    if data.subset is not None and data.subset < len(dataset.train):
        dataset.train = class_balanced_subset(dataset.train, data.subset, seed=config.data_seed)
        if dataset.coarse_train_labels is not None:
            dataset.coarse_train_labels = dataset.coarse_train_labels[dataset.train.source_index]
    if data.test_subset is not None and data.test_subset < len(dataset.test):
        dataset.test = class_balanced_subset(dataset.test, data.test_subset, seed=0)  # the same for every run
    train = dataset.train
    human = None
    if data.noise == "human":
        path = find_human_labels_file(data.dataset, data.data_dir or default_data_dir())
        human = load_human_labels(path, variant=data.noise_variant or "worse")
    images, labels, record = corrupt(
        train.images, train.labels, kind=data.noise, rate=data.noise_rate, seed=data.noise_seed,
        num_classes=dataset.num_classes, dataset=data.dataset, coarse_labels=dataset.coarse_train_labels,
        variant=data.noise_variant if data.noise != "human" else None,
        source_index=train.source_index, human_labels=human, mean=dataset.mean, std=dataset.std)
    if overrides is not None:
        labels = overrides.apply(labels, train.source_index, verbose=verbose)
    if verbose and data.noise != "none":
        what = "images corrupted" if data.noise in INPUT_CORRUPTIONS else "labels wrong"
        print(f"{data.noise} noise (rate {data.noise_rate}, seed {data.noise_seed}): "
              f"{record.realised_error_rate:.2%} of {len(labels)} training {what}")
    everything = Split(images, labels, train.labels.clone(), torch.arange(len(labels)))
    if verbose and overrides is not None and data.noise not in ("none", *INPUT_CORRUPTIONS):
        print(f"after --labels-from: {float((labels != everything.clean_labels).float().mean()):.2%} of the training "
              "labels wrong")
    relabelled = overrides is not None and data.noise not in INPUT_CORRUPTIONS
    if not data.val_size:
        return PreparedData(dataset, images, labels, everything.clean_labels, record, relabelled=relabelled)
    if data.val_size >= len(labels):
        raise SelfAdaptError(f"--val-size {data.val_size} leaves nothing to train on: the training set has "
                             f"{len(labels)} samples")
    held = class_balanced_subset(ImageSet(images, labels, everything.rows), data.val_size, seed=config.data_seed)
    keep = torch.ones(len(labels), dtype=torch.bool)
    keep[held.source_index] = False
    kept = everything.select(keep.nonzero().flatten())
    dataset.train = train.select(kept.rows)
    return PreparedData(dataset, kept.images, kept.labels, kept.clean_labels, record,
                        everything.select(held.source_index), relabelled=relabelled)


def model_factory(config: RunConfig, dataset: Dataset, method: Method):
    """A function building a fresh model with the outputs ``method`` needs for the data set's classes."""
    def build():
        return build_model(head_model(config), num_classes=method.outputs(dataset.num_classes),
                           in_channels=dataset.in_channels, image_size=dataset.image_size, mean=dataset.mean,
                           std=dataset.std, width=config.model.width, dropout=config.model.dropout,
                           stem=config.model.stem)
    return build


def configure_determinism(config: RunConfig, device: str) -> None:
    """CPU kernels are deterministic already; on CUDA, deterministic mode trades speed for it."""
    if device.startswith("cuda"):
        torch.use_deterministic_algorithms(config.engine.deterministic, warn_only=True)
        torch.backends.cudnn.benchmark = not config.engine.deterministic


@dataclass
class RunParts:
    """Everything built for a run, before training."""

    config: RunConfig
    device: str
    data: PreparedData
    method: Method
    model: torch.nn.Module
    objective: Objective
    evaluators: list[Evaluator]
    eval_data: EvalData
    train_loader: DeviceLoader


def build_run(config: RunConfig, *, device: str, verbose: bool = True) -> RunParts:
    """Load the data and build model, objective, loaders and evaluators (nothing is written)."""
    data = prepare_data(config, verbose=verbose)
    if config.model.freeze_backbone:
        data = freeze_backbone(config, data, device, verbose=verbose)
    method = get_method(config.method.method)
    configure_determinism(config, device)
    torch.manual_seed(config.model.seed)
    factory = model_factory(config, data.dataset, method)
    model = factory()
    if verbose and has_stem(config.model.model):
        stem = resolve_stem(config.model.stem, data.dataset.image_size)
        print(f"{config.model.model} with the {stem} stem ({data.dataset.image_size} px images"
              + ("; --stem to choose)" if config.model.stem == "auto" else ")"))
    objective = method.build(MethodContext(
        labels=data.training_labels, num_classes=data.dataset.num_classes, epochs=config.engine.epochs, model=model,
        model_factory=factory, label_error_rate=data.label_error_rate, seed=config.data_seed,
        width=model_width(config.model.model, config.model.width)),
        method.parse(config.method.options))
    channels_last = device.startswith("cuda") and config.engine.channels_last
    augment = method.view_augmentations(config, data.dataset) or Augment(config.data.augment)
    train_loader = make_loader(data.training_images, data.training_labels, batch_size=config.data.batch_size,
                               shuffle=True, seed=config.data_seed, augment=augment, views=method.views,
                               device=device, channels_last=channels_last,
                               shard=(distributed.rank(), distributed.world_size()))
    eval_batch = config.engine.eval_batch_size
    test = data.dataset.test
    def loader(images, labels):
        return make_loader(images, labels, batch_size=eval_batch, device=device, channels_last=channels_last)
    eval_data = EvalData(
        test=loader(test.images, test.labels), train=loader(data.images, data.labels),
        clean_labels=data.clean_labels if data.truth_known else None,
        num_classes=data.dataset.num_classes, amp=config.engine.amp,
        val=None if data.val is None else loader(data.val.images, data.val.labels))
    evaluators = build_evaluators(config.eval.evaluators, config.eval.options)
    return RunParts(config, device, data, method, model, objective, evaluators, eval_data, train_loader)


@dataclass
class RunResult:
    summary: dict
    data: PreparedData
    objective: Objective   # the trained objective (SAT's targets live in it)
    model: torch.nn.Module


def run_experiment(config: RunConfig, out: str | Path | None = None, *, verbose: bool = True) -> dict:
    """Train one run and return its summary (also written to ``out/summary.json``).

    Example: ``run_experiment(RunConfig.from_flat({"dataset": "digits", "model": "mlp", "epochs": 5}), "runs/x")``.
    """
    return train_run(config, out, verbose=verbose).summary


def train_run(config: RunConfig, out: str | Path | None = None, *, verbose: bool = True) -> RunResult:
    """Like :func:`run_experiment`, but also hand back the data, the trained objective and model.

    Everything that can fail before training (the settings, the output directory, its lock, the
    checkpoint, the data) is checked before anything is written.
    """
    check_available(config.engine.logger)
    timeout = config.engine.dist_timeout
    device = distributed.setup(resolve_device(config.engine.device), timeout)
    main = distributed.is_main()
    run = RunDir(out, config.to_dict(), writer=main) if out is not None else None
    try:
        return _train(config, run, device, verbose and main)
    except RuntimeError as e:           # a collective that another process never answered
        problem = distributed.failure(e, timeout)
        if problem is None:
            raise
        raise problem from None
    finally:
        if run is not None:
            run.close()


def _train(config: RunConfig, run: RunDir | None, device: str, verbose: bool) -> RunResult:
    main = distributed.is_main()
    parts = build_run(config, device=device, verbose=verbose)
    origin = provenance(device)
    if run is not None:
        run.create()
        parts.eval_data.run_dir = run.path
        if main:
            parts.data.noise.save(run.path / "noise.npz")
            run.append_provenance(origin)
    trainer = Trainer(parts.model, parts.objective, parts.train_loader,
                      _engine_for_process(config, verbose), evaluators=parts.evaluators,
                      eval_data=parts.eval_data, run=run)
    if verbose and trainer.start_epoch:
        print(f"resuming {run.path} at epoch {trainer.start_epoch} (0-based)")
        for line in _kept_choices(parts.objective):
            print(line)
    try:
        history = trainer.fit()
        summary = {**summarise(config, history, parts), "provenance": origin}
        if run is not None and main:
            save_targets(parts.objective, run.path)
            run.write_summary(summary)
        if trainer.loggers is not None:
            trainer.loggers.log_images(run.path)  # the run's plots
    finally:
        if trainer.loggers is not None:
            trainer.loggers.close()
    if verbose:
        print(describe_summary(summary))
    return RunResult(summary, parts.data, parts.objective, parts.model)


def _kept_choices(objective: Objective) -> list[str]:
    """What a resumed run keeps of the choices it made itself (SAT's automatic start and momentum)."""
    used = {k: v for k, v in objective.settings_used().items() if v is not None}
    if not used:
        return []
    return ["keeping what this run chose when it started: " + ", ".join(f"{k} {v:g}" for k, v in used.items())]


def _engine_for_process(config: RunConfig, verbose: bool):
    return dataclasses.replace(config.engine, progress=config.engine.progress and verbose)


def evaluate_checkpoint(path: str | Path, *, device: str = "auto", data_dir: str | None = None,
                        evaluators: list[str] | None = None, options: dict | None = None) -> dict:
    """Rebuild the run's data, model and objective from a run directory or checkpoint (loaded with
    ``weights_only=True``) and run ``evaluators`` (default: the run's own) once; ``options`` override
    evaluator options (``{"autoattack_n_ex": 500}``).

    Example: ``evaluate_checkpoint("runs/demo/sat")["metrics"]["test_accuracy"]``.
    """
    state = load_checkpoint(path)
    config = RunConfig.from_dict(state["config"])
    if data_dir is not None:
        config.data.data_dir = data_dir
    names = evaluators if evaluators is not None else config.eval.evaluators
    options = resolve_evaluator_options(names, {**config.eval.options, **(options or {})})
    config = dataclasses.replace(config, eval=dataclasses.replace(config.eval, evaluators=names, options=options))
    parts = build_run(config, device=resolve_device(device), verbose=False)
    parts.eval_data.run_dir = Path(path) if Path(path).is_dir() else Path(path).parent
    for name, module in (("model", parts.model), ("objective", parts.objective)):
        try:
            module.load_state_dict(state[name])
        except RuntimeError as e:
            raise SelfAdaptError(f"{path} does not match its own configuration ({name}: "
                                 f"{str(e).splitlines()[0]})") from None
        module.to(parts.device)
    metrics = {}
    for evaluator in build_evaluators(names, options):
        metrics.update(evaluator(parts.model, parts.objective, parts.eval_data, state["epoch"] - 1))
    if not metrics:
        raise SelfAdaptError(f"the evaluators {', '.join(names)} have nothing to measure on this run")
    return {"metrics": metrics, "dataset": config.data.dataset, "model": config.model.model,
            "method": config.method.method, "epochs_trained": state["epoch"],
            "test_samples": len(parts.data.dataset.test)}
