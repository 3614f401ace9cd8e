"""Pretrained Hugging Face vision backbones as selfadapt models: ``--model hf:ID_OR_FOLDER``.

``build_hf_model("hf:facebook/dinov2-small", num_classes=10)`` loads a transformers vision model
(ViT, DINOv2, ConvNeXt, ResNet, Swin, or the vision tower of CLIP and SigLIP) with its image
processor, from a folder written by ``save_pretrained`` or from the hub (the local cache first;
the hub only when the model is not cached and the hub may be reached). Like every selfadapt model
it takes images in [0, 1]: the processor's resize, centre crop and normalisation happen inside the
model (:class:`ProcessorInput`, batched on the model's device), and a linear head with the outputs
the method asks for sits on the pooled features (:class:`HFBackbone`).

Pooled features: the model's ``pooler_output`` (DINOv2 and CLIP: the normalised class token; SigLIP:
its attention-pooling head; ConvNeXt, ResNet, Swin: global average pooling), except ViT and DeiT,
whose pooler is a dense + tanh layer that their checkpoints do not train for probing: there the
class token of the last layer, as transformers' own ``ViTForImageClassification`` reads it.

Needs the extra ``hf`` (``pip install 'selfadapt[hf]'``); every failure to load is one
:class:`SelfAdaptError` line saying what to do.

>>> is_hf_model("hf:facebook/dinov2-small"), is_hf_model("resnet18")
(True, False)
"""
from __future__ import annotations

import contextlib
import os
import textwrap
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from selfadapt import hub
from selfadapt.errors import SelfAdaptError
from selfadapt.models.classifier import Classifier

PREFIX = "hf:"
# Dual-tower checkpoints whose image half is the backbone: model_type -> the transformers class of the tower.
VISION_TOWERS = {"clip": "CLIPVisionModel", "siglip": "SiglipVisionModel", "siglip2": "Siglip2VisionModel"}
# Models whose pooler is an untrained dense + tanh layer: they are loaded without it, and pool the class token.
CLASS_TOKEN_MODELS = frozenset({"vit", "deit"})
# PIL resampling codes as image processors store them -> torch interpolation (antialiased, as PIL resizes).
_RESAMPLE = {0: "nearest", 2: "bilinear", 3: "bicubic"}
FAMILIES = "ViT, DINOv2, ConvNeXt, ResNet, Swin, CLIP, SigLIP"


def is_hf_model(name: str) -> bool:
    """Whether the model name asks for a Hugging Face backbone (``hf:ID_OR_FOLDER``)."""
    return isinstance(name, str) and name.startswith(PREFIX)


def hf_source(name: str) -> str:
    """The hub id or folder of ``hf:ID_OR_FOLDER`` (an empty one is an error).

    >>> hf_source("hf:facebook/dinov2-small")
    'facebook/dinov2-small'
    """
    source = name[len(PREFIX):] if is_hf_model(name) else name
    if not source.strip():
        raise SelfAdaptError("--model hf: needs a hub id or a folder, e.g. hf:facebook/dinov2-small or hf:./my-model")
    return source


# ------------------------------------------------------------------------------------------- inputs


@dataclass(frozen=True)
class Geometry:
    """What an image processor does to an image, as numbers: resize (``("size", (h, w))``,
    ``("shortest_edge", s, longest_edge or 0)`` or ``("convnext", s, crop_pct)``), an optional
    centre ``crop`` (h, w), the interpolation, and ``scale`` (255 x the processor's rescale
    factor: what a [0, 1] pixel is multiplied by), ``mean`` and ``std`` (on that scale)."""

    resize: tuple | None
    crop: tuple[int, int] | None
    mode: str
    scale: float
    mean: tuple[float, ...]
    std: tuple[float, ...]

    @classmethod
    def of(cls, processor) -> Geometry:
        """The geometry of a transformers image processor (one it cannot express is an error)."""
        size = _size_dict(getattr(processor, "size", None)) if getattr(processor, "do_resize", False) else None
        resize = None
        if size is not None:
            if getattr(processor, "crop_pct", None) is not None and size.get("shortest_edge"):
                resize = ("convnext", int(size["shortest_edge"]), float(processor.crop_pct))
            elif size.get("height") and size.get("width"):
                resize = ("size", (int(size["height"]), int(size["width"])))
            elif size.get("shortest_edge"):
                resize = ("shortest_edge", int(size["shortest_edge"]), int(size.get("longest_edge") or 0))
            else:
                raise SelfAdaptError(f"image processor {type(processor).__name__} resizes to {size}, which selfadapt "
                                     "cannot reproduce (it knows height/width and shortest_edge)")
        crop = None
        if getattr(processor, "do_center_crop", False):
            crop_size = _size_dict(processor.crop_size)
            crop = (int(crop_size["height"]), int(crop_size["width"]))
        resample = int(getattr(processor, "resample", 2) or 0)
        scale = 255.0 * float(processor.rescale_factor) if getattr(processor, "do_rescale", True) else 255.0
        normalize = getattr(processor, "do_normalize", True)
        mean = tuple(float(v) for v in processor.image_mean) if normalize else (0.0, 0.0, 0.0)
        std = tuple(float(v) for v in processor.image_std) if normalize else (1.0, 1.0, 1.0)
        return cls(resize, crop, _RESAMPLE.get(resample, "bicubic"), scale, mean, std)

    def resized(self, height: int, width: int) -> tuple[int, int]:
        """The size an image of ``height x width`` is resized to (before any crop).

        >>> Geometry(("shortest_edge", 256, 0), (224, 224), "bicubic", 1.0, (0,), (1,)).resized(32, 64)
        (256, 512)
        """
        if self.resize is None:
            return height, width
        kind = self.resize[0]
        if kind == "size":
            return self.resize[1]
        if kind == "convnext" and self.resize[1] >= 384:
            return self.resize[1], self.resize[1]
        edge = int(self.resize[1] / self.resize[2]) if kind == "convnext" else self.resize[1]
        short, long = sorted((height, width))
        new_short, new_long = edge, int(edge * long / short)
        cap = self.resize[2] if kind == "shortest_edge" else 0
        if cap and new_long > cap:
            new_short, new_long = int(cap * new_short / new_long), cap
        return (new_short, new_long) if height <= width else (new_long, new_short)

    def output(self, height: int, width: int) -> tuple[int, int]:
        """The size the model sees for an input of ``height x width``."""
        if self.crop is not None:
            return self.crop
        if self.resize is not None and self.resize[0] == "convnext" and self.resize[1] < 384:
            return self.resize[1], self.resize[1]
        return self.resized(height, width)


def _size_dict(size) -> dict:
    if size is None:
        return {}
    if isinstance(size, int):
        return {"height": size, "width": size}
    if isinstance(size, dict):
        return dict(size)
    return {k: getattr(size, k, None) for k in ("height", "width", "shortest_edge", "longest_edge")}


class ProcessorInput(nn.Module):
    """[0, 1] images (N x C x H x W, any size) -> the pixel values the transformer expects: grey
    repeated to RGB, resized, centre-cropped and normalised as the image processor does, batched.

    >>> g = Geometry(("size", (4, 4)), None, "bilinear", 255 / 255, (0.5, 0.5, 0.5), (0.5, 0.5, 0.5))
    >>> ProcessorInput(g)(torch.ones(2, 1, 8, 8)).shape
    torch.Size([2, 3, 4, 4])
    """

    def __init__(self, geometry: Geometry, channels: int = 3):
        super().__init__()
        self.geometry, self.channels = geometry, channels
        g = geometry
        self.register_buffer("mean", torch.tensor(g.mean, dtype=torch.float32).view(1, -1, 1, 1) / g.scale)
        self.register_buffer("std", torch.tensor(g.std, dtype=torch.float32).view(1, -1, 1, 1) / g.scale)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[1] == 1 and self.channels == 3:
            x = x.expand(-1, 3, -1, -1)
        g, (height, width) = self.geometry, x.shape[-2:]
        size = g.resized(height, width)
        if size != (height, width):
            x = F.interpolate(x, size=size, mode=g.mode, antialias=g.mode != "nearest",
                              align_corners=False if g.mode != "nearest" else None)
        crop = g.output(height, width)
        if crop != size:
            top, left = (size[0] - crop[0]) // 2, (size[1] - crop[1]) // 2
            x = x[..., top:top + crop[0], left:left + crop[1]]
        return (x - self.mean) / self.std


# ------------------------------------------------------------------------------------------- model


class HFBackbone(nn.Module):
    """A transformers vision model -> N x ``feature_dim`` pooled features (module docstring)."""

    def __init__(self, model: nn.Module, class_token: bool, feature_dim: int):
        super().__init__()
        self.model, self.class_token, self.feature_dim = model, class_token, feature_dim

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        out = self.model(pixel_values=pixel_values)
        pooled = None if self.class_token else getattr(out, "pooler_output", None)
        if pooled is not None:
            return pooled.flatten(1)
        hidden = out.last_hidden_state
        return hidden[:, 0] if hidden.dim() == 3 else hidden.mean(dim=(2, 3))


class HFClassifier(Classifier):
    """:class:`~selfadapt.models.registry.Classifier` on a pretrained backbone; ``source`` is the
    hub id or folder. :meth:`pretrained_parameters` are the backbone's (``--backbone-lr-scale``)."""

    def __init__(self, normalize: ProcessorInput, backbone: HFBackbone, num_classes: int, source: str):
        super().__init__(normalize, backbone, num_classes)
        self.source = source

    def pretrained_parameters(self) -> list[nn.Parameter]:
        return list(self.backbone.parameters())


@dataclass
class LoadedBackbone:
    """A loaded backbone: the input module, the pooled-feature module, where it came from."""

    input: ProcessorInput
    backbone: HFBackbone
    source: str
    model_type: str

    def extractor(self) -> nn.Sequential:
        """[0, 1] images -> pooled features: what ``selfadapt embed`` and ``--freeze-backbone`` compute."""
        return nn.Sequential(self.input, self.backbone)


def build_hf_model(name: str, *, num_classes: int, in_channels: int = 3) -> HFClassifier:
    """``hf:ID_OR_FOLDER`` with a fresh linear head of ``num_classes`` outputs, for [0, 1] images."""
    if in_channels not in (1, 3):
        raise SelfAdaptError(f"{name} takes RGB or grey images; this data has {in_channels} channels "
                             "(feature vectors? they need --model linear or mlp)")
    loaded = load_backbone(name)
    return HFClassifier(loaded.input, loaded.backbone, int(num_classes), loaded.source)


def load_backbone(name: str) -> LoadedBackbone:
    """The backbone and its processor's input module for ``hf:ID_OR_FOLDER`` (eval mode, float32)."""
    source = hf_source(name)
    transformers = _transformers()
    with _quiet(transformers):
        where, folder = _locate(source)
        config = _load(transformers.AutoConfig, source, where, folder, "the model's config.json")
        model_class = _vision_class(transformers, config, source)
        processor = _load(transformers.AutoImageProcessor, source, where, folder, "its image processor "
                          "(preprocessor_config.json)")
        extra = {"add_pooling_layer": False} if config.model_type in CLASS_TOKEN_MODELS else {}
        model = _load(model_class, source, where, folder, "its weights", dtype=torch.float32, **extra)
    geometry = Geometry.of(processor)
    channels = int(getattr(getattr(model, "config", config), "num_channels", 3) or 3)
    model.eval()
    class_token = config.model_type in CLASS_TOKEN_MODELS
    return LoadedBackbone(ProcessorInput(geometry, channels), HFBackbone(model, class_token, _pooled_width(model)),
                          source, config.model_type)


def _pooled_width(model: nn.Module) -> int:
    """The width of the pooled features: the last stage's (convolutional models) or the hidden size;
    one blank image through the model where the config says neither."""
    config = model.config
    sizes = getattr(config, "hidden_sizes", None)
    if sizes:
        return int(sizes[-1])
    if getattr(config, "hidden_size", None):
        return int(config.hidden_size)
    side = int(getattr(config, "image_size", 224) or 224)
    with torch.no_grad():
        out = model(pixel_values=torch.zeros(1, int(getattr(config, "num_channels", 3)), side, side))
    return int(out.last_hidden_state.shape[-1 if out.last_hidden_state.dim() == 3 else 1])


def _transformers():
    try:
        import transformers
    except ImportError:
        raise SelfAdaptError("--model hf:... needs the transformers package: pip install 'selfadapt[hf]'") from None
    return transformers


@contextlib.contextmanager
def _quiet(transformers):
    """transformers' info lines, progress bars and its torchvision fallback notice, and the hub
    client's retry warnings (a failure is said in one line instead), silenced meanwhile."""
    logging = transformers.utils.logging
    verbosity = logging.get_verbosity()
    logging.set_verbosity_error()
    logging.disable_progress_bar()
    try:
        with hub.quiet():
            yield
    finally:
        logging.set_verbosity(verbosity)
        logging.enable_progress_bar()


def _locate(source: str) -> tuple[str, bool]:
    """``(what from_pretrained gets, whether it is a folder)``: a folder or a hub id (cached or
    not). A missing folder or a malformed id is an error here."""
    path = Path(source).expanduser()
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise SelfAdaptError(f"folder {path} holds no config.json: save a model there with "
                                 "model.save_pretrained(FOLDER) and its processor with processor.save_pretrained(FOLDER)")
        return str(path), True
    if source.startswith((".", "/", "~")) or os.sep + os.sep in source or path.exists():
        raise SelfAdaptError(f"hf:{source}: no such folder (a hub id looks like facebook/dinov2-small)")
    from huggingface_hub.utils import HFValidationError, validate_repo_id

    try:
        validate_repo_id(source)
    except HFValidationError:
        raise SelfAdaptError(f"hf:{source} is neither a folder nor a hub model id (like facebook/dinov2-small)") from None
    return source, False


def _offline() -> bool:
    from huggingface_hub import constants

    return bool(constants.HF_HUB_OFFLINE) or os.environ.get("TRANSFORMERS_OFFLINE", "").lower() in ("1", "true", "yes")


def how_to_get(source: str) -> str:
    """What to run to make hub model ``source`` available offline."""
    return (f"on a machine with internet run `hf download {source}` (huggingface-cli download with older "
            "huggingface_hub) and copy its cache (~/.cache/huggingface, or set HF_HOME), or save it with "
            f"AutoModel.from_pretrained('{source}').save_pretrained(FOLDER) (and its AutoImageProcessor) and pass "
            "--model hf:FOLDER")


def _load(cls, source: str, where: str, folder: bool, what: str, **kwargs):
    """``cls.from_pretrained`` from the folder or the local cache first, else from the hub (when it
    may be reached); failures as one line."""
    try:
        return cls.from_pretrained(where, local_files_only=True, **kwargs)
    except (OSError, ValueError) as e:
        if folder:
            raise SelfAdaptError(f"hf:{source}: cannot load {what}: {_first_line(e)}") from None
    if _offline():
        raise SelfAdaptError(f"hf:{source} is not in the Hugging Face cache and the hub is off (HF_HUB_OFFLINE): "
                             + how_to_get(source))
    why = hub.unreachable()
    if why:  # said at once, not after the hub client's retries (about 25 s)
        raise SelfAdaptError(f"hf:{source} ({what}) is not in the Hugging Face cache and the hub cannot be reached "
                             f"({why}): " + how_to_get(source))
    try:
        return cls.from_pretrained(where, **kwargs)
    except (OSError, ValueError) as e:
        raise SelfAdaptError(_load_failure(e, source, what)) from None


def _load_failure(error: Exception, source: str, what: str) -> str:
    """One line for a failed ``from_pretrained``: the hub's own answer (transformers raises it as
    the cause of an ``OSError``) where there is one."""
    from huggingface_hub.errors import GatedRepoError, RepositoryNotFoundError

    cause = error
    while cause is not None and not isinstance(cause, (GatedRepoError, RepositoryNotFoundError)):
        cause = cause.__cause__ or cause.__context__
    if isinstance(cause, GatedRepoError):
        return (f"hf:{source} is gated on the hub: accept its licence there and log in (`hf auth login`), or "
                "download it elsewhere: " + how_to_get(source))
    if isinstance(cause, RepositoryNotFoundError):
        return f"hf:{source}: no such model on the Hugging Face hub (check the id; a private one needs `hf auth login`)"
    return (f"hf:{source} ({what}) is not in the Hugging Face cache and the hub cannot be reached ({textwrap.shorten(_first_line(error), 90, placeholder=' ...')}): "
            + how_to_get(source))


def _first_line(error: Exception) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


def _vision_class(transformers, config, source: str):
    """The transformers class whose forward takes ``pixel_values`` for ``config`` (a vision tower
    for CLIP and SigLIP checkpoints); any other model is an error."""
    tower = VISION_TOWERS.get(config.model_type)
    if tower is not None:
        return getattr(transformers, tower)
    mapping = transformers.MODEL_MAPPING
    model_class = mapping[type(config)] if type(config) in mapping else None
    if model_class is None or getattr(model_class, "main_input_name", None) != "pixel_values":
        takes = getattr(model_class, "main_input_name", "no images")
        raise SelfAdaptError(f"hf:{source} is a {config.model_type} model (its input is {takes}), not an image "
                             f"model: pick a vision backbone ({FAMILIES})")
    return transformers.AutoModel
