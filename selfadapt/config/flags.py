"""Command-line flags derived from the declarations, so flags, presets and grid files cannot drift.

Every plain setting is a flag of the same name (``noise_rate`` -> ``--noise-rate``), and so is
every method's and evaluator's option. An option's help is its one declaration; where methods
give it different defaults, the help lists each owner's.

>>> import argparse
>>> parser = argparse.ArgumentParser(); add_run_flags(parser)
>>> run_config_from(parser.parse_args(["--dataset", "digits", "--model", "mlp", "--method", "ce"])).data.dataset
'digits'
"""
from __future__ import annotations

import argparse
import dataclasses

from selfadapt.config.fields import describe_type
from selfadapt.config.run import RunConfig, declared_settings, option_fields, parse_text
from selfadapt.config.sections import SECTIONS
from selfadapt.errors import SelfAdaptError
from selfadapt.evaluators.registry import evaluators
from selfadapt.grid.presets import load_preset
from selfadapt.objectives.registry import methods


def flag(name: str) -> str:
    """``noise_rate`` -> ``--noise-rate``."""
    return "--" + name.replace("_", "-")


def show_default(value) -> str:
    """How a default reads in help text (``None`` -> ``none``)."""
    return "none" if value is None else str(value)


def field_default(f: dataclasses.Field):
    if f.default is not dataclasses.MISSING:
        return f.default
    return f.default_factory() if f.default_factory is not dataclasses.MISSING else None


def help_text(f: dataclasses.Field, default_text: str | None = None) -> str:
    """A flag's help: the declaration's help, its values or type, and its default(s)."""
    text = f.metadata.get("help", "")
    choices = f.metadata.get("choices")
    if choices is not None:
        text += f" ({', '.join(choices())})"
    elif describe_type(f) not in ("STR", "BOOL"):
        text += f" [{describe_type(f)}]"
    if default_text is None and "default" in text:
        return text.replace("%", "%%")
    default = default_text if default_text is not None else show_default(field_default(f))
    return f"{text}; default {default}".replace("%", "%%")


def option_defaults(name: str) -> list[str]:
    """``"owner default"`` for every method and evaluator that has the option ``name``.

    >>> option_defaults("sat_start_epoch")[:2]
    ['pgd-at-sat 69', 'sat auto']
    """
    owners = [(m.name, m.default(name)) for m in methods().values() if name in m.option_names]
    owners += [(e.name, field_default(next(f for f in dataclasses.fields(e.options) if f.name == name)))
               for e in evaluators().values() if name in e.option_names]
    return [f"{owner} {show_default(value)}" for owner, value in sorted(owners)]


def _add(group, f: dataclasses.Field, default_text: str | None = None) -> None:
    if str(f.type) == "bool":
        group.add_argument(flag(f.name), dest=f.name, action=argparse.BooleanOptionalAction, default=None,
                           help=help_text(f, default_text))
    else:
        group.add_argument(flag(f.name), dest=f.name, default=None, metavar=f.name.upper().split("_")[-1],
                           help=help_text(f, default_text))


def add_run_flags(parser: argparse.ArgumentParser) -> None:
    """Every setting and option as a flag, plus ``--preset`` and ``--method-option KEY=VALUE``."""
    parser.add_argument("--preset", help="start from a preset: a name of `selfadapt presets` or a TOML file "
                                         "(NAME or NAME:RUN); flags given override it")
    groups = {name: parser.add_argument_group(f"{name} settings", cls.__doc__) for name, cls in SECTIONS.items()}
    for name, (section, f) in declared_settings().items():
        _add(groups[section], f)
    options = parser.add_argument_group("method and evaluator options",
                                        "each belongs to the methods/evaluators named in its default "
                                        "(`selfadapt methods`, `selfadapt evaluators`)")
    for name, f in sorted(option_fields().items()):
        _add(options, f, "; ".join(option_defaults(name)))
    options.add_argument("--method-option", dest="method_options", action="append", default=None,
                         metavar="KEY=VALUE", help="any option above as KEY=VALUE (repeatable)")


def run_config_from(args: argparse.Namespace, defaults: dict | None = None) -> RunConfig:
    """The checked :class:`RunConfig`: ``defaults``, the preset, then the flags given."""
    given = {}
    for name in [*declared_settings(), *option_fields()]:
        value = getattr(args, name, None)
        if value is not None:
            given[name] = value if isinstance(value, bool) else parse_text(name, value)
    for text in args.method_options or []:
        key, sep, value = text.partition("=")
        if not sep or not key:
            raise SelfAdaptError(f"--method-option wants KEY=VALUE, got {text!r}")
        given[key] = parse_text(key, value)
    preset = load_preset(args.preset, given) if args.preset else {}
    return RunConfig.from_flat({**(defaults or {}), **preset, **given})
