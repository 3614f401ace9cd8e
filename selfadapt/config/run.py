"""A run's whole configuration: :class:`RunConfig`, built from flat names and checked as a whole.

Plain settings are the sections' fields (:mod:`selfadapt.config.sections`); a method's or an
evaluator's options are typed dataclasses declared beside it. Both share one flat namespace
(``--noise-rate``, ``--sat-momentum``; ``noise_rate = 0.4`` in a grid file). An option name has
one declaration (type, help, rules) wherever it is used; only its default may differ per method
(``Method.defaults``), and the chosen method's default is the one applied.

>>> config = RunConfig.from_flat({"dataset": "digits", "model": "mlp", "epochs": 5, "method": "ce"})
>>> config.data.dataset, config.engine.epochs, config.flat()["lr"]
('digits', 5, 0.1)
"""
from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field

from selfadapt.config.fields import coerce, did_you_mean
from selfadapt.config.sections import (
    SECTIONS,
    DataSettings,
    EngineSettings,
    EvalSettings,
    MethodSettings,
    ModelSettings,
)
from selfadapt.data.registry import find_format
from selfadapt.errors import SelfAdaptError
from selfadapt.evaluators.registry import evaluator_names_for, evaluators, get_evaluator, resolve_evaluator_options
from selfadapt.models.registry import model_width
from selfadapt.objectives.registry import get_method, methods

# Fields holding the typed options of the chosen components, filled from the flat namespace.
_OPTION_TABLES = {("method", "options"), ("eval", "options")}

# The models that read a feature vector (the others are networks for images).
VECTOR_MODELS = ("linear", "mlp")

# Settings that may differ between invocations of one run: more epochs extend it, and where the
# data (or its decoded cache) lives, whether it streams from disk, the device, the display and
# profiling do not change what is computed.
RESUMABLE = frozenset({"epochs", "device", "progress", "data_dir", "cache_dir", "stream", "profile", "dist_timeout",
                       "logger"})


def declared_settings() -> dict[str, tuple[str, dataclasses.Field]]:
    """Flat name -> (section, field) for every plain setting (not the option tables)."""
    out = {}
    for section, cls in SECTIONS.items():
        for f in dataclasses.fields(cls):
            if (section, f.name) not in _OPTION_TABLES:
                out[f.name] = (section, f)
    return out


def option_fields() -> dict[str, dataclasses.Field]:
    """Every method's and evaluator's option: name -> its one declaration.

    >>> option_fields()["sat_momentum"].metadata["help"][:19]
    'SAT target momentum'
    """
    out: dict[str, dataclasses.Field] = {}
    for owner in [*methods().values(), *evaluators().values()]:
        for f in dataclasses.fields(owner.options):
            if out.setdefault(f.name, f) is not f:
                raise TypeError(f"option {f.name!r} is declared twice ({owner.name} redeclares it): "
                                "reuse the one declaration")
    return out


@dataclass
class RunConfig:
    """Everything that decides a run. Defaults are the SAT paper's CIFAR protocol.

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
        method = get_method(self.method.method)
        own = {k: v for k, v in given.items() if k in method.option_names}
        names = self.eval.evaluators if self.eval.evaluators is not None else \
            evaluator_names_for(method, self.data.noise)
        eval_given = {k: v for k, v in given.items() if k not in own}
        self.method.options = dataclasses.asdict(method.parse(own, f"{prefix}method {method.name}"))
        self.eval.evaluators = list(names)
        self.eval.options = resolve_evaluator_options(names, eval_given, prefix)
        leftover = sorted(set(given) - set(own) - set(self.eval.options))
        if leftover:
            key = leftover[0]
            owner = option_owner(key)
            if owner:
                raise SelfAdaptError(f"{prefix}{key} is an option of {owner}, not of method {method.name!r} "
                                     f"or its evaluators ({', '.join(names)}){_start_hint(key, method)}")
            raise SelfAdaptError(f"{prefix}unknown setting {key!r}{did_you_mean(key, all_names())}; "
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
        try:
            model_width(self.model.model, self.model.width)
        except SelfAdaptError as e:
            raise SelfAdaptError(f"{prefix}{e}") from None
        if engine.schedule == "multistep" and not engine.milestones:
            raise SelfAdaptError(f"{prefix}--schedule multistep needs --milestones (e.g. 75,90)")
        self._check_feature_vectors(prefix)
        self._check_collection_settings(prefix)
        self._check_backbone(prefix)
        method = get_method(self.method.method)
        if data.unlabeled and method.uses_labels:
            raise SelfAdaptError(f"{prefix}--unlabeled adds images without labels, which method {method.name!r} "
                                 "cannot train on: use a self-supervised method (`selfadapt methods`)")
        method.check(self, prefix)
        for name in self.eval.evaluators or []:
            get_evaluator(name).check(self, prefix)

    def _check_feature_vectors(self, prefix: str) -> None:
        """Feature vectors are not images: no augmentation, and a model that reads a vector."""
        if not find_format(self.data.dataset)[0].feature_vectors:
            return
        if self.data.augment != "none":
            raise SelfAdaptError(f"{prefix}feature vectors take no image augmentation: add --augment none")
        if self.model.model not in VECTOR_MODELS:
            raise SelfAdaptError(f"{prefix}feature vectors take --model {' or '.join(VECTOR_MODELS)} (a network for "
                                 f"images, such as {self.model.model}, treats each feature as a 1x1 image channel)")

    def _check_collection_settings(self, prefix: str) -> None:
        """Settings that only image collections read are not given for other data (they would do nothing)."""
        data, form = self.data, find_format(self.data.dataset)[0]
        for flag, value in (("--image-size", data.image_size), ("--stream", data.stream)):
            if value not in (None, False) and not form.collection:
                raise SelfAdaptError(f"{prefix}{flag} applies to image collections (imagefolder:, csv:, hf:), "
                                     f"not to {data.dataset}")
        for flag, value in (("--image-column", data.image_column), ("--label-column", data.label_column)):
            if value is not None and form.name != "hf":
                raise SelfAdaptError(f"{prefix}{flag} names a column of an hf: data set, not of {data.dataset}")

    def _check_backbone(self, prefix: str) -> None:
        """What a pretrained backbone, or its frozen features, cannot serve."""
        model, hf = self.model, self.model.model.startswith("hf:")
        problem = None
        if model.freeze_backbone and not hf:
            problem = "--freeze-backbone needs a pretrained backbone: --model hf:ID_OR_FOLDER"
        elif model.head != "linear" and not model.freeze_backbone:
            problem = "--head chooses the head on a frozen backbone's features: add --freeze-backbone"
        elif hf and model.width is not None and model.head != "mlp":
            problem = "a pretrained backbone has its own width: --width sets the hidden units of --head mlp only"
        elif model.freeze_backbone and self.data.augment != "none":
            problem = "--freeze-backbone computes each image's features once, unaugmented: add --augment none"
        vectors = model.freeze_backbone or find_format(self.data.dataset)[0].feature_vectors
        if problem is None and vectors and get_method(self.method.method).needs_images:
            problem = (f"method {self.method.method} works on the images themselves, not on feature vectors"
                       + (": drop --freeze-backbone to train the whole network" if model.freeze_backbone else ""))
        if problem:
            raise SelfAdaptError(f"{prefix}{problem}")

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


def _start_hint(key: str, method) -> str:
    """Where a method that starts later under another name says when it starts."""
    own = [name for name in method.option_names if name.endswith("_pretrain_epochs")]
    if key.endswith("_start_epoch") and own:
        return f"; method {method.name} starts after --{own[0].replace('_', '-')}"
    return ""


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
    method = fa.get("method", fb.get("method"))
    missing = object()

    def differs(key):
        va, vb = fa.get(key, missing), fb.get(key, missing)
        if va is missing or vb is missing:
            return (vb if va is missing else va) != declared_default(key, method)
        return va != vb
    return sorted(k for k in set(fa) | set(fb) if k not in RESUMABLE and differs(k))


def declared_default(key: str, method: str | None = None):
    """The default of the setting or option ``key`` (for ``method``'s options, that method's;
    ``None`` for an unknown name).

    >>> declared_default("sat_width_reference"), declared_default("epochs"), declared_default("sat_momentum", "trades-sat")
    (0, 200, 0.9)
    """
    plain = declared_settings()
    if key in plain:
        return plain[key][1].default
    if method in methods() and key in get_method(method).option_names:
        return get_method(method).default(key)
    f = option_fields().get(key)
    return None if f is None else f.default


def parse_text(name: str, value: str):
    """A command-line ``value`` for the setting or option ``name``, converted to its declared type
    (an unknown name is passed through unchanged, for :meth:`RunConfig.from_flat` to report)."""
    plain = declared_settings()
    f = plain[name][1] if name in plain else option_fields().get(name)
    return value if f is None else coerce(value, f, text=True)


def all_names() -> list[str]:
    """Every plain setting and every method's and evaluator's option."""
    return [*declared_settings(), *option_fields()]


def option_owner(key: str) -> str:
    """Which methods and evaluators declare the option ``key`` ("" for none)."""
    owners = [f"method {m.name}" for m in methods().values() if key in m.option_names]
    owners += [f"evaluator {e.name}" for e in evaluators().values() if key in e.option_names]
    return ", ".join(owners)
