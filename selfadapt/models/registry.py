"""Models by name: ``build_model("resnet34", num_classes=10)`` returns a :class:`Classifier`.

Every model takes images in [0, 1] and normalises them itself, so training, evaluation and
adversarial attacks all work in the same [0, 1] pixel space.

>>> import torch
>>> model = build_model("cnn", num_classes=10, in_channels=1, image_size=28, mean=[0.286], std=[0.353])
>>> model(torch.rand(4, 1, 28, 28)).shape, model.features(torch.rand(4, 1, 28, 28)).shape
(torch.Size([4, 10]), torch.Size([4, 576]))
"""
from __future__ import annotations

from dataclasses import dataclass
from numbers import Integral
from typing import Callable, Sequence

from torch import nn

from selfadapt.errors import SelfAdaptError
from selfadapt.models.classifier import Classifier, Normalize
from selfadapt.models.preact_resnet import PreActResNet
from selfadapt.models.resnet import STEMS, ResNet, resolve_stem
from selfadapt.models.small import CNN, MLP
from selfadapt.models.vgg import VGG
from selfadapt.models.wide_resnet import WideResNet


@dataclass(frozen=True)
class ModelSpec:
    """How to build one model, with its defaults.

    >>> MODELS["vgg16-bn"].dropout, MODELS["resnet18"].dropout
    (0.5, None)
    """

    build: Callable[[int, int, int, float], nn.Module]  # (in_channels, image_size, width, dropout) -> backbone
    width: int | None     # default `width`: base channels, widen factor or hidden units (None: no width)
    dropout: float | None  # default `dropout`; None: the model has none (it accepts only None or 0)
    about: str            # one line for `--help` and error messages
    stem: bool = False    # takes a stem ("cifar" or "imagenet"; build(..., stem=...))


MODELS: dict[str, ModelSpec] = {
    "resnet18": ModelSpec(lambda c, s, w, p, stem: ResNet((2, 2, 2, 2), in_channels=c, width=w, stem=stem), 64,
                          None, "ResNet-18, base width (64), CIFAR or ImageNet stem", stem=True),
    "resnet34": ModelSpec(lambda c, s, w, p, stem: ResNet((3, 4, 6, 3), in_channels=c, width=w, stem=stem), 64,
                          None, "ResNet-34, base width (64), CIFAR or ImageNet stem", stem=True),
    "resnet50": ModelSpec(lambda c, s, w, p, stem: ResNet((3, 4, 6, 3), in_channels=c, width=w, block="bottleneck",
                                                         stem=stem), 64, None,
                          "ResNet-50 (bottleneck), base width (64), CIFAR or ImageNet stem", stem=True),
    "preact-resnet18": ModelSpec(lambda c, s, w, p: PreActResNet((2, 2, 2, 2), in_channels=c, width=w), 64, None,
                                 "pre-activation ResNet-18, base width (64)"),
    "wrn-28-10": ModelSpec(lambda c, s, w, p: WideResNet(28, w, in_channels=c, dropout=p), 10, 0.0,
                           "Wide ResNet 28, widen factor (10), dropout in blocks"),
    "wrn-34-10": ModelSpec(lambda c, s, w, p: WideResNet(34, w, in_channels=c, dropout=p), 10, 0.0,
                           "Wide ResNet 34 (TRADES), widen factor (10), dropout in blocks"),
    "vgg16-bn": ModelSpec(lambda c, s, w, p: VGG(in_channels=c, image_size=s, width=w, dropout=p), 64, 0.5,
                          "VGG-16 with batch norm, base width (64), dropout (0.5) as the Deep Gamblers/SAT network"),
    "cnn": ModelSpec(lambda c, s, w, p: CNN(in_channels=c, image_size=s, width=w, dropout=p), 16, 0.0,
                     "small 3-layer CNN for CPU runs, base width (16)"),
    "mlp": ModelSpec(lambda c, s, w, p: MLP(in_channels=c, image_size=s, hidden=w, dropout=p), 512, 0.0,
                     "2-hidden-layer MLP, hidden units (512)"),
    "linear": ModelSpec(lambda c, s, w, p: MLP(in_channels=c, image_size=s, depth=0), None, None,
                        "linear classifier on the (normalised) inputs, e.g. embeddings; no width"),
}


def model_names() -> list[str]:
    """The names :func:`build_model` accepts, in registry order."""
    return list(MODELS)


def has_stem(name: str) -> bool:
    """Whether model ``name`` takes a stem (``--stem``: the ResNets).

    >>> has_stem("resnet50"), has_stem("cnn")
    (True, False)
    """
    return name in MODELS and MODELS[name].stem


def model_width(name: str, width: int | None = None) -> int | None:
    """The width model ``name`` is built with: ``width``, or the model's default (``None``: a model
    without a width, which refuses one).

    >>> model_width("resnet18"), model_width("mlp", 32), model_width("linear")
    (64, 32, None)
    """
    if name.startswith("hf:"):  # a pretrained backbone: its width is its own; the frozen MLP head's is --width
        return width
    if name not in MODELS:
        raise SelfAdaptError(f"unknown model {name!r}; choose from {', '.join(MODELS)}")
    if MODELS[name].width is None:
        if width is not None:
            raise SelfAdaptError(f"model {name} has no width; drop --width (or the width axis), or pick a model "
                                 f"with one: {', '.join(n for n, spec in MODELS.items() if spec.width is not None)}")
        return None
    return MODELS[name].width if width is None else width


def build_model(name: str, *, num_classes: int, in_channels: int = 3, image_size: int = 32,
                mean: Sequence[float] | None = None, std: Sequence[float] | None = None,
                width: int | None = None, dropout: float | None = None, stem: str = "auto") -> Classifier:
    """A freshly initialised :class:`Classifier` called ``name`` for images in [0, 1].

    ``mean``/``std`` (default 0.5 per channel) normalise inside the model; ``width`` and ``dropout``
    default per model (see :data:`MODELS`: dropout 0.5 for ``vgg16-bn``, the reference network, 0
    elsewhere); ``dropout=0`` turns it off; ``stem`` (ResNets: ``cifar``, ``imagenet`` or ``auto``,
    by image size, :func:`~selfadapt.models.resnet.resolve_stem`). Bad names or arguments raise
    :class:`SelfAdaptError`.

    >>> build_model("vgg16-bn", num_classes=10, width=8).backbone.features[-1].p
    0.5

    ``hf:ID_OR_FOLDER`` is a pretrained Hugging Face backbone (:mod:`selfadapt.models.hf`).
    """
    if name.startswith("hf:"):
        from selfadapt.models.hf import build_hf_model
        return build_hf_model(name, num_classes=num_classes, in_channels=in_channels)
    if name not in MODELS:
        raise SelfAdaptError(f"unknown model {name!r}; choose from {', '.join(MODELS)}")
    spec = MODELS[name]
    width = model_width(name, width)
    for arg, value in (("num_classes", num_classes), ("in_channels", in_channels), ("image_size", image_size),
                       ("width", 1 if width is None else width)):
        if not isinstance(value, Integral) or isinstance(value, bool) or value < 1:
            raise SelfAdaptError(f"{arg} must be a positive integer, got {value!r}")
    mean = [0.5] * in_channels if mean is None else list(mean)
    std = [0.5] * in_channels if std is None else list(std)
    if len(mean) != in_channels or len(std) != in_channels:
        raise SelfAdaptError(f"mean and std need one value per channel ({in_channels}), got {len(mean)} and {len(std)}")
    if any(s <= 0 for s in std):
        raise SelfAdaptError(f"std must be positive, got {std}")
    dropout = float(spec.dropout or 0.0) if dropout is None else float(dropout)
    if not 0.0 <= dropout < 1.0:
        raise SelfAdaptError(f"dropout must lie in [0, 1), got {dropout}")
    if dropout and spec.dropout is None:
        with_dropout = ", ".join(n for n, s in MODELS.items() if s.dropout is not None)
        raise SelfAdaptError(f"model {name!r} has no dropout option; models with dropout: {with_dropout}")
    if stem not in STEMS:
        raise SelfAdaptError(f"unknown stem {stem!r}; choose from {', '.join(STEMS)}")
    args = (int(in_channels), int(image_size), None if width is None else int(width), dropout)
    backbone = spec.build(*args, stem=resolve_stem(stem, int(image_size))) if spec.stem else spec.build(*args)
    return Classifier(Normalize(mean, std), backbone, int(num_classes))
