"""Every setting of a run, declared once: its type, default, one-line help and allowed values.

A run's configuration is a :class:`RunConfig` of five sections (data, model, method, engine,
evaluation). Setting names are unique across sections, so the command line (``--noise-rate``),
presets and grid files (``noise_rate = 0.4``) all use one flat namespace derived from these
declarations; ``config.json`` stores the nested form. A method's or evaluator's own options are
typed dataclasses declared next to it with :func:`setting` as well, and join the same namespace
(``--sat-momentum``, ``--memorisation-every``).

>>> config = RunConfig.from_flat({"dataset": "digits", "model": "mlp", "epochs": 5, "method": "ce"})
>>> config.data.dataset, config.engine.epochs, config.flat()["lr"]
('digits', 5, 0.1)
"""
from __future__ import annotations

import ast
import dataclasses
import difflib
import json
import math
from dataclasses import dataclass, field
from typing import Any, Callable

from selfadapt.errors import SelfAdaptError

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib


def load_toml(path, what: str) -> dict:
    """A TOML file (grid, preset) as a dict; a missing or invalid file is one :class:`SelfAdaptError`."""
    from pathlib import Path

    path = Path(path)
    if not path.is_file():
        raise SelfAdaptError(f"{what} {path} does not exist")
    try:
        return tomllib.loads(path.read_text())
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
        raise SelfAdaptError(f"{what} {path} is not valid TOML: {e}") from None


def setting(default: Any, help: str, *, check: Callable[[Any], bool] | None = None, must: str = "",
            choices: Callable[[], list[str]] | None = None) -> Any:
    """Declare one setting: ``default``, a one-line ``help``, and optionally a ``check`` with what
    a value ``must`` satisfy, or the ``choices`` a value must be one of (a function, read lazily).

    >>> @dataclass
    ... class Options:
    ...     gce_q: float = setting(0.7, "GCE exponent q", check=lambda q: 0 < q <= 1, must="lie in (0, 1]")
    >>> parse_options(Options, {"gce_q": "0.5"}, "gce").gce_q
    0.5
    """
    meta = {"help": help, "check": check, "must": must, "choices": choices}
    if isinstance(default, (list, dict)):
        return field(default_factory=lambda: type(default)(default), metadata=meta)
    return field(default=default, metadata=meta)


def in_unit_interval(value) -> bool:
    return value is None or 0.0 <= value <= 1.0


def positive(value) -> bool:
    return value is None or value > 0


def non_negative(value) -> bool:
    return value is None or value >= 0


# ---------------------------------------------------------------------------------------------
# the sections of a run


def _datasets() -> list[str]:
    from selfadapt.data.datasets import DATASETS
    return [*DATASETS, "imagefolder:PATH", "csv:FILE", "features:FILE.npz"]


def _corruptions() -> list[str]:
    from selfadapt.data.corruption import CORRUPTIONS
    return list(CORRUPTIONS)


def _augmentations() -> list[str]:
    from selfadapt.data.augment import AUGMENTATIONS
    return list(AUGMENTATIONS)


def _models() -> list[str]:
    from selfadapt.models import model_names
    return [*model_names(), "hf:ID_OR_FOLDER"]


def _methods() -> list[str]:
    from selfadapt.objectives.registry import METHODS
    return sorted(METHODS)


def _evaluators() -> list[str]:
    from selfadapt.evaluators import EVALUATORS
    return sorted(EVALUATORS)


OPTIMIZERS = ["sgd", "adam", "lars"]
SCHEDULES = ["cosine", "multistep", "constant"]


@dataclass
class DataSettings:
    """What the model is trained and tested on, and how the labels or images are corrupted."""

    dataset: str = setting("cifar10", "data set: a name below, imagefolder:PATH, csv:FILE (columns path,label) or "
                                      "features:FILE.npz (arrays X, y)",
                           check=lambda v: v.lower().startswith(("imagefolder:", "csv:", "features:"))
                           or v.lower().replace("_", "-")
                           in _datasets(), choices=_datasets)
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
    skip_unreadable: bool = setting(False, "imagefolder: and csv: data: leave out images that cannot be read "
                                           "(listed on stderr) instead of stopping")
    batch_size: int = setting(256, "mini-batch size (the global batch under torchrun)", check=positive, must="be > 0")
    data_seed: int | None = setting(None, "seed of the subset, data order and augmentation (default: --seed)")
    noise: str = setting("none", "corruption of the training labels or images", choices=_corruptions)
    noise_rate: float = setting(0.0, "fraction of training samples to corrupt", check=in_unit_interval,
                                must="lie in [0, 1]")
    noise_seed: int = setting(0, "seed of the corruption (separate from --seed)")
    noise_variant: str | None = setting(None, "variant of the corruption: the CIFAR-N label set for human noise "
                                              "(aggre, worse, random1..3, noisy; default worse), or CIFAR-100 "
                                              "asymmetric superclass (default) or index-blocks (the literature's)")


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


@dataclass
class MethodSettings:
    """The training objective and its typed options (see ``selfadapt methods``)."""

    method: str = setting("sat", "training method", choices=_methods)
    options: dict = setting({}, "the method's options, every one resolved (defaults included)")


@dataclass
class EngineSettings:
    """The loop: optimiser, schedule, device, precision, checkpoints."""

    epochs: int = setting(200, "number of epochs (a larger value extends a finished run)",
                          check=positive, must="be >= 1")
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
    eval_batch_size: int = setting(1024, "batch size of the evaluators", check=positive, must="be > 0")
    profile: bool = setting(False, "time each phase of every epoch (data, forward+loss, target update, backward, "
                                   "optimizer, evaluation, checkpoint) into OUT/profile.json")


@dataclass
class EvalSettings:
    """What is measured during and after training (see ``selfadapt evaluators``)."""

    evaluators: list[str] | None = setting(None, "evaluators to run (default: the method's, plus memorisation "
                                                 "when label noise is injected)")
    options: dict = setting({}, "the evaluators' options, every one resolved (defaults included)")


SECTIONS: dict[str, type] = {"data": DataSettings, "model": ModelSettings, "method": MethodSettings,
                             "engine": EngineSettings, "eval": EvalSettings}
# Fields holding the typed options of the chosen components, filled from the flat namespace.
_OPTION_TABLES = {("method", "options"), ("eval", "options")}
# Settings that may differ between invocations of one run: more epochs extend it, and where the
# data lives, the device, the display and profiling do not change what is computed.
RESUMABLE = frozenset({"epochs", "device", "progress", "data_dir", "profile"})


def declared_settings() -> dict[str, tuple[str, dataclasses.Field]]:
    """Flat name -> (section, field) for every plain setting (not the option tables)."""
    out = {}
    for section, cls in SECTIONS.items():
        for f in dataclasses.fields(cls):
            if (section, f.name) not in _OPTION_TABLES:
                out[f.name] = (section, f)
    return out


@dataclass
class RunConfig:
    """Everything that decides a run. Defaults are the paper's CIFAR protocol (SPEC section 3).

    Build one from flat names with :meth:`from_flat`; ``config.json`` holds :meth:`to_dict`.
    """

    data: DataSettings = field(default_factory=DataSettings)
    model: ModelSettings = field(default_factory=ModelSettings)
    method: MethodSettings = field(default_factory=MethodSettings)
    engine: EngineSettings = field(default_factory=EngineSettings)
    eval: EvalSettings = field(default_factory=EvalSettings)

    @classmethod
    def from_flat(cls, values: dict, *, where: str = "") -> RunConfig:
        """A checked config from flat names: plain settings, plus the options of the chosen
        method and evaluators. Anything unknown, mistyped or out of range is one
        :class:`SelfAdaptError` (with ``where`` in front)."""
        prefix = f"{where}: " if where else ""
        plain = declared_settings()
        sections = {name: {} for name in SECTIONS}
        rest = {}
        for key, value in values.items():
            if key in plain:
                section, f = plain[key]
                sections[section][key] = coerce(value, f, prefix)
            else:
                rest[key] = value
        config = cls(**{name: SECTIONS[name](**given) for name, given in sections.items()})
        config._resolve_components(rest, prefix)
        config.check(prefix)
        return config

    def _resolve_components(self, given: dict, prefix: str) -> None:
        from selfadapt.evaluators import evaluator_names_for, resolve_evaluator_options
        from selfadapt.objectives.registry import get_method

        method = get_method(self.method.method)
        own = {k: v for k, v in given.items() if k in method.option_names}
        evaluators = self.eval.evaluators if self.eval.evaluators is not None else \
            evaluator_names_for(method, self.data.noise)
        eval_given = {k: v for k, v in given.items() if k not in own}
        self.method.options = dataclasses.asdict(parse_options(method.options, own, f"{prefix}method {method.name}"))
        self.eval.evaluators = list(evaluators)
        self.eval.options = resolve_evaluator_options(evaluators, eval_given, prefix)
        leftover = sorted(set(given) - set(own) - set(self.eval.options))
        if leftover:
            key = leftover[0]
            owner = option_owner(key)
            if owner:
                raise SelfAdaptError(f"{prefix}{key} is an option of {owner}, not of method {method.name!r} "
                                     f"or its evaluators ({', '.join(evaluators)})")
            raise SelfAdaptError(f"{prefix}unknown setting {key!r}{_did_you_mean(key, all_names())}; "
                                 "`selfadapt train --help` lists them")

    def check(self, prefix: str = "") -> None:
        """Rules that tie settings together (each value was checked on its own already)."""
        data, engine = self.data, self.engine
        if data.noise == "none" and data.noise_rate:
            raise SelfAdaptError(f"{prefix}--noise-rate {data.noise_rate} given without --noise: "
                                 "say which corruption (e.g. --noise symmetric)")
        if data.noise not in ("none", "human") and not data.noise_rate:
            raise SelfAdaptError(f"{prefix}--noise {data.noise} needs --noise-rate > 0")
        if data.noise == "human" and data.noise_rate:
            raise SelfAdaptError(f"{prefix}human noise takes --noise-variant (a CIFAR-N label set), not --noise-rate")
        if engine.warmup_epochs >= engine.epochs:
            raise SelfAdaptError(f"{prefix}--warmup-epochs {engine.warmup_epochs} leaves no epoch of the schedule "
                                 f"in a run of {engine.epochs} epochs")
        from selfadapt.models import model_width
        try:
            model_width(self.model.model, self.model.width)
        except SelfAdaptError as e:
            raise SelfAdaptError(f"{prefix}{e}") from None
        if engine.schedule == "multistep" and not engine.milestones:
            raise SelfAdaptError(f"{prefix}--schedule multistep needs --milestones (e.g. 75,90)")
        from selfadapt.frozen_backbone import check_backbone_settings
        check_backbone_settings(self, prefix)
        from selfadapt.evaluators import get_evaluator
        if data.dataset.lower().startswith("features:") and data.augment != "none":
            raise SelfAdaptError(f"{prefix}feature vectors take no image augmentation: add --augment none")
        from selfadapt.objectives.registry import get_method
        method = get_method(self.method.method)
        if data.unlabeled and method.uses_labels:
            raise SelfAdaptError(f"{prefix}--unlabeled adds images without labels, which method {method.name!r} "
                                 "cannot train on: use a self-supervised method (`selfadapt methods`)")
        method.check(self, prefix)
        for name in self.eval.evaluators or []:
            get_evaluator(name).check(self, prefix)

    @property
    def data_seed(self) -> int:
        """The data seed, defaulting to the initialisation seed."""
        return self.model.seed if self.data.data_seed is None else self.data.data_seed

    def to_dict(self) -> dict:
        return json.loads(json.dumps(dataclasses.asdict(self)))

    @classmethod
    def from_dict(cls, values: dict) -> RunConfig:
        """The config stored in ``config.json`` (checked as :meth:`from_flat` checks it)."""
        if not isinstance(values, dict) or set(values) != set(SECTIONS):
            raise SelfAdaptError("not a selfadapt run configuration (sections "
                                 f"{', '.join(SECTIONS)} expected)")
        return cls.from_flat(flatten(values))

    def flat(self) -> dict:
        """Every setting and option under its flat name."""
        return flatten(self.to_dict())


def flatten(nested: dict) -> dict:
    """Nested config dict -> flat names (option tables spread into the namespace)."""
    flat = {}
    for section, values in nested.items():
        for key, value in values.items():
            if (section, key) in _OPTION_TABLES:
                flat.update(value)
            else:
                flat[key] = value
    return flat


def differing_settings(a: dict, b: dict) -> list[str]:
    """Flat names whose values differ between two nested configs, ignoring :data:`RESUMABLE`.

    A setting that only one side records (one declared after the other run was made) differs
    unless the other side holds its declared default, the behaviour from before it existed.
    """
    fa, fb = flatten(a), flatten(b)
    missing = object()

    def differs(key):
        va, vb = fa.get(key, missing), fb.get(key, missing)
        if va is missing or vb is missing:
            return (vb if va is missing else va) != declared_default(key)
        return va != vb
    return sorted(k for k in set(fa) | set(fb) if k not in RESUMABLE and differs(k))


def declared_default(key: str):
    """The default of the setting or option ``key`` (``None`` for an unknown name).

    >>> declared_default("sat_width_reference"), declared_default("epochs")
    (0, 200)
    """
    from selfadapt.evaluators import EVALUATORS
    from selfadapt.objectives.registry import METHODS

    plain = declared_settings()
    if key in plain:
        return plain[key][1].default
    for owner in [*METHODS.values(), *EVALUATORS.values()]:
        for f in dataclasses.fields(owner.options):
            if f.name == key:
                return f.default
    return None


# ---------------------------------------------------------------------------------------------
# typed values


def parse_options(cls: type, values: dict, owner: str):
    """An instance of the options dataclass ``cls`` from ``values`` (strings are converted);
    an unknown name, a wrong type or a value out of range is one :class:`SelfAdaptError`."""
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - set(fields))
    if unknown:
        valid = ", ".join(fields) or "none"
        raise SelfAdaptError(f"{owner} has no option {unknown[0]!r}{_did_you_mean(unknown[0], fields)}; "
                             f"its options: {valid}")
    return cls(**{k: coerce(v, fields[k], f"{owner}: ") for k, v in values.items()})


def coerce(value: Any, f: dataclasses.Field, prefix: str = "", *, text: bool = False) -> Any:
    """``value`` converted to the declared type of field ``f`` and checked against its rules.
    With ``text=True`` a string is parsed (a command-line value: ``"0.4"``, ``"75,90"``, ``"none"``);
    otherwise values must already have their type (TOML, JSON, Python)."""
    annotation = f.type if isinstance(f.type, str) else getattr(f.type, "__name__", str(f.type))
    converted = _convert(value, annotation, text)
    if converted is _INVALID:
        raise SelfAdaptError(f"{prefix}{f.name} must be {annotation}, got {value!r}")
    meta = f.metadata
    check, choices = meta.get("check"), meta.get("choices")
    if check is None and choices is not None:
        check = lambda v: v is None or v in choices()  # noqa: E731
    if check is not None and not _passes(check, converted):
        if choices is not None:
            raise SelfAdaptError(f"{prefix}unknown {f.name} {converted!r}; choose from {', '.join(choices())}")
        raise SelfAdaptError(f"{prefix}{f.name} must {meta.get('must') or 'be valid'}, got {converted!r}")
    return converted


def _passes(check, value) -> bool:
    try:
        return bool(check(value))
    except TypeError:
        return False


_INVALID = object()


def _convert(value: Any, annotation: str, text: bool) -> Any:
    for part in _union_parts(annotation):
        result = _convert_one(value, part, text)
        if result is not _INVALID:
            return result
    return _INVALID


def _union_parts(annotation: str) -> list[str]:
    parts, depth, current = [], 0, ""
    for ch in annotation:
        depth += ch == "["
        depth -= ch == "]"
        if ch == "|" and depth == 0:
            parts.append(current.strip())
            current = ""
        else:
            current += ch
    return [*parts, current.strip()] if current.strip() else parts


def _convert_one(value: Any, part: str, parse: bool) -> Any:
    text = parse and isinstance(value, str)
    if part == "None":
        return None if value is None or (text and value.lower() == "none") else _INVALID
    if part == "bool":
        if isinstance(value, bool):
            return value
        if text and value.lower() in ("true", "false", "yes", "no", "1", "0"):
            return value.lower() in ("true", "yes", "1")
        return _INVALID
    if part == "int":
        if isinstance(value, bool):
            return _INVALID
        if isinstance(value, int):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        if text:
            try:
                return int(value)
            except ValueError:
                return _INVALID
        return _INVALID
    if part == "float":
        if isinstance(value, bool):
            return _INVALID
        if isinstance(value, (int, float)):
            return float(value)
        if text:
            try:
                number = float(value)
            except ValueError:
                return _INVALID
            return number if not math.isnan(number) else _INVALID
        return _INVALID
    if part == "str":
        return value if isinstance(value, str) else _INVALID
    if part == "dict":
        return dict(value) if isinstance(value, dict) else _INVALID
    if part.startswith("list[") or part.startswith("tuple["):
        inner = part[part.index("[") + 1:-1].split(",")[0].strip()
        items = [v.strip() for v in value.split(",") if v.strip()] if text else value
        if not isinstance(items, (list, tuple)):
            return _INVALID
        converted = [_convert(v, inner, parse) for v in items]
        return _INVALID if any(c is _INVALID for c in converted) else converted
    if part.startswith("Literal["):
        allowed = ast.literal_eval(f"[{part[len('Literal['):-1]}]")
        return value if value in allowed else _INVALID
    raise TypeError(f"unsupported setting type {part!r}")


def parse_text(name: str, value: str) -> Any:
    """A command-line ``value`` for the setting or option ``name``, converted to its declared type
    (an unknown name is passed through unchanged, for :meth:`RunConfig.from_flat` to report)."""
    f = _field_named(name)
    return value if f is None else coerce(value, f, text=True)


def _field_named(name: str) -> dataclasses.Field | None:
    from selfadapt.evaluators import EVALUATORS
    from selfadapt.objectives.registry import METHODS

    plain = declared_settings()
    if name in plain:
        return plain[name][1]
    for component in [*METHODS.values(), *EVALUATORS.values()]:
        for f in dataclasses.fields(component.options):
            if f.name == name:
                return f
    return None


def all_names() -> list[str]:
    """Every plain setting and every method's and evaluator's option."""
    from selfadapt.evaluators import EVALUATORS
    from selfadapt.objectives.registry import METHODS

    names = dict.fromkeys(declared_settings())
    for component in [*METHODS.values(), *EVALUATORS.values()]:
        names.update(dict.fromkeys(component.option_names))
    return list(names)


def option_owner(key: str) -> str:
    """Which methods and evaluators declare the option ``key`` ("" for none)."""
    from selfadapt.evaluators import EVALUATORS
    from selfadapt.objectives.registry import METHODS

    owners = [f"method {m.name}" for m in METHODS.values() if key in m.option_names]
    owners += [f"evaluator {e.name}" for e in EVALUATORS.values() if key in e.option_names]
    return ", ".join(owners)


def _did_you_mean(key: str, names) -> str:
    close = difflib.get_close_matches(key, list(names), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def describe_type(f: dataclasses.Field) -> str:
    """A short metavar for ``f``'s type (``INT``, ``FLOAT``, ``auto|INT``, ``A,B,...``)."""
    parts = [p for p in _union_parts(str(f.type)) if p != "None"]
    words = []
    for p in parts:
        if p.startswith("Literal["):
            words += [str(v) for v in ast.literal_eval(f"[{p[len('Literal['):-1]}]")]
        elif p.startswith("list["):
            words.append("A,B,...")
        else:
            words.append(p.upper())
    return "|".join(words)
