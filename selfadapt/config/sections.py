"""The five sections of a run's configuration, every setting declared once.

Setting names are unique across sections, so the command line (``--noise-rate``), presets and
grid files (``noise_rate = 0.4``) share one flat namespace derived from these declarations;
``config.json`` stores the nested form (:class:`selfadapt.config.run.RunConfig`). The values a
name may take come from the registries, read when a value is checked.

>>> DataSettings().batch_size, EngineSettings().epochs
(256, 200)
"""
from __future__ import annotations

from dataclasses import dataclass

from selfadapt.config.fields import in_unit_interval, non_negative, positive, setting

# Beyond these no run can mean what it says (a year of epochs; a batch larger than any data set).
MAX_EPOCHS = 100_000
MAX_BATCH = 1 << 24


def _datasets() -> list[str]:
    from selfadapt.data.registry import dataset_names
    return dataset_names()


def _is_dataset(name: str) -> bool:
    from selfadapt.data.registry import is_dataset_name
    return is_dataset_name(name)


def _corruptions() -> list[str]:
    from selfadapt.data.corruption import CORRUPTIONS
    return list(CORRUPTIONS)


def _augmentations() -> list[str]:
    from selfadapt.data.augment import AUGMENTATIONS
    return list(AUGMENTATIONS)


def _models() -> list[str]:
    from selfadapt.models.registry import model_names
    return [*model_names(), "hf:ID_OR_FOLDER"]


def _stems() -> list[str]:
    from selfadapt.models.resnet import STEMS
    return list(STEMS)


def _methods() -> list[str]:
    from selfadapt.objectives.registry import methods
    return sorted(methods())


OPTIMIZERS = ["sgd", "adam", "lars"]


SCHEDULES = ["cosine", "multistep", "constant"]
LOGGERS = ("tensorboard", "mlflow", "wandb", "csv")  # experiment trackers (selfadapt.engine.loggers)


@dataclass
class DataSettings:
    """What the model is trained and tested on, and how the labels or images are corrupted."""

    dataset: str = setting("cifar10", "data set: a name or PREFIX:PATH form below", check=_is_dataset,
                           choices=_datasets)
    data_dir: str | None = setting(None, "where the data set files are (default $SELFADAPT_DATA or ./data)")
    subset: int | None = setting(None, "train on a seeded class-balanced subset of N samples",
                                 check=positive, must="be > 0")
    test_subset: int | None = setting(None, "evaluate on a fixed class-balanced subset of N test samples",
                                      check=positive, must="be > 0")
    val_size: int | None = setting(None, "hold out a seeded class-balanced validation split of N training samples "
                                         "(given labels) for choices that must not see the test set",
                                   check=positive, must="be > 0")
    augment: str = setting("crop-flip", "training augmentation", choices=_augmentations)
    unlabeled: bool = setting(False, "also train on the data set's unlabeled split (STL-10; labels -1), "
                                     "for self-supervised methods")
    skip_unreadable: bool = setting(False, "imagefolder:, csv: and hf: data: leave out images that cannot be read "
                                           "(listed on stderr) instead of stopping")
    image_size: int | None = setting(None, "imagefolder:, csv: and hf: data: decode every image to S x S (shorter "
                                           "side to S, centre crop); default: the median shorter side, capped "
                                           "for the model and device (printed)", check=positive, must="be >= 1")
    cache_dir: str | None = setting(None, "where decoded images (and a frozen backbone's features) are cached "
                                          "(default $SELFADAPT_CACHE, else $XDG_CACHE_HOME/selfadapt or "
                                          "~/.cache/selfadapt)")
    stream: bool = setting(False, "read training batches from the image cache on disk even when the decoded "
                                  "images would fit in memory (automatic when they do not)")
    image_column: str | None = setting(None, "hf: data: the column of images (default: the one of type Image)")
    label_column: str | None = setting(None, "hf: data: the column of labels (default: the ClassLabel one, or "
                                             "'label')")
    batch_size: int = setting(256, "mini-batch size (the global batch under torchrun)",
                              check=lambda v: 0 < v <= MAX_BATCH, must=f"be > 0 (and at most {MAX_BATCH})")
    data_seed: int | None = setting(None, "seed of the subset, data order and augmentation (default: --seed)")
    noise: str = setting("none", "corruption of the training labels or images", choices=_corruptions)
    noise_rate: float = setting(0.0, "fraction of training samples to corrupt", check=in_unit_interval,
                                must="lie in [0, 1]")
    noise_seed: int = setting(0, "seed of the corruption (separate from --seed)")
    noise_variant: str | None = setting(None, "variant of the corruption: the CIFAR-N label set for human noise "
                                              "(aggre, worse, random1..3, noisy; default worse), or CIFAR-100 "
                                              "asymmetric superclass (default) or index-blocks (the literature's)")
    labels_from: str | None = setting(None, "corrected labels laid over the training labels (after any --noise): "
                                            "a review.csv from `selfadapt review`, or apply-review's changes.csv "
                                            "or path,label CSV")


@dataclass
class ModelSettings:
    """The network and its initialisation."""

    model: str = setting("resnet34", "network, or hf:ID_OR_FOLDER for a pretrained Hugging Face vision backbone",
                         check=lambda v: v.startswith("hf:") and v != "hf:ID_OR_FOLDER" or v in _models()[:-1],
                         choices=_models)
    freeze_backbone: bool = setting(False, "hf: models: compute each image's features once (cached) and train only "
                                           "the head on them (find-label-issues: on by default)")
    head: str = setting("linear", "the head on a frozen backbone's features: linear or mlp (--width hidden units)",
                        choices=lambda: ["linear", "mlp"])
    width: int | None = setting(None, "base width of a ResNet/CNN or hidden units of the MLP (model's default)",
                                check=positive, must="be >= 1")
    dropout: float | None = setting(None, "dropout probability (model's default: 0.5 for vgg16-bn, else 0)",
                                    check=lambda p: p is None or 0.0 <= p < 1.0, must="lie in [0, 1)")
    seed: int = setting(0, "seed of the model initialisation")
    stem: str = setting("auto", "ResNet stem: cifar (3x3, full resolution), imagenet (7x7 stride 2 + max-pool) or "
                                "auto (imagenet from 128 px on; printed)", choices=_stems)


@dataclass
class MethodSettings:
    """The training objective and its typed options (see ``selfadapt methods``)."""

    method: str = setting("sat", "training method", choices=_methods)
    options: dict = setting({}, "the method's options, every one resolved (defaults included)")


@dataclass
class EngineSettings:
    """The loop: optimiser, schedule, device, precision, checkpoints."""

    epochs: int = setting(200, "number of epochs (a larger value extends a finished run)",
                          check=lambda v: 0 < v <= MAX_EPOCHS, must=f"be >= 1 (and at most {MAX_EPOCHS})")
    optimizer: str = setting("sgd", "optimiser", choices=lambda: OPTIMIZERS)
    lr: float = setting(0.1, "initial learning rate", check=positive, must="be > 0")
    backbone_lr_scale: float = setting(0.1, "hf: models trained whole: the pretrained backbone's learning rate is "
                                            "--lr times this (the head's is --lr)", check=positive, must="be > 0")
    momentum: float = setting(0.9, "SGD momentum", check=lambda m: 0.0 <= m < 1.0, must="lie in [0, 1)")
    nesterov: bool = setting(False, "Nesterov momentum (SGD)")
    weight_decay: float = setting(5e-4, "L2 weight decay", check=non_negative, must="be >= 0")
    schedule: str = setting("cosine", "learning-rate schedule (per epoch)", choices=lambda: SCHEDULES)
    warmup_epochs: int = setting(0, "linear learning-rate warmup over the first K epochs (cosine then spans the rest)",
                                 check=non_negative, must="be >= 0")
    lars_eta: float = setting(0.02, "LARS trust coefficient eta (--optimizer lars)", check=positive, must="be > 0")
    milestones: list[int] = setting([], "multistep: epochs at which the lr is multiplied by --gamma")
    gamma: float = setting(0.1, "multistep: factor at each milestone", check=positive, must="be > 0")
    device: str = setting("auto", "cpu, cuda, cuda:N or auto")
    amp: bool = setting(True, "bf16 autocast (CUDA only)")
    channels_last: bool = setting(True, "channels_last memory format (CUDA only)")
    compile: bool = setting(False, "torch.compile the model")
    deterministic: bool = setting(True, "deterministic kernels (CUDA; CPU kernels already are)")
    sync_batchnorm: bool = setting(False, "SyncBatchNorm across processes under torchrun (CUDA)")
    progress: bool = setting(True, "a progress bar on a terminal, one line per epoch otherwise")
    checkpoint_every: int = setting(1, "write the checkpoint every K epochs (and after the last)",
                                    check=positive, must="be >= 1")
    eval_batch_size: int = setting(1024, "batch size of the evaluators", check=lambda v: 0 < v <= MAX_BATCH,
                                   must=f"be > 0 (and at most {MAX_BATCH})")
    dist_timeout: float = setting(300.0, "seconds a process waits for the others under torchrun before the job "
                                         "stops with a message naming the silent rank", check=positive, must="be > 0")
    profile: bool = setting(False, "time each phase of every epoch (data, forward+loss, target update, backward, "
                                   "optimizer, evaluation, checkpoint) into OUT/profile.json")
    logger: list[str] = setting([], "also stream per-epoch metrics, the configuration and plots to these trackers, "
                                    "comma-separated: tensorboard, mlflow, wandb (offline unless WANDB_MODE is set), "
                                    "csv (pip install 'selfadapt[loggers]')",
                                check=lambda names: all(n in LOGGERS for n in names),
                                must="be a comma-separated list of " + ", ".join(LOGGERS))


@dataclass
class EvalSettings:
    """What is measured during and after training (see ``selfadapt evaluators``)."""

    evaluators: list[str] | None = setting(None, "evaluators to run (default: the method's, plus memorisation "
                                                 "when label noise is injected)")
    options: dict = setting({}, "the evaluators' options, every one resolved (defaults included)")


SECTIONS: dict[str, type] = {"data": DataSettings, "model": ModelSettings, "method": MethodSettings,
                             "engine": EngineSettings, "eval": EvalSettings}
