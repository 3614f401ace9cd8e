"""Benchmark grids: any settings swept over seeds, from one small TOML file, run and tabulated.

``selfadapt bench GRID --out OUT [--jobs N]`` calls :func:`run_grid`. A grid file:

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
directory: a rerun skips finished runs and resumes partial ones), then :func:`aggregate` writes
``OUT/results.csv``, ``OUT/results.md`` and ``OUT/plots/`` for whatever metrics the runs report.
"""
from __future__ import annotations

import csv
import itertools
import json
import os
import platform
import shlex
import statistics
import time
import traceback
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from dataclasses import dataclass
from multiprocessing import get_context
from pathlib import Path

import torch

from selfadapt.double_descent import write_double_descent
from selfadapt.data.corruption import CORRUPTIONS, HUMAN_FILES, HUMAN_VARIANTS, INPUT_CORRUPTIONS
from selfadapt.errors import SelfAdaptError
from selfadapt.evaluators import EVALUATORS
from selfadapt.experiment import resolve_device, run_experiment
from selfadapt.loggers import Loggers, check_available
from selfadapt.objectives.registry import METHODS, get_method
from selfadapt.report import percent
from selfadapt.rundir import atomic_write_bytes, read_metrics, write_json
from selfadapt.settings import RunConfig, declared_settings, differing_settings, load_toml

GRID_KEYS = ("name", "methods", "seeds", "noise", "axes", "settings", "method_settings")
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
    method_settings = spec.get("method_settings", {})
    if not isinstance(method_settings, dict):
        raise SelfAdaptError(f"{where}: method_settings must be a table of [method_settings.<method>] tables")
    for method, values in method_settings.items():
        # a known method not in `methods` is allowed (trimming a grid is one edit), and checked all the same
        table = f"{where}, [method_settings.{method}]"
        if method not in METHODS:
            raise SelfAdaptError(f"{table} names an unknown method; choose from {', '.join(sorted(METHODS))}")
        _settings_table(values, table)
    axes = spec.get("axes", {})
    if not isinstance(axes, dict):
        raise SelfAdaptError(f"{where}: [axes] must be a table of setting = [values]")
    for key in axes:
        _unique_list(axes, key, object, f"{where}, [axes]")
    _settings_table({k: v[0] for k, v in axes.items()}, f"{where}, [axes]")
    noise = spec.get("noise")
    cells = _noise_cells(noise, settings.get("dataset", "cifar10"), where) if noise is not None else \
        [(settings.get("noise", "none"), _settings_level(settings))]
    for method, values in method_settings.items():
        if method not in methods:  # the grid's own runs check the others
            _expand(method, *cells[0], {k: v[0] for k, v in axes.items()}, seeds[0], settings, values,
                    f"{where}, [method_settings.{method}]", noise is not None)
    runs = {}
    for seed in seeds:
        for kind, level in cells:
            for values in itertools.product(*axes.values()):
                for method in methods:
                    run = _expand(method, kind, level, dict(zip(axes, values)), seed, settings,
                                  method_settings.get(method, {}), where, noise is not None)
                    runs.setdefault(run.name, run)
    return Grid(name, path, tuple(methods), tuple(seeds), tuple(cells), axes, settings, method_settings,
                tuple(runs.values()))


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
    name = "-".join([method, _cell_name(kind, level), *(f"{k}={_text(v)}" for k, v in axes), f"s{seed}"])
    config = RunConfig.from_flat(values, where=f"{where}, run {name}")
    return GridRun(name, method, kind, level, axes, seed, config)


def _accepted_names(method: str) -> set[str]:
    """Plain settings, the method's options, and the options of the evaluators the run will use."""
    names = set(declared_settings()) | set(get_method(method).option_names)
    for spec in EVALUATORS.values():
        names |= set(spec.option_names)
    return names


def _text(value) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def _settings_level(settings: dict) -> str:
    if settings.get("noise") == "human":
        return str(settings.get("noise_variant") or "worse")
    return _text(float(settings.get("noise_rate", 0.0))) if settings.get("noise", "none") != "none" else "0"


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
    from selfadapt.settings import option_owner

    if not isinstance(values, dict):
        raise SelfAdaptError(f"{where} must be a table of settings")
    plain = declared_settings()
    for key in values:
        if key in GRID_FIELDS:
            raise SelfAdaptError(f"{where}: {key} is set by the grid itself (methods, [[noise]], seeds)")
        if key not in plain and not option_owner(key):
            raise SelfAdaptError(f"{where}: unknown setting {key!r}; `selfadapt train --help` lists them")
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
            levels = [_text(float(r)) for r in rates]
        for level in levels:
            if (kind, level) in cells:
                raise SelfAdaptError(f"{where}: noise {kind} {level} is listed twice")
            cells.append((kind, level))
    return cells


def _cell_name(kind: str, level: str) -> str:
    return kind if kind == "none" else f"{kind}-{level}"


# --------------------------------------------------------------------------------------------
# running


def run_grid(path: str | Path, out: str | Path, *, jobs: int = 1, launcher: str = "local",
             resources=None, logger: list[str] | None = None) -> Path:
    """Train every run of grid ``path`` into ``out/runs/``, then :func:`aggregate`; return ``out``.

    Finished runs are skipped without loading data, partial ones resume from their checkpoint.
    ``jobs > 1`` trains that many runs at once in spawned processes, splitting torch's threads
    between them (one each on two cores). A run that fails (say, a diverged loss) does not stop
    the others; the grid raises a :class:`SelfAdaptError` after aggregating, and results.md lists it.

    ``launcher="slurm"`` (or ``"submitit-local"``) sends each run as a job through submitit with
    ``resources`` (:class:`selfadapt.launchers.JobResources`) instead; see :mod:`selfadapt.launchers`.

    ``logger`` (else the grid's ``logger`` setting) names the trackers every run and the grid's
    plots and results table go to (:mod:`selfadapt.loggers`); MLflow's store is ``out/mlruns``
    for all of them unless ``MLFLOW_TRACKING_URI`` is set.

    Example: ``run_grid("docs/grids/fashion-mnist-cpu.toml", "runs/fmnist", jobs=2)``.
    """
    if jobs < 1:
        raise SelfAdaptError(f"--jobs must be >= 1, got {jobs}")
    started = time.perf_counter()
    grid = load_grid(path, None if logger is None else {"logger": logger})
    loggers = grid.settings.get("logger", [])
    check_available(loggers)
    for device in sorted({run.config.engine.device for run in grid.runs}):
        resolve_device(device)
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise SelfAdaptError(f"--out {out} is a file, not a directory")
    states = {run.name: run_state(run, out) for run in grid.runs}   # every conflict raised before any training
    if launcher != "local":
        from selfadapt.launchers import JobResources, executor, train_as_jobs

        cluster = executor(launcher, out / "submitit", resources or JobResources())
    if "mlflow" in loggers:  # the runs and the grid in one store (spawned workers inherit it)
        os.environ.setdefault("MLFLOW_TRACKING_URI", (out / "mlruns").resolve().as_uri())
    (out / "runs").mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(out / "grid.toml", grid.path.read_bytes())
    todo = []
    for i, run in enumerate(grid.runs, 1):
        if states[run.name] == "finished":
            print(f"[{i}/{len(grid.runs)}] skipped {run.name} (finished)", flush=True)
        else:
            todo.append((i, run))
    workers = min(jobs, max(len(todo), 1))
    threads = max(1, torch.get_num_threads() // workers)
    failed = {}
    if launcher == "local":
        results = _train_all(todo, out, workers, threads, len(grid.runs))
    else:
        results = train_as_jobs(todo, out, cluster, len(grid.runs), _train_one)
    for i, run, result in results:
        if isinstance(result, str):
            failed[run.name] = result
            print(f"[{i}/{len(grid.runs)}] failed {run.name}: {result}", flush=True)
        else:
            print(f"[{i}/{len(grid.runs)}] finished {run.name}: {_describe_result(result)}, "
                  f"{result['seconds']:.1f} s", flush=True)
    write_json(out / "failed.json", failed)
    command = f"selfadapt bench {shlex.quote(str(path))} --out {shlex.quote(str(out))}"
    command += f" --jobs {jobs}" if jobs > 1 else ""
    command += f" --launcher {launcher}" if launcher != "local" else ""
    _record_invocation(out, grid, command, workers, threads, trained=len(todo), seconds=time.perf_counter() - started)
    aggregate(out)
    if loggers:
        log_grid(grid, out, loggers)
    if failed:
        name, message = next(iter(failed.items()))
        same = sum(m == message for m in failed.values())
        raise SelfAdaptError(f"{len(failed)} of {len(grid.runs)} runs failed; {name}"
                             + (f" and {same - 1} more" if same > 1 else "") + f": {message} "
                             f"({out / 'results.md'} lists every failed run)")
    return out


def log_grid(grid: Grid, out: Path, names: list[str]) -> None:
    """The grid's settings, every plot written outside ``runs/`` and ``results.csv`` to the trackers."""
    with Loggers(names, out, grid.name) as log:
        log.log_config({"grid": grid.name, "methods": list(grid.methods), "seeds": list(grid.seeds),
                        "axes": grid.axes, "settings": grid.settings})
        for plot in sorted(out.rglob("*.png")):
            if plot.relative_to(out).parts[0] not in ("runs", "wandb", "mlruns", "tensorboard"):
                log.log_image(plot)
        log.log_table(out / "results.csv")


def _describe_result(summary: dict) -> str:
    key = summary.get("primary_metric")
    if key is None:
        return "done"
    return f"final {key} {percent(summary.get(f'final_{key}'))}, best {percent(summary.get(f'best_{key}'))}"


def run_state(run: GridRun, out: Path) -> str:
    """``"new"``, ``"partial"`` or ``"finished"``, read from ``out/runs/<name>/`` without loading data.

    A directory holding a different configuration (other than in epochs, device or progress) is
    a :class:`SelfAdaptError`, as is one with more epochs than the grid asks for.
    """
    folder = Path(out) / "runs" / run.name
    done = len(read_metrics(folder / "metrics.jsonl"))
    if not done and not (folder / "checkpoint.pt").is_file():
        return "new"
    try:
        stored = json.loads((folder / "config.json").read_text())
    except (OSError, json.JSONDecodeError, UnicodeDecodeError) as e:
        raise SelfAdaptError(f"{folder / 'config.json'} is missing or corrupt ({e}); delete that run directory") \
            from None
    differs = differing_settings(stored, run.config.to_dict())
    if differs:
        raise SelfAdaptError(f"{folder} holds a different run (it differs in {', '.join(differs)}); "
                             "use another --out or delete that directory")
    epochs = run.config.engine.epochs
    if done > epochs:
        raise SelfAdaptError(f"{folder} has {done} epochs, the grid asks for {epochs}; "
                             "use another --out or delete that directory")
    return "finished" if done == epochs and (folder / "summary.json").is_file() else "partial"


def _train_all(todo, out: Path, workers: int, threads: int, total: int):
    """Yield ``(position, run, summary or error message)`` as runs finish; one worker trains in-process.

    With several GPUs visible, each run on ``cuda`` (or ``auto``) goes to the GPU with the fewest
    runs in flight.
    """
    if workers == 1:
        for i, run in todo:
            yield i, run, _train_one(run.name, run.config.to_dict(), str(out / "runs" / run.name), f"[{i}/{total}]")
        return
    queue = todo[::-1]
    running = {}
    in_flight = [0] * torch.cuda.device_count()
    # Runs are handed out one per free worker (none wait in the pool's queue), so after Ctrl-C the
    # pool only waits for the runs in progress, which the same signal interrupts.
    with ProcessPoolExecutor(max_workers=workers, mp_context=get_context("spawn"),
                             initializer=torch.set_num_threads, initargs=(threads,)) as pool:
        while queue or running:
            while queue and len(running) < workers:
                i, run = queue.pop()
                config = run.config.to_dict()
                gpu = spread_over_gpus(config["engine"]["device"], in_flight)
                if gpu is not None:
                    config["engine"]["device"] = f"cuda:{gpu}"
                    in_flight[gpu] += 1
                running[pool.submit(_train_one, run.name, config, str(out / "runs" / run.name),
                                    f"[{i}/{total}]")] = (i, run, gpu)
            for future in wait(running, return_when=FIRST_COMPLETED).done:
                i, run, gpu = running.pop(future)
                if gpu is not None:
                    in_flight[gpu] -= 1
                yield i, run, future.result()


def spread_over_gpus(device: str, in_flight: list[int]) -> int | None:
    """The GPU for the next grid run: the one with the fewest runs in flight (``in_flight[k]`` for GPU
    ``k``), where the run asks for ``cuda`` or ``auto`` and more than one GPU is visible; else ``None``
    (the run keeps its device; an explicit ``cuda:N`` or ``cpu`` is never moved).

    >>> spread_over_gpus("cuda", [1, 0, 1]), spread_over_gpus("auto", [0, 0]), spread_over_gpus("cuda:0", [0, 0])
    (1, 0, None)
    >>> spread_over_gpus("cuda", [0]), spread_over_gpus("cpu", [0, 0])
    (None, None)
    """
    if device not in ("cuda", "auto") or len(in_flight) < 2:
        return None
    return min(range(len(in_flight)), key=in_flight.__getitem__)


def _train_one(name: str, config: dict, folder: str, position: str) -> dict | str:
    """Train one run (in a pool worker when ``jobs > 1``); return its summary, or why it failed.

    A failing run (a diverged loss, a GPU out of memory) must not stop the grid; anything other
    than a :class:`SelfAdaptError` also prints its traceback, so bugs stay visible.
    """
    print(f"{position} started {name}", flush=True)
    try:
        return run_experiment(RunConfig.from_dict(config), folder, verbose=False)
    except SelfAdaptError as e:
        return str(e)
    except Exception as e:  # noqa: BLE001 (reported and recorded, then the grid goes on)
        traceback.print_exc()
        first_line = (str(e).strip().splitlines() or [""])[0]
        return f"{type(e).__name__}: {first_line}"


def _record_invocation(out: Path, grid: Grid, command: str, workers: int, threads: int, *, trained: int,
                       seconds: float) -> None:
    """Append this invocation (command, hardware, measured wall time) to ``out/bench.json``."""
    record_path = out / "bench.json"
    history = json.loads(record_path.read_text()) if record_path.is_file() else []
    device = resolve_device(grid.runs[0].config.engine.device)
    if device.startswith("cuda"):
        device = f"{device} ({torch.cuda.get_device_name(torch.device(device))})"
    history.append({
        "command": command, "grid": grid.name,
        "processor": processor_name(), "cpu_count": os.cpu_count(),
        "torch": torch.__version__, "torch_threads_per_run": threads, "parallel_runs": workers, "device": device,
        "runs_trained": trained, "wall_seconds": round(seconds, 2),
        "finished_at": time.strftime("%Y-%m-%d %H:%M:%S"),
    })
    write_json(record_path, history)


def processor_name() -> str:
    """The CPU model from /proc/cpuinfo where there is one, else ``platform.processor()``."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


# --------------------------------------------------------------------------------------------
# aggregation

ID_COLUMNS = ("method", "noise", "level")
COUNT_COLUMNS = ("n_seeds", "n_seeds_expected", "missing_seeds")


def aggregate(out: str | Path) -> Path:
    """Tabulate the finished runs of the grid in ``out`` (``out/grid.toml``) and plot them.

    Writes ``results.csv`` (one row per method x axes x noise cell; every metric the runs report
    as mean and sample std over seeds, ``n/a`` below two seeds), ``results.md`` and ``plots/``.
    Runs that are missing, unfinished or failed are listed, never averaged.

    Example: ``aggregate("runs/fmnist")`` after ``run_grid(..., "runs/fmnist")``.
    """
    out = Path(out)
    if not (out / "grid.toml").is_file():
        raise SelfAdaptError(f"{out} holds no grid (no grid.toml); run `selfadapt bench GRID --out {out}` first")
    grid = load_grid(out / "grid.toml")
    finished, missing = {}, {}
    failed = json.loads((out / "failed.json").read_text()) if (out / "failed.json").is_file() else {}
    for run in grid.runs:
        folder = out / "runs" / run.name
        state = run_state(run, out)
        if state == "finished":
            finished[run.name] = (json.loads((folder / "summary.json").read_text()),
                                  read_metrics(folder / "metrics.jsonl"))
        elif run.name in failed:
            missing[run.name] = f"failed: {failed[run.name]}"
        else:
            missing[run.name] = "not started" if state == "new" else \
                f"unfinished ({len(read_metrics(folder / 'metrics.jsonl'))} of {run.config.engine.epochs} epochs)"
    rows = [_row(grid, row, kind, level, finished) for kind, level in grid.cells for row in grid.rows]
    rows = [r for r in rows if r is not None]
    metrics = _metric_keys(finished)
    _write_csv(out / "results.csv", rows, list(grid.axes), metrics)
    atomic_write_bytes(out / "results.md", _markdown(grid, out, rows, missing, finished).encode())
    _plots(grid, out / "plots", finished, rows)
    write_double_descent(grid, out, finished, rows)
    return out


def _summary_values(summary: dict) -> dict[str, float]:
    """The numbers a summary reports: final and best metrics, label-issue scores, noise, time."""
    values = {k: v for k, v in summary.items() if (k.startswith("final_") or k.startswith("best_"))
              and not k.endswith("_epoch") and isinstance(v, (int, float)) and not isinstance(v, bool)}
    for key, value in (summary.get("label_issues") or {}).items():
        if key in ("precision", "recall", "f1"):
            values[f"label_issue_{key}"] = value
    realised = (summary.get("noise") or {}).get("realised_error_rate")
    if realised is not None:
        values["realised_noise_rate"] = realised
    values["train_seconds"] = summary.get("seconds")
    return {k: v for k, v in values.items() if v is not None}


def _metric_keys(finished: dict) -> list[str]:
    keys = {}
    for summary, _ in finished.values():
        keys.update(dict.fromkeys(_summary_values(summary)))
    order = lambda k: (not k.startswith("final_"), not k.startswith("best_"), k)  # noqa: E731
    return sorted(keys, key=order)


def _row(grid: Grid, row: tuple, kind: str, level: str, finished: dict) -> dict | None:
    runs = [r for r in grid.runs if r.row == row and (r.noise, r.level) == (kind, level)]
    if not runs:
        return None
    done = [_summary_values(finished[r.name][0]) for r in runs if r.name in finished]
    method, axes = row
    out = {"method": method, "noise": kind, "level": level, **{k: v for k, v in axes},
           "n_seeds": len(done), "n_seeds_expected": len(runs),
           "missing_seeds": " ".join(str(r.seed) for r in runs if r.name not in finished)}
    for key in {k for d in done for k in d}:
        values = [d[key] for d in done if key in d]
        out[f"{key}_mean"] = statistics.fmean(values)
        out[f"{key}_std"] = statistics.stdev(values) if len(values) >= 2 else None   # sample std (ddof=1)
    return out


def _write_csv(path: Path, rows: list[dict], axes: list[str], metrics: list[str]) -> None:
    columns = [*ID_COLUMNS, *axes, *COUNT_COLUMNS, *(f"{m}_{s}" for m in metrics for s in ("mean", "std"))]
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=columns)
        writer.writeheader()
        for row in rows:
            writer.writerow({c: "n/a" if row.get(c) is None else row[c] for c in columns})
    os.replace(tmp, path)


def _row_label(method: str, axes) -> str:
    return " ".join([method, *(f"{k}={_text(v)}" for k, v in axes)])


def _primary_metrics(finished: dict) -> list[tuple[str, bool]]:
    """(metric, higher is better) of the runs' primary metrics, in first-seen order."""
    seen = {}
    for summary, _ in finished.values():
        if summary.get("primary_metric"):
            seen.setdefault(summary["primary_metric"], summary.get("higher_is_better", True))
    return list(seen.items())


def _markdown(grid: Grid, out: Path, rows: list[dict], missing: dict, finished: dict) -> str:
    history = json.loads((out / "bench.json").read_text()) if (out / "bench.json").is_file() else []
    command = history[-1]["command"] if history else f"selfadapt bench GRID --out {out}"
    lines = [f"# Benchmark grid: {grid.name}", "", f"Command: `{command}`", "",
             f"Settings: {_describe(grid.settings)}"]
    lines += [f"Settings for {m}: {_describe(v)}" for m, v in grid.method_settings.items()]
    lines += [f"Axes: {_describe(grid.axes)}" for _ in [0] if grid.axes]
    lines += [f"Seeds: {', '.join(map(str, grid.seeds))} (each sets seed, data_seed and noise_seed)", ""]
    for h in (h for h in history if h["runs_trained"]):
        lines.append(f"Hardware: {h['processor']}, {h['cpu_count']} CPUs, {h['torch_threads_per_run']} torch "
                     f"thread(s) per run, {h['parallel_runs']} run(s) at a time, device {h['device']}, "
                     f"torch {h['torch']}; {h['runs_trained']} runs trained in {h['wall_seconds']:.0f} s wall "
                     f"({h['finished_at']})")
    seconds = sum(r.get("train_seconds_mean", 0) * r["n_seeds"] for r in rows if r["n_seeds"])
    lines += ["", f"Training time summed over finished runs: {seconds:.0f} s.", "",
              "Mean ± sample std over seeds, in %; `(k/n)` marks cells with only k of n seeds finished. "
              "*Final* is the last epoch, the number to report. *Best* is the best epoch chosen on the "
              "evaluated (test) set itself, as the original code did: optimistic, not a fair model selection.", ""]
    for kind in dict.fromkeys(kind for kind, _ in grid.cells):
        levels = [level for k, level in grid.cells if k == kind]
        cell_rows = [r for r in rows if r["noise"] == kind]
        header = [_level_header(kind, level, cell_rows) for level in levels]
        for metric, _ in _primary_metrics(finished):
            for which, title in (("final", "final (last epoch)"), ("best", "best epoch (optimistic)")):
                lines += [f"## {_kind_title(kind)}: {metric}, {title}", "", "| run | " + " | ".join(header) + " |",
                          "|---|" + "---|" * len(levels)]
                for method, axes in grid.rows:
                    cells = [_cell(next((r for r in cell_rows if r["method"] == method and r["level"] == level
                                         and all(r.get(k) == v for k, v in axes)), None), f"{which}_{metric}")
                             for level in levels]
                    lines.append(f"| {_row_label(method, axes)} | " + " | ".join(cells) + " |")
                lines.append("")
        issue_rows = [r for r in cell_rows if r.get("label_issue_f1_mean") is not None]
        if issue_rows:
            lines += [f"## {_kind_title(kind)}: label errors flagged by the corrected targets "
                      "(precision / recall / F1, %)", "",
                      "| run | level | precision | recall | F1 |", "|---|---|---|---|---|"]
            lines += [f"| {_row_label(r['method'], [(k, r[k]) for k in grid.axes if k in r])} | {r['level']} | "
                      f"{percent(r['label_issue_precision_mean'], sign='')} | "
                      f"{percent(r['label_issue_recall_mean'], sign='')} | "
                      f"{percent(r['label_issue_f1_mean'], sign='')} |" for r in issue_rows]
            lines.append("")
    lines += ["## Missing or unfinished runs", ""]
    lines += [f"- {name}: {why}" for name, why in missing.items()] or ["None: every run finished."]
    return "\n".join(lines) + "\n"


def _describe(values: dict) -> str:
    return ", ".join(f"{k}={json.dumps(v)}" for k, v in values.items()) or "defaults"


def _kind_title(kind: str) -> str:
    return "clean labels" if kind == "none" else f"{kind} noise"


def _level_header(kind: str, level: str, rows: list[dict]) -> str:
    """Column title: the rate or variant and the measured share of wrong labels (corrupted images)."""
    if kind == "none":
        return "clean"
    realised = next((r["realised_noise_rate_mean"] for r in rows
                     if r["level"] == level and r.get("realised_noise_rate_mean") is not None), None)
    what = "images corrupted" if kind in INPUT_CORRUPTIONS else "labels wrong"
    return level if realised is None else f"{level} ({100 * realised:.1f}% {what})"


def _cell(row: dict | None, key: str) -> str:
    if row is None or row.get(f"{key}_mean") is None:
        return "n/a"
    mean, std = row[f"{key}_mean"], row.get(f"{key}_std")
    text = f"{100 * mean:.2f} ± " + ("n/a" if std is None else f"{100 * std:.2f}")
    return text if row["n_seeds"] == row["n_seeds_expected"] else f"{text} ({row['n_seeds']}/{row['n_seeds_expected']})"


MEMORISATION_STYLES = {"memorised_share": "-", "predicted_clean_share": "--", "corrected_target_share": ":"}
MEMORISATION_LABELS = {"memorised_share": "predicted as its wrong label",
                       "predicted_clean_share": "predicted as its clean label",
                       "corrected_target_share": "corrected target is the clean label"}

# The robust-overfitting view: clean and PGD accuracy on the same test images, per epoch.
ROBUST_STYLES = {"pgd_clean_accuracy": "--", "pgd_accuracy": "-"}
ROBUST_LABELS = {"pgd_clean_accuracy": "clean", "pgd_accuracy": "PGD"}


def _plots(grid: Grid, folder: Path, finished: dict, rows: list[dict]) -> None:
    """Per noise cell: each primary metric per epoch by run row, the memorisation curves, and clean
    against PGD accuracy (robust overfitting); per numeric axis: the final primary metric against the axis."""
    from selfadapt.plots import plot_curves, plot_memorisation, plot_metric_against

    folder.mkdir(parents=True, exist_ok=True)
    primaries = _primary_metrics(finished)
    for kind, level in grid.cells:
        by_row = {_row_label(*row): [finished[r.name][1] for r in grid.runs
                                     if r.row == row and (r.noise, r.level) == (kind, level) and r.name in finished]
                  for row in grid.rows}
        by_row = {label: runs for label, runs in by_row.items() if runs}
        if not by_row:
            continue
        title = f"{grid.name}: {kind}" + ("" if kind == "none" else f" {level}")
        cell = _cell_name(kind, level)
        for metric, _ in primaries:
            plot_curves({label: mean_curve(runs, metric) for label, runs in by_row.items()},
                        folder / f"{_file_word(metric)}-{cell}.png", ylabel=f"{metric} (mean over seeds)", title=title)
        curves = {label: {key: mean_curve(runs, key) for key in MEMORISATION_STYLES} for label, runs in by_row.items()}
        if any(v is not None for c in curves.values() for curve in c.values() for v in curve):
            plot_memorisation(curves, MEMORISATION_STYLES, MEMORISATION_LABELS,
                              folder / f"memorisation-{cell}.png", title=title)
        robust = {label: {key: mean_curve(runs, key) for key in ROBUST_STYLES} for label, runs in by_row.items()}
        if any(v is not None for c in robust.values() for v in c["pgd_accuracy"]):
            plot_memorisation(robust, ROBUST_STYLES, ROBUST_LABELS, folder / f"robust-overfitting-{cell}.png",
                              title=title, ylabel="test accuracy (mean over seeds)")
    for axis, values in grid.axes.items():
        if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
            continue
        for metric, _ in primaries:
            series = {}
            for r in rows:
                if r.get(axis) is None or r.get(f"final_{metric}_mean") is None:
                    continue
                others = [(k, r[k]) for k in grid.axes if k != axis and r.get(k) is not None]
                label = " ".join([_row_label(r["method"], others), _cell_name(r["noise"], r["level"])])
                series.setdefault(label, []).append((r[axis], r[f"final_{metric}_mean"], r.get(f"final_{metric}_std")))
            if series:
                plot_metric_against(series, folder / f"{_file_word(metric)}-vs-{axis}.png", xlabel=axis,
                                    ylabel=f"final {metric} (mean ± std over seeds)", title=grid.name)


def _file_word(metric: str) -> str:
    """``test_accuracy`` -> ``accuracy`` (file names of the original plots), others unchanged."""
    return "accuracy" if metric == "test_accuracy" else metric.replace("_", "-")


def mean_curve(runs: list[list[dict]], key: str) -> list[float | None]:
    """Per epoch, the mean of ``key`` over the runs that logged it (None where none did)."""
    length = max(len(metrics) for metrics in runs)
    out = []
    for epoch in range(length):
        values = [m[epoch][key] for m in runs if epoch < len(m) and m[epoch].get(key) is not None]
        out.append(statistics.fmean(values) if values else None)
    return out

