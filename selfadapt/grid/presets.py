"""The papers' experiments as presets: grid files a user can read, copy and edit.

A preset is a grid file (:mod:`selfadapt.grid.spec`) with the papers' numbers in ``[paper]``. The
shipped ones live in ``selfadapt/presets/`` and are named by their stem (``cifar10``); any other
grid file works by its path. ``selfadapt bench NAME`` runs a whole preset; ``selfadapt train
--preset NAME:RUN`` trains one of its runs (``cifar10:sat-symmetric-0.4``), and ``--preset NAME``
alone picks the run that the flags given name (``--method sat --noise-rate 0.4``).

>>> load_preset("cifar10:sat-symmetric-0.4")["noise_rate"]
0.4
>>> load_preset("cifar10", {"method": "sat", "noise_rate": 0.4})["sat_start_epoch"]
60
"""
from __future__ import annotations

from pathlib import Path

from selfadapt.config.fields import did_you_mean
from selfadapt.errors import SelfAdaptError
from selfadapt.grid.spec import Grid, GridRun, load_grid

SHIPPED = Path(__file__).resolve().parent.parent / "presets"
# The grid sets these per run and seed; a preset leaves them to the user's flags.
_PER_SEED = ("seed", "data_seed", "noise_seed", "progress")


def preset_path(name: str) -> Path:
    """The file of preset ``name``: a path to a TOML file, or a shipped preset's stem.

    >>> preset_path("cifar10").name
    'cifar10.toml'
    """
    if "/" in name or name.endswith(".toml") or Path(name).exists():
        path = Path(name).expanduser()
        if not path.is_file():
            raise SelfAdaptError(f"grid file {path} does not exist")
        return path
    shipped = SHIPPED / f"{name}.toml"
    if shipped.is_file():
        return shipped
    known = [p.stem for p in sorted(SHIPPED.glob("*.toml"))]
    raise SelfAdaptError(f"unknown preset {name!r}{did_you_mean(name, known)}: not a shipped preset "
                         f"({', '.join(known)}) nor a path to a TOML file")


def load_preset(spec: str, given: dict | None = None) -> dict:
    """The flat settings of one run of a preset: ``NAME:RUN``, or ``NAME`` with the run that the
    settings ``given`` (the flags) select; per-seed settings are left to the flags."""
    name, _, key = spec.rpartition(":") if ":" in spec else (spec, "", "")
    grid = load_grid(preset_path(name))
    run = _named_run(grid, name, key) if key else _selected_run(grid, name, given or {})
    return {k: v for k, v in run.values.items() if k not in _PER_SEED}


def _runs(grid: Grid) -> list[GridRun]:
    return [run for run in grid.runs if run.seed == grid.seeds[0]]


def _named_run(grid: Grid, name: str, key: str) -> GridRun:
    for run in _runs(grid):
        if run.key == key:
            return run
    raise SelfAdaptError(f"preset {name} has no run {key!r}; its runs: {', '.join(r.key for r in _runs(grid))}")


def _selected_run(grid: Grid, name: str, given: dict) -> GridRun:
    runs = [run for run in _runs(grid)
            if all(run.values[k] == v for k, v in given.items() if k in run.values and k not in _PER_SEED)]
    if len(runs) == 1:
        return runs[0]
    listed = ", ".join(r.key for r in (runs or _runs(grid)))
    raise SelfAdaptError(f"preset {name} has {len(runs)} runs matching the flags given; name one as "
                         f"--preset {name}:RUN (runs: {listed}), or give --method and the noise that pick it")


def preset_names() -> list[str]:
    """``NAME:RUN`` of every run of every shipped preset."""
    return [f"{path.stem}:{run.key}" for path in sorted(SHIPPED.glob("*.toml")) for run in _runs(load_grid(path))]


def describe_presets() -> list[tuple[str, str, dict]]:
    """``(NAME:RUN, the preset's description, the paper's numbers)`` of every shipped run."""
    out = []
    for path in sorted(SHIPPED.glob("*.toml")):
        grid = load_grid(path)
        out += [(f"{path.stem}:{run.key}", grid.description, grid.paper.get(run.key, {})) for run in _runs(grid)]
    return out
