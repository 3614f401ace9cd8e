"""Benchmark grids: any settings swept over seeds, from one small TOML file, run and tabulated.

A grid file (``selfadapt bench GRID --out OUT``; :func:`selfadapt.grid.runner.run_grid` runs it):

```toml
name = "fashion-mnist-cpu"
methods = ["ce", "sat", "gce"]     # the method axis
seeds = [0, 1, 2]                  # each seed sets seed, data_seed and noise_seed of a run
[[noise]]                          # noise cells (optional; default: the settings' noise)
kind = "symmetric"
rates = [0.2, 0.4]
[[noise]]
kind = "human"                     # CIFAR-N: label sets in place of rates
variants = ["worse", "aggre"]
[axes]                             # any other setting or option, swept (optional)
width = [64, 256, 1024]
[settings]                         # shared settings and options (flat names, as the CLI's flags)
dataset = "fashion-mnist"
epochs = 30
sat_start_epoch = 5                # an option applies to the methods that have it
[method_settings.gce]              # settings for one method only
gce_q = 0.5
```

Every run trains into ``OUT/runs/<method>-<noise>[-<axis>=<value>...]-s<seed>/`` (a normal run
directory: a rerun skips finished runs and resumes partial ones), then :func:`selfadapt.grid.aggregate.aggregate` writes
``OUT/results.csv``, ``OUT/results.md`` and ``OUT/plots/`` for whatever metrics the runs report.
"""
from __future__ import annotations

import dataclasses
import itertools
import json
from dataclasses import dataclass
from pathlib import Path

from selfadapt.config.fields import did_you_mean, load_toml
from selfadapt.config.run import RunConfig, all_names, declared_settings, option_owner
from selfadapt.data.corruption import CORRUPTIONS
from selfadapt.data.human_labels import HUMAN_FILES, HUMAN_VARIANTS
from selfadapt.errors import SelfAdaptError
from selfadapt.evaluators.registry import evaluators
from selfadapt.objectives.registry import get_method
from selfadapt.objectives.registry import methods as known_methods

GRID_KEYS = ("name", "description", "methods", "seeds", "noise", "axes", "settings", "method_settings", "paper")


NOISE_KEYS = ("kind", "rates", "variants")


# The grid sets these itself, per run: a [settings] entry for them would be silently overridden.
GRID_FIELDS = ("method", "noise", "noise_rate", "noise_variant", "seed", "data_seed", "noise_seed", "progress")


@dataclass(frozen=True)
class GridRun:
    """One cell of the grid for one seed; ``level`` is the rate (``"0.4"``) or CIFAR-N variant,
    ``axes`` the values of the swept settings that apply to this run's method."""

    name: str
    method: str
    noise: str
    level: str
    axes: tuple[tuple[str, object], ...]
    seed: int
    config: RunConfig
    values: dict            # the flat settings the grid gives this run, before defaults

    @property
    def key(self) -> str:
        """The run's name without its seed (``sat-symmetric-0.4``): what a preset names."""
        return self.name.rpartition("-s")[0]

    @property
    def row(self) -> tuple:
        """What identifies its table row: the method and the axes values."""
        return (self.method, self.axes)


@dataclass(frozen=True)
class Grid:
    """A validated grid file, expanded into its runs (seed-major, so an interrupted grid has whole seeds).

    Example
    -------
    >>> grid = load_grid("docs/grids/fashion-mnist-cpu.toml")  # doctest: +SKIP
    >>> grid.runs[0].name  # doctest: +SKIP
    'ce-symmetric-0.2-s0'
    """

    name: str
    path: Path
    methods: tuple[str, ...]
    seeds: tuple[int, ...]
    cells: tuple[tuple[str, str], ...]       # (noise kind, level) in file order
    axes: dict                               # swept setting -> values
    settings: dict
    method_settings: dict
    runs: tuple[GridRun, ...]
    description: str = ""
    paper: dict = dataclasses.field(default_factory=dict)   # run key -> {metric: the paper's number (%)}

    @property
    def rows(self) -> list[tuple]:
        """The distinct (method, axes) rows in expansion order."""
        return list(dict.fromkeys(run.row for run in self.runs))


def load_grid(path: str | Path, overrides: dict | None = None) -> Grid:
    """Read, check and expand a grid file; any problem is a one-line :class:`SelfAdaptError`.
    ``overrides`` replace entries of its ``[settings]`` (``selfadapt bench --logger``).

    The device is not checked here (a grid written for CUDA can be aggregated anywhere);
    :func:`run_grid` checks it before training.
    """
    path = Path(path)
    where = f"grid {path}"
    spec = load_toml(path, "grid file")
    _no_unknown(spec, GRID_KEYS, where)
    name = spec.get("name", path.stem)
    if not isinstance(name, str) or not name:
        raise SelfAdaptError(f"{where}: name must be a non-empty string")
    methods = _unique_list(spec, "methods", str, where)
    for method in methods:
        get_method(method)
    seeds = _unique_list(spec, "seeds", int, where)
    settings = _settings_table({**spec.get("settings", {}), **(overrides or {})}, f"{where}, [settings]")
    method_settings = _method_settings(spec.get("method_settings", {}), where)
    axes = _axes(spec.get("axes", {}), where)
    noise = spec.get("noise")
    cells = _noise_cells(noise, settings.get("dataset", "cifar10"), where) if noise is not None else \
        [(settings.get("noise", "none"), _settings_level(settings))]
    for method, values in method_settings.items():
        if method not in methods:  # the grid's own runs check the others
            _expand(method, *cells[0], {k: v[0] for k, v in axes.items()}, seeds[0], settings, values,
                    f"{where}, [method_settings.{method}]", noise is not None)
    runs = {}
    for seed, (kind, level), values, method in itertools.product(seeds, cells, itertools.product(*axes.values()),
                                                                 methods):
        run = _expand(method, kind, level, dict(zip(axes, values)), seed, settings,
                      method_settings.get(method, {}), where, noise is not None)
        runs.setdefault(run.name, run)
    runs = tuple(runs.values())
    return Grid(name, path, tuple(methods), tuple(seeds), tuple(cells), axes, settings, method_settings, runs,
                str(spec.get("description", "")), _paper_numbers(spec.get("paper", {}), runs, where))


def _method_settings(tables, where: str) -> dict:
    """The ``[method_settings.<method>]`` tables, each checked (a known method not in ``methods`` is
    allowed: trimming a grid is one edit)."""
    if not isinstance(tables, dict):
        raise SelfAdaptError(f"{where}: method_settings must be a table of [method_settings.<method>] tables")
    for method, values in tables.items():
        table = f"{where}, [method_settings.{method}]"
        if method not in known_methods():
            raise SelfAdaptError(f"{table} names an unknown method; choose from {', '.join(sorted(known_methods()))}")
        _settings_table(values, table)
    return tables


def _axes(axes, where: str) -> dict:
    if not isinstance(axes, dict):
        raise SelfAdaptError(f"{where}: [axes] must be a table of setting = [values]")
    for key in axes:
        _unique_list(axes, key, object, f"{where}, [axes]")
    _settings_table({k: v[0] for k, v in axes.items()}, f"{where}, [axes]")
    return axes


def _paper_numbers(paper, runs, where: str) -> dict:
    """The ``[paper]`` table: run key -> {metric: number}, every key one of the grid's runs."""
    keys = {run.key for run in runs}
    if not isinstance(paper, dict) or not all(isinstance(v, dict) for v in paper.values()):
        raise SelfAdaptError(f"{where}: [paper] must map run names to tables of metric = number")
    for key, numbers in paper.items():
        if key not in keys:
            raise SelfAdaptError(f"{where}: [paper] names run {key!r}, which the grid does not have; "
                                 f"its runs: {', '.join(sorted(keys))}")
        bad = [m for m, v in numbers.items() if not isinstance(v, (int, float)) or isinstance(v, bool)]
        if bad:
            raise SelfAdaptError(f"{where}: [paper] {key}: {bad[0]} must be a number")
    return paper


def _expand(method: str, kind: str, level: str, axis_values: dict, seed: int, settings: dict, own: dict,
            where: str, noise_from_cells: bool) -> GridRun:
    accepts = _accepted_names(method)
    shared = {k: v for k, v in settings.items() if k in accepts}
    axes = tuple((k, v) for k, v in axis_values.items() if k in accepts)
    values = {**shared, **own, **dict(axes), "method": method, "seed": seed, "data_seed": seed,
              "noise_seed": seed, "progress": False}
    if noise_from_cells:
        values["noise"] = kind
        if kind == "human":
            values["noise_variant"] = level
        elif kind != "none":
            values["noise_rate"] = float(level)
    name = "-".join([method, cell_name(kind, level), *(f"{k}={text(v)}" for k, v in axes), f"s{seed}"])
    config = RunConfig.from_flat(values, where=f"{where}, run {name}")
    return GridRun(name, method, kind, level, axes, seed, config, values)


def _accepted_names(method: str) -> set[str]:
    """Plain settings, the method's options, and the options of the evaluators the run will use."""
    names = set(declared_settings()) | set(get_method(method).option_names)
    for spec in evaluators().values():
        names |= set(spec.option_names)
    return names


def text(value) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def _settings_level(settings: dict) -> str:
    if settings.get("noise") == "human":
        return str(settings.get("noise_variant") or "worse")
    return text(float(settings.get("noise_rate", 0.0))) if settings.get("noise", "none") != "none" else "0"


def _no_unknown(table: dict, known, where: str) -> None:
    unknown = sorted(set(table) - set(known))
    if unknown:
        raise SelfAdaptError(f"{where}: unknown key(s) {', '.join(unknown)}; allowed: {', '.join(known)}")


def _unique_list(spec: dict, key: str, kind: type, where: str) -> list:
    values = spec.get(key)
    if (not isinstance(values, list) or not values
            or not all(isinstance(v, kind) and not isinstance(v, bool) for v in values)):
        kind_name = "value" if kind is object else kind.__name__
        raise SelfAdaptError(f"{where}: {key} must be a non-empty list of {kind_name}s, got {values!r}")
    if len({json.dumps(v) for v in values}) != len(values):
        raise SelfAdaptError(f"{where}: {key} lists a value twice: {values!r}")
    return values


def _settings_table(values, where: str) -> dict:
    """Check a table of flat settings: known names (plain settings or some method's or evaluator's
    options), none the grid sets itself. Types and ranges are checked when each run is built."""
    if not isinstance(values, dict):
        raise SelfAdaptError(f"{where} must be a table of settings")
    plain = declared_settings()
    for key in values:
        if key in GRID_FIELDS:
            raise SelfAdaptError(f"{where}: {key} is set by the grid itself (methods, [[noise]], seeds)")
        if key not in plain and not option_owner(key):
            raise SelfAdaptError(f"{where}: unknown setting {key!r}{did_you_mean(key, all_names())}; "
                                 "`selfadapt train --help` lists them")
    return values


def _noise_cells(noise, dataset: str, where: str) -> list[tuple[str, str]]:
    if not isinstance(noise, list) or not noise or not all(isinstance(n, dict) for n in noise):
        raise SelfAdaptError(f"{where}: [[noise]] must be one or more tables (kind = \"none\" for clean labels)")
    cells = []
    for entry in noise:
        _no_unknown(entry, NOISE_KEYS, f"{where}, [[noise]]")
        kind = entry.get("kind")
        if kind not in CORRUPTIONS:
            raise SelfAdaptError(f"{where}: unknown noise kind {kind!r}; choose from {', '.join(CORRUPTIONS)}")
        if kind == "none":
            if "rates" in entry or "variants" in entry:
                raise SelfAdaptError(f"{where}: noise kind \"none\" takes neither rates nor variants")
            levels = ["0"]
        elif kind == "human":
            if "rates" in entry:
                raise SelfAdaptError(f"{where}: noise kind \"human\" takes variants (CIFAR-N label sets), not rates")
            if dataset not in HUMAN_FILES:
                raise SelfAdaptError(f"{where}: human noise exists only for "
                                     f"{' and '.join(HUMAN_FILES)}, not {dataset!r}")
            levels = _unique_list(entry, "variants", str, f"{where}, [[noise]] human")
            choices = HUMAN_VARIANTS[dataset]
            for variant in levels:
                if variant not in choices:
                    raise SelfAdaptError(f"{where}: unknown {dataset} variant {variant!r}; "
                                         f"choose from {', '.join(choices)}")
        else:
            if "variants" in entry:
                raise SelfAdaptError(f"{where}: only noise kind \"human\" takes variants; {kind} takes rates")
            rates = entry.get("rates")
            if (not isinstance(rates, list) or not rates
                    or not all(isinstance(r, (int, float)) and not isinstance(r, bool) for r in rates)):
                raise SelfAdaptError(f"{where}: noise {kind} needs rates, a non-empty list of numbers, got {rates!r}")
            bad = [r for r in rates if not 0.0 <= r <= 1.0]
            if bad:
                raise SelfAdaptError(f"{where}: noise rates must lie in [0, 1], got {bad[0]} for {kind}")
            levels = [text(float(r)) for r in rates]
        for level in levels:
            if (kind, level) in cells:
                raise SelfAdaptError(f"{where}: noise {kind} {level} is listed twice")
            cells.append((kind, level))
    return cells


def cell_name(kind: str, level: str) -> str:
    return kind if kind == "none" else f"{kind}-{level}"


def row_label(method: str, axes) -> str:
    return " ".join([method, *(f"{k}={text(v)}" for k, v in axes)])
