"""Benchmark grids: methods x noise settings x seeds from one small TOML file, run and tabulated.

``selfadapt bench GRID --out OUT [--jobs N]`` calls :func:`run_grid`. A grid file:

```toml
name = "fashion-mnist-cpu"
methods = ["ce", "sat", "gce"]
seeds = [0, 1, 2]            # each seed sets seed, data_seed and noise_seed of a run
[[noise]]
kind = "symmetric"
rates = [0.2, 0.4]
[[noise]]
kind = "human"               # CIFAR-N: label sets in place of rates
variants = ["worse", "aggre"]
[settings]                   # RunConfig fields shared by every run
dataset = "fashion-mnist"
epochs = 30
[method_settings.sat]        # per-method RunConfig fields; method_options merge with the shared ones
sat_start_epoch = 10
```

Every run trains into ``OUT/runs/<method>-<kind>-<rate or variant>-s<seed>/`` (a normal run
directory: a rerun skips finished runs and resumes partial ones), then :func:`aggregate` writes
``OUT/results.csv``, ``OUT/results.md`` and ``OUT/plots/``.
"""
from __future__ import annotations

import csv
import dataclasses
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

from selfadapt.data.corruption import CORRUPTIONS, HUMAN_FILES, HUMAN_VARIANTS, INPUT_CORRUPTIONS
from selfadapt.errors import SelfAdaptError
from selfadapt.experiment import RunConfig, resolve_device, run_experiment, validate
from selfadapt.objectives.registry import OBJECTIVES
from selfadapt.rundir import atomic_write_bytes, differing_settings, write_json

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

GRID_KEYS = ("name", "methods", "seeds", "noise", "settings", "method_settings")
NOISE_KEYS = ("kind", "rates", "variants")
# The grid sets these itself, per run: a [settings] entry for them would be silently overridden.
GRID_FIELDS = ("method", "noise", "noise_rate", "noise_variant", "seed", "data_seed", "noise_seed", "progress")
_TYPES = {"str": (str,), "int": (int,), "float": (int, float), "bool": (bool,), "dict": (dict,), "list[int]": (list,),
          "None": ()}


@dataclass(frozen=True)
class GridRun:
    """One cell of the grid for one seed; ``level`` is the rate (``"0.4"``) or CIFAR-N variant."""

    name: str
    method: str
    noise: str
    level: str
    seed: int
    config: RunConfig


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
    settings: dict
    method_settings: dict
    runs: tuple[GridRun, ...]


def load_grid(path: str | Path) -> Grid:
    """Read, check and expand a grid file; any problem is a one-line :class:`SelfAdaptError`.

    The device is not checked here (a grid written for CUDA can be aggregated anywhere);
    :func:`run_grid` checks it before training.
    """
    path = Path(path)
    if not path.is_file():
        raise SelfAdaptError(f"grid file {path} does not exist")
    try:
        spec = tomllib.loads(path.read_text())
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
        raise SelfAdaptError(f"grid file {path} is not valid TOML: {e}") from None
    where = f"grid {path}"
    _no_unknown(spec, GRID_KEYS, where)
    name = spec.get("name", path.stem)
    if not isinstance(name, str) or not name:
        raise SelfAdaptError(f"{where}: name must be a non-empty string")
    methods = _unique_list(spec, "methods", str, where)
    for method in methods:
        if method not in OBJECTIVES:
            raise SelfAdaptError(f"{where}: unknown method {method!r}; choose from {', '.join(sorted(OBJECTIVES))}")
    seeds = _unique_list(spec, "seeds", int, where)
    settings = _run_fields(spec.get("settings", {}), f"{where}, [settings]")
    method_settings = spec.get("method_settings", {})
    if not isinstance(method_settings, dict):
        raise SelfAdaptError(f"{where}: method_settings must be a table of [method_settings.<method>] tables")
    for method, values in method_settings.items():
        if method not in OBJECTIVES:   # a known method not in `methods` is allowed: trimming a grid is one edit
            raise SelfAdaptError(f"{where}: [method_settings.{method}] names an unknown method; "
                                 f"choose from {', '.join(sorted(OBJECTIVES))}")
        _run_fields(values, f"{where}, [method_settings.{method}]")
    cells = _noise_cells(spec.get("noise"), settings.get("dataset", RunConfig.dataset), where)
    runs = []
    for seed in seeds:
        for kind, level in cells:
            for method in methods:
                own = method_settings.get(method, {})
                values = {**settings, **own, "method": method, "noise": kind, "seed": seed, "data_seed": seed,
                          "noise_seed": seed, "progress": False,
                          "method_options": {**settings.get("method_options", {}), **own.get("method_options", {})}}
                if kind == "human":
                    values["noise_variant"] = level
                elif kind != "none":
                    values["noise_rate"] = float(level)
                config = RunConfig.from_dict(values)
                validate(dataclasses.replace(config, device="cpu"))
                runs.append(GridRun(_run_name(method, kind, level, seed), method, kind, level, seed, config))
    return Grid(name, path, tuple(methods), tuple(seeds), tuple(cells), settings, method_settings, tuple(runs))


def _no_unknown(table: dict, known, where: str) -> None:
    unknown = sorted(set(table) - set(known))
    if unknown:
        raise SelfAdaptError(f"{where}: unknown key(s) {', '.join(unknown)}; allowed: {', '.join(known)}")


def _unique_list(spec: dict, key: str, kind: type, where: str) -> list:
    values = spec.get(key)
    if (not isinstance(values, list) or not values
            or not all(isinstance(v, kind) and not isinstance(v, bool) for v in values)):
        raise SelfAdaptError(f"{where}: {key} must be a non-empty list of {kind.__name__}s, got {values!r}")
    if len(set(values)) != len(values):
        raise SelfAdaptError(f"{where}: {key} lists a value twice: {values!r}")
    return values


def _run_fields(values, where: str) -> dict:
    """Check a table of RunConfig fields: known names, right types, none the grid sets itself."""
    if not isinstance(values, dict):
        raise SelfAdaptError(f"{where} must be a table of RunConfig fields")
    types = {f.name: f.type for f in dataclasses.fields(RunConfig)}
    for key, value in values.items():
        if key in GRID_FIELDS:
            raise SelfAdaptError(f"{where}: {key} is set by the grid itself (methods, [[noise]], seeds)")
        if key not in types:
            raise SelfAdaptError(f"{where}: unknown setting {key!r}; see selfadapt.experiment.RunConfig")
        allowed = tuple(t for part in str(types[key]).split("|") for t in _TYPES[part.strip()])
        if not isinstance(value, allowed) or (isinstance(value, bool) and bool not in allowed):
            raise SelfAdaptError(f"{where}: {key} must be {types[key]}, got {value!r}")
    return values


def _noise_cells(noise, dataset: str, where: str) -> list[tuple[str, str]]:
    if not isinstance(noise, list) or not noise or not all(isinstance(n, dict) for n in noise):
        raise SelfAdaptError(f"{where}: needs at least one [[noise]] table (kind = \"none\" for clean labels)")
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
            levels = [f"{float(r):g}" for r in rates]
        for level in levels:
            if (kind, level) in cells:
                raise SelfAdaptError(f"{where}: noise {kind} {level} is listed twice")
            cells.append((kind, level))
    return cells


def _run_name(method: str, kind: str, level: str, seed: int) -> str:
    return f"{method}-none-s{seed}" if kind == "none" else f"{method}-{kind}-{level}-s{seed}"


def _cell_name(kind: str, level: str) -> str:
    return kind if kind == "none" else f"{kind}-{level}"


# --------------------------------------------------------------------------------------------
# running


def run_grid(path: str | Path, out: str | Path, *, jobs: int = 1) -> Path:
    """Train every run of grid ``path`` into ``out/runs/``, then :func:`aggregate`; return ``out``.

    Finished runs are skipped without loading data, partial ones resume from their checkpoint.
    ``jobs > 1`` trains that many runs at once in spawned processes, splitting torch's threads
    between them (one each on two cores). A run that fails (say, a diverged loss) does not stop
    the others; the grid raises a :class:`SelfAdaptError` after aggregating, and results.md lists it.

    Example: ``run_grid("docs/grids/fashion-mnist-cpu.toml", "runs/fmnist", jobs=2)``.
    """
    if jobs < 1:
        raise SelfAdaptError(f"--jobs must be >= 1, got {jobs}")
    started = time.perf_counter()
    grid = load_grid(path)
    for device in sorted({run.config.device for run in grid.runs}):
        resolve_device(device)
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise SelfAdaptError(f"--out {out} is a file, not a directory")
    states = {run.name: run_state(run, out) for run in grid.runs}   # every conflict raised before any training
    (out / "runs").mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(out / "grid.toml", grid.path.read_bytes())
    todo = []
    for i, run in enumerate(grid.runs, 1):
        if states[run.name] == "finished":
            summary = json.loads((out / "runs" / run.name / "summary.json").read_text())
            print(f"[{i}/{len(grid.runs)}] skipped {run.name} (finished: final test accuracy "
                  f"{_pct(summary['final_test_accuracy'])})", flush=True)
        else:
            todo.append((i, run))
    workers = min(jobs, max(len(todo), 1))
    threads = max(1, torch.get_num_threads() // workers)
    failed = {}
    for i, run, result in _train_all(todo, out, workers, threads, len(grid.runs)):
        if isinstance(result, str):
            failed[run.name] = result
            print(f"[{i}/{len(grid.runs)}] failed {run.name}: {result}", flush=True)
        else:
            print(f"[{i}/{len(grid.runs)}] finished {run.name}: final test accuracy "
                  f"{_pct(result['final_test_accuracy'])}, best {_pct(result['best_test_accuracy'])} "
                  f"(epoch {result['best_epoch']}), {result['seconds']:.1f} s", flush=True)
    write_json(out / "failed.json", failed)
    command = f"selfadapt bench {shlex.quote(str(path))} --out {shlex.quote(str(out))}"
    command += f" --jobs {jobs}" if jobs > 1 else ""
    _record_invocation(out, grid, command, workers, threads, trained=len(todo), seconds=time.perf_counter() - started)
    aggregate(out)
    if failed:
        name, message = next(iter(failed.items()))
        same = sum(m == message for m in failed.values())
        raise SelfAdaptError(f"{len(failed)} of {len(grid.runs)} runs failed; {name}"
                             + (f" and {same - 1} more" if same > 1 else "") + f": {message} "
                             f"({out / 'results.md'} lists every failed run)")
    return out


def run_state(run: GridRun, out: Path) -> str:
    """``"new"``, ``"partial"`` or ``"finished"``, read from ``out/runs/<name>/`` without loading data.

    A directory holding a different configuration (other than in epochs, device or progress) is
    a :class:`SelfAdaptError`, as is one with more epochs than the grid asks for.
    """
    folder = Path(out) / "runs" / run.name
    if not (folder / "config.json").is_file():
        return "new"
    try:
        stored = json.loads((folder / "config.json").read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise SelfAdaptError(f"{folder / 'config.json'} is corrupt ({e}); delete that run directory") from None
    wanted = run.config.to_dict()
    differs = differing_settings(stored, wanted)
    if differs:
        raise SelfAdaptError(f"{folder} holds a different run (it differs in {', '.join(differs)}); "
                             "use another --out or delete that directory")
    done = len(_metrics(folder))
    if done > run.config.epochs:
        raise SelfAdaptError(f"{folder} has {done} epochs, the grid asks for {run.config.epochs}; "
                             "use another --out or delete that directory")
    return "finished" if done == run.config.epochs and (folder / "summary.json").is_file() else \
        "partial" if done else "new"


def _metrics(folder: Path) -> list[dict]:
    path = folder / "metrics.jsonl"
    if not path.is_file():
        return []
    try:
        return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    except json.JSONDecodeError as e:
        raise SelfAdaptError(f"{path} is corrupt ({e}); delete that run directory to retrain it") from None


def _train_all(todo, out: Path, workers: int, threads: int, total: int):
    """Yield ``(position, run, summary or error message)`` as runs finish; one worker trains in-process."""
    if workers == 1:
        for i, run in todo:
            yield i, run, _train_one(run.name, run.config.to_dict(), str(out / "runs" / run.name), f"[{i}/{total}]")
        return
    queue = todo[::-1]
    running = {}
    # Runs are handed out one per free worker (none wait in the pool's queue), so after Ctrl-C the
    # pool only waits for the runs in progress, which the same signal interrupts.
    with ProcessPoolExecutor(max_workers=workers, mp_context=get_context("spawn"),
                             initializer=torch.set_num_threads, initargs=(threads,)) as pool:
        while queue or running:
            while queue and len(running) < workers:
                i, run = queue.pop()
                running[pool.submit(_train_one, run.name, run.config.to_dict(), str(out / "runs" / run.name),
                                    f"[{i}/{total}]")] = (i, run)
            for future in wait(running, return_when=FIRST_COMPLETED).done:
                yield (*running.pop(future), future.result())


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
    device = resolve_device(grid.runs[0].config.device)
    if device.startswith("cuda"):
        device = f"{device} ({torch.cuda.get_device_name(torch.device(device))})"
    history.append({
        "command": command, "grid": grid.name,
        "processor": _processor(), "cpu_count": os.cpu_count(),
        "torch": torch.__version__, "torch_threads_per_run": threads, "parallel_runs": workers, "device": device,
        "runs_trained": trained, "wall_seconds": round(seconds, 2),
        "finished_at": time.strftime("%Y-%m-%d %H:%M:%S"),
    })
    write_json(record_path, history)


def _processor() -> str:
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


CSV_COLUMNS = (
    "method", "noise", "level", "n_seeds", "n_seeds_expected", "missing_seeds",
    "final_test_accuracy_mean", "final_test_accuracy_std",
    "best_epoch_test_accuracy_mean_optimistic", "best_epoch_test_accuracy_std_optimistic",
    "final_train_accuracy_clean_mean", "final_train_accuracy_clean_std",
    "label_issue_precision_mean", "label_issue_recall_mean", "label_issue_f1_mean",
    "realised_noise_rate_mean", "train_seconds_mean",
)


def aggregate(out: str | Path) -> Path:
    """Tabulate the finished runs of the grid in ``out`` (``out/grid.toml``) and plot them.

    Writes ``results.csv`` (one row per method x noise kind x rate/variant; accuracies as
    fractions; std is the sample std over seeds, ``n/a`` below two seeds), ``results.md`` and
    ``plots/``. Runs that are missing, unfinished or failed are listed, never averaged.

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
            finished[run.name] = (json.loads((folder / "summary.json").read_text()), _metrics(folder))
        elif run.name in failed:
            missing[run.name] = f"failed: {failed[run.name]}"
        else:
            missing[run.name] = "not started" if state == "new" else \
                f"unfinished ({len(_metrics(folder))} of {run.config.epochs} epochs)"
    rows = [_row(grid, method, kind, level, finished) for kind, level in grid.cells for method in grid.methods]
    _write_csv(out / "results.csv", rows)
    atomic_write_bytes(out / "results.md", _markdown(grid, out, rows, missing).encode())
    _plots(grid, out / "plots", finished)
    return out


def _row(grid: Grid, method: str, kind: str, level: str, finished: dict) -> dict:
    runs = [r for r in grid.runs if (r.method, r.noise, r.level) == (method, kind, level)]
    done = [finished[r.name][0] for r in runs if r.name in finished]

    def values(get):
        return [v for v in map(get, done) if v is not None]

    final = values(lambda s: s["final_test_accuracy"])
    best = values(lambda s: s["best_test_accuracy"])
    clean = values(lambda s: s.get("final_train_accuracy_clean"))
    issues = [s["label_issues"] for s in done if s.get("label_issues")]
    return {
        "method": method, "noise": kind, "level": level, "n_seeds": len(done), "n_seeds_expected": len(runs),
        "missing_seeds": " ".join(str(r.seed) for r in runs if r.name not in finished),
        "final_test_accuracy_mean": _mean(final), "final_test_accuracy_std": _std(final),
        "best_epoch_test_accuracy_mean_optimistic": _mean(best), "best_epoch_test_accuracy_std_optimistic": _std(best),
        "final_train_accuracy_clean_mean": _mean(clean), "final_train_accuracy_clean_std": _std(clean),
        "label_issue_precision_mean": _mean([i["precision"] for i in issues]),
        "label_issue_recall_mean": _mean([i["recall"] for i in issues]),
        "label_issue_f1_mean": _mean([i["f1"] for i in issues]),
        "realised_noise_rate_mean": _mean(values(lambda s: (s.get("noise") or {}).get("realised_error_rate"))),
        "train_seconds_mean": _mean(values(lambda s: s.get("seconds"))),
    }


def _mean(values: list[float]) -> float | None:
    return statistics.fmean(values) if values else None


def _std(values: list[float]) -> float | None:
    return statistics.stdev(values) if len(values) >= 2 else None   # sample std (ddof=1)


def _write_csv(path: Path, rows: list[dict]) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=CSV_COLUMNS)
        writer.writeheader()
        for row in rows:
            writer.writerow({k: "n/a" if v is None else v for k, v in row.items()})
    os.replace(tmp, path)


def _markdown(grid: Grid, out: Path, rows: list[dict], missing: dict) -> str:
    history = json.loads((out / "bench.json").read_text()) if (out / "bench.json").is_file() else []
    command = history[-1]["command"] if history else f"selfadapt bench GRID --out {out}"
    lines = [f"# Benchmark grid: {grid.name}", "", f"Command: `{command}`", "",
             f"Settings: {_describe(grid.settings)}"]
    lines += [f"Settings for {m}: {_describe(v)}" for m, v in grid.method_settings.items()]
    lines += [f"Seeds: {', '.join(map(str, grid.seeds))} (each sets seed, data_seed and noise_seed)", ""]
    trained = [h for h in history if h["runs_trained"]]
    for h in trained:
        lines.append(f"Hardware: {h['processor']}, {h['cpu_count']} CPUs, {h['torch_threads_per_run']} torch "
                     f"thread(s) per run, {h['parallel_runs']} run(s) at a time, device {h['device']}, "
                     f"torch {h['torch']}; {h['runs_trained']} runs trained in {h['wall_seconds']:.0f} s wall "
                     f"({h['finished_at']})")
    seconds = sum(r["train_seconds_mean"] * r["n_seeds"] for r in rows if r["n_seeds"])
    lines += ["", f"Training time summed over finished runs: {seconds:.0f} s.", "",
              "Test accuracy (%), mean ± sample std over seeds; `(k/n)` marks cells with only k of n seeds finished. "
              "*Final* is the last epoch, the number to report. *Best* is the best epoch chosen on the test "
              "set itself, as the original code did: optimistic, not a fair model selection.", ""]
    kinds = list(dict.fromkeys(kind for kind, _ in grid.cells))
    for kind in kinds:
        levels = [level for k, level in grid.cells if k == kind]
        cell_rows = [r for r in rows if r["noise"] == kind]
        header = [_level_header(kind, level, cell_rows) for level in levels]
        for title, key in (("final (last epoch)", "final_test_accuracy"),
                           ("best epoch, chosen on the test set (optimistic)", "best_epoch_test_accuracy")):
            suffix = "_optimistic" if key.startswith("best") else ""
            lines += [f"## {_kind_title(kind)}: {title}", "", "| method | " + " | ".join(header) + " |",
                      "|---|" + "---|" * len(levels)]
            for method in grid.methods:
                cells = [_cell(next(r for r in cell_rows if r["method"] == method and r["level"] == level), key, suffix)
                         for level in levels]
                lines.append(f"| {method} | " + " | ".join(cells) + " |")
            lines.append("")
        issue_rows = [r for r in cell_rows if r["label_issue_f1_mean"] is not None]
        if issue_rows:
            lines += [f"## {_kind_title(kind)}: label errors flagged by the corrected targets "
                      "(precision / recall / F1, %)", "",
                      "| method | level | precision | recall | F1 |", "|---|---|---|---|---|"]
            lines += [f"| {r['method']} | {r['level']} | {_pct(r['label_issue_precision_mean'], sign='')} | "
                      f"{_pct(r['label_issue_recall_mean'], sign='')} | {_pct(r['label_issue_f1_mean'], sign='')} |"
                      for r in issue_rows]
            lines.append("")
    lines += ["## Missing or unfinished runs", ""]
    lines += [f"- {name}: {why}" for name, why in missing.items()] or ["None: every run finished."]
    return "\n".join(lines) + "\n"


def _describe(values: dict) -> str:
    return ", ".join(f"{k}={json.dumps(v)}" for k, v in values.items()) or "RunConfig defaults"


def _kind_title(kind: str) -> str:
    return "clean labels" if kind == "none" else f"{kind} noise"


def _level_header(kind: str, level: str, rows: list[dict]) -> str:
    """Column title: the rate or variant and the measured share of wrong labels (corrupted images)."""
    if kind == "none":
        return "clean"
    realised = next((r["realised_noise_rate_mean"] for r in rows
                     if r["level"] == level and r["realised_noise_rate_mean"] is not None), None)
    what = "images corrupted" if kind in INPUT_CORRUPTIONS else "labels wrong"
    return level if realised is None else f"{level} ({100 * realised:.1f}% {what})"


def _cell(row: dict, key: str, suffix: str) -> str:
    mean, std = row[f"{key}_mean{suffix}"], row[f"{key}_std{suffix}"]
    if mean is None:
        return "n/a"
    text = f"{100 * mean:.2f} ± " + ("n/a" if std is None else f"{100 * std:.2f}")
    return text if row["n_seeds"] == row["n_seeds_expected"] else f"{text} ({row['n_seeds']}/{row['n_seeds_expected']})"


def _pct(value, sign: str = "%") -> str:
    return "n/a" if value is None else f"{100 * value:.2f}{sign}"


MEMORISATION_STYLES = {"memorised_share": "-", "predicted_clean_share": "--", "corrected_target_share": ":"}
MEMORISATION_LABELS = {"memorised_share": "predicted as its wrong label",
                       "predicted_clean_share": "predicted as its clean label",
                       "corrected_target_share": "SAT target corrected to clean"}


def _plots(grid: Grid, folder: Path, finished: dict) -> None:
    """Per noise cell: mean test accuracy per epoch by method, and the memorisation curves."""
    from matplotlib.lines import Line2D

    from selfadapt.plots import plot_curves, plt

    folder.mkdir(parents=True, exist_ok=True)
    for kind, level in grid.cells:
        by_method = {m: [finished[r.name][1] for r in grid.runs
                         if (r.method, r.noise, r.level) == (m, kind, level) and r.name in finished]
                     for m in grid.methods}
        by_method = {m: runs for m, runs in by_method.items() if runs}
        if not by_method:
            continue
        title = f"{grid.name}: {kind}" + ("" if kind == "none" else f" {level}")
        plot_curves({m: _mean_curve(runs, "test_accuracy") for m, runs in by_method.items()},
                    folder / f"accuracy-{_cell_name(kind, level)}.png", ylabel="test accuracy (mean over seeds)",
                    title=title)
        if not any("memorised_share" in runs[0][0] for runs in by_method.values()):
            continue
        fig, ax = plt.subplots(figsize=(7, 4.5), dpi=120)
        handles = []
        for colour, (method, runs) in enumerate(by_method.items()):
            handles.append(Line2D([], [], color=f"C{colour % 10}", label=method))
            for key, style in MEMORISATION_STYLES.items():
                points = [(i, v) for i, v in enumerate(_mean_curve(runs, key)) if v is not None]
                if points:
                    ax.plot(*zip(*points), linestyle=style, color=f"C{colour % 10}")
        handles += [Line2D([], [], color="black", linestyle=style, label=MEMORISATION_LABELS[key])
                    for key, style in MEMORISATION_STYLES.items()]
        ax.set_xlabel("epoch")
        ax.set_ylabel("share of label-corrupted samples")
        ax.set_title(title)
        ax.set_ylim(0, 1)
        ax.grid(alpha=0.3)
        ax.legend(handles=handles, fontsize=7, loc="center left", bbox_to_anchor=(1.01, 0.5))
        fig.tight_layout()
        fig.savefig(folder / f"memorisation-{_cell_name(kind, level)}.png")
        plt.close(fig)


def _mean_curve(runs: list[list[dict]], key: str) -> list[float | None]:
    """Per epoch, the mean of ``key`` over the runs that logged it (None where none did)."""
    length = max(len(metrics) for metrics in runs)
    return [_mean([m[epoch][key] for m in runs if epoch < len(m) and m[epoch].get(key) is not None])
            for epoch in range(length)]
