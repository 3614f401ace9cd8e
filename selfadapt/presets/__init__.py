"""The paper's experiments as presets: one small TOML file per family, one preset per noise rate.

``cifar10-sat.toml`` with ``rates = [0.2, 0.4, 0.6, 0.8]`` gives ``cifar10-sat-sym0.2`` ...
``cifar10-sat-sym0.8``. Each file also holds the paper's reported accuracy per rate.

>>> load_preset("cifar10-sat-sym0.4")["noise_rate"]
0.4
"""
from __future__ import annotations

from pathlib import Path

from selfadapt.errors import SelfAdaptError
from selfadapt.settings import load_toml

HERE = Path(__file__).parent


def _families() -> dict[str, dict]:
    return {path.stem: load_toml(path, "preset file") for path in sorted(HERE.glob("*.toml"))}


def preset_names() -> list[str]:
    return [f"{family}-sym{rate}" for family, spec in _families().items() for rate in spec["rates"]]


def load_preset(name: str) -> dict:
    """The run settings of preset ``name`` (flat setting names, as in grid files)."""
    family, _, rate = name.rpartition("-sym")
    spec = _families().get(family)
    if spec is None or not rate or float(rate) not in spec["rates"]:
        raise SelfAdaptError(f"unknown preset {name!r}; `selfadapt presets` lists them")
    return {**spec["config"], "noise_rate": float(rate)}


def paper_accuracy(name: str) -> float | None:
    """The test accuracy (%) the paper reports for preset ``name``."""
    family, _, rate = name.rpartition("-sym")
    return _families()[family].get("paper", {}).get(str(float(rate)))


def describe_presets() -> list[tuple[str, str, float | None]]:
    return [(name, _families()[name.rpartition("-sym")[0]]["description"], paper_accuracy(name))
            for name in preset_names()]
