"""The papers' experiments as presets, in small TOML files (readable, diffable).

A file holds shared ``[config]`` settings (flat names, as in grid files) and either

- ``rates = [0.2, 0.4]`` with ``[paper]`` test accuracies per rate: one preset per noise rate,
  named ``<file>-sym<rate>`` (``cifar10-sat.toml`` gives ``cifar10-sat-sym0.2`` ...), or
- ``[[preset]]`` tables, each with ``name``, ``description``, its own ``config`` and the paper's
  numbers as ``paper = {metric = value, ...}`` (percent).

>>> load_preset("cifar10-sat-sym0.4")["noise_rate"]
0.4
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from selfadapt.errors import SelfAdaptError
from selfadapt.settings import load_toml

HERE = Path(__file__).parent


@dataclass(frozen=True)
class Preset:
    name: str
    description: str
    config: dict          # flat settings
    paper: dict           # metric -> the paper's number (%)


def presets() -> dict[str, Preset]:
    """Every preset by name, in file order."""
    out = {}
    for path in sorted(HERE.glob("*.toml")):
        spec = load_toml(path, "preset file")
        shared = spec.get("config", {})
        for rate in spec.get("rates", []):
            paper = spec.get("paper", {}).get(str(float(rate)))
            out[f"{path.stem}-sym{rate}"] = Preset(
                f"{path.stem}-sym{rate}", spec["description"], {**shared, "noise_rate": float(rate)},
                {} if paper is None else {"test_accuracy": paper})
        for entry in spec.get("preset", []):
            out[entry["name"]] = Preset(entry["name"], entry.get("description", spec.get("description", "")),
                                        {**shared, **entry.get("config", {})}, dict(entry.get("paper", {})))
    return out


def preset_names() -> list[str]:
    return list(presets())


def load_preset(name: str) -> dict:
    """The run settings of preset ``name`` (flat setting names, as in grid files)."""
    found = presets().get(name)
    if found is None:
        raise SelfAdaptError(f"unknown preset {name!r}; `selfadapt presets` lists them")
    return dict(found.config)


def describe_presets() -> list[tuple[str, str, dict]]:
    """``(name, description, the paper's numbers)`` of every preset."""
    return [(p.name, p.description, p.paper) for p in presets().values()]
