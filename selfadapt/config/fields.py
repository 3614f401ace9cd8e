"""Declaring a setting once: its type, default, one-line help and rules; converting values to it.

The bottom layer of the configuration: methods, evaluators and the run's sections declare their
settings with :func:`setting`, and :func:`parse_options` / :func:`coerce` turn values from the
command line, TOML or JSON into checked, typed values. Nothing here knows any registry.

Example: see :func:`setting`.
"""
from __future__ import annotations

import ast
import dataclasses
import difflib
import math
from dataclasses import field
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

    >>> from dataclasses import dataclass
    >>> @dataclass
    ... class Options:
    ...     gce_q: float = setting(0.7, "GCE exponent q", check=lambda q: 0 < q <= 1, must="lie in (0, 1]")
    >>> parse_options(Options, {"gce_q": 0.5}, "gce").gce_q
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


def parse_options(cls: type, values: dict, owner: str):
    """An instance of the options dataclass ``cls`` from ``values`` (strings are converted);
    an unknown name, a wrong type or a value out of range is one :class:`SelfAdaptError`."""
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - set(fields))
    if unknown:
        valid = ", ".join(fields) or "none"
        raise SelfAdaptError(f"{owner} has no option {unknown[0]!r}{did_you_mean(unknown[0], fields)}; "
                             f"its options: {valid}")
    return cls(**{k: coerce(v, fields[k], f"{owner}: ") for k, v in values.items()})


def coerce(value: Any, f: dataclasses.Field, prefix: str = "", *, text: bool = False) -> Any:
    """``value`` converted to the declared type of field ``f`` and checked against its rules.
    With ``text=True`` a string is parsed (a command-line value: ``"0.4"``, ``"75,90"``, ``"none"``);
    otherwise values must already have their type (TOML, JSON, Python)."""
    annotation = f.type if isinstance(f.type, str) else getattr(f.type, "__name__", str(f.type))
    converted = _convert(value, annotation, text)
    if converted is _INVALID:
        if "float" in annotation and str(value).strip().lower().lstrip("+-") in ("inf", "infinity", "nan"):
            raise SelfAdaptError(f"{prefix}{f.name} must be a finite number, got {value!r}")
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
    """``value`` as the single type ``part`` (``int``, ``list[float]``, ``Literal['auto']`` ...), or
    ``_INVALID``; with ``parse`` a string is read as a user types it."""
    text = parse and isinstance(value, str)
    if part.startswith(("list[", "tuple[")):
        return _as_list(value, part, parse, text)
    if part.startswith("Literal["):
        return value if value in ast.literal_eval(f"[{part[len('Literal['):-1]}]") else _INVALID
    if part not in _SCALARS:
        raise TypeError(f"unsupported setting type {part!r}")
    return _SCALARS[part](value, text)


def _as_none(value, text):
    return None if value is None or (text and value.lower() == "none") else _INVALID


def _as_bool(value, text):
    if isinstance(value, bool):
        return value
    if text and value.lower() in ("true", "false", "yes", "no", "1", "0"):
        return value.lower() in ("true", "yes", "1")
    return _INVALID


def _as_int(value, text):
    if isinstance(value, bool):
        return _INVALID
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    try:
        return int(value) if text else _INVALID
    except ValueError:
        return _INVALID


def _as_float(value, text):
    """A finite number: no setting means infinity or NaN."""
    if isinstance(value, bool):
        return _INVALID
    try:
        number = float(value) if isinstance(value, (int, float)) or text else _INVALID
    except ValueError:
        return _INVALID
    return number if number is not _INVALID and math.isfinite(number) else _INVALID


_SCALARS = {"None": _as_none, "bool": _as_bool, "int": _as_int, "float": _as_float,
            "str": lambda value, text: value if isinstance(value, str) else _INVALID,
            "dict": lambda value, text: dict(value) if isinstance(value, dict) else _INVALID}


def _as_list(value, part: str, parse: bool, text: bool):
    inner = part[part.index("[") + 1:-1].split(",")[0].strip()
    items = [v.strip() for v in value.split(",") if v.strip()] if text else value
    if not isinstance(items, (list, tuple)):
        return _INVALID
    converted = [_convert(v, inner, parse) for v in items]
    return _INVALID if any(c is _INVALID for c in converted) else converted


# Names users bring from other tools, and ours.
ALIASES = {"learning_rate": "lr", "weight-decay": "weight_decay", "wd": "weight_decay", "num_epochs": "epochs",
           "max_epochs": "epochs", "bs": "batch_size", "arch": "model", "network": "model", "loss": "method",
           "noise_type": "noise", "noise_ratio": "noise_rate", "optim": "optimizer", "scheduler": "schedule"}


def did_you_mean(key: str, names) -> str:
    """`` (did you mean 'lr'?)`` for the closest of ``names`` (a known alias first), else ``""``.

    >>> did_you_mean("learning_rate", ["lr", "epochs"]), did_you_mean("epoch", ["lr", "epochs"])
    (" (did you mean 'lr'?)", " (did you mean 'epochs'?)")
    """
    names = list(names)
    alias = ALIASES.get(key.lstrip("-").replace("-", "_"))
    if alias is not None and alias in names:
        return f" (did you mean {alias!r}?)"
    close = difflib.get_close_matches(key, names, n=1)
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
