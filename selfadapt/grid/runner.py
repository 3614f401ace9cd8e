"""Running a grid: every run of a grid file trained into ``OUT/runs/``, in parallel processes,
spread over the visible GPUs, or as cluster jobs (:mod:`selfadapt.grid.launchers`); then
aggregated (:mod:`selfadapt.grid.aggregate`). Finished runs are skipped, partial ones resume.

Example: ``run_grid("docs/grids/fashion-mnist-cpu.toml", "runs/fmnist", jobs=2)``.
"""
from __future__ import annotations

import json
import multiprocessing
import os
import shlex
import signal
import time
import traceback
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from multiprocessing import get_context
from pathlib import Path

import torch

from selfadapt.config.provenance import describe_device, processor_name, provenance
from selfadapt.config.run import RunConfig
from selfadapt.engine.lock import DirectoryLock
from selfadapt.engine.loggers import Loggers, check_available
from selfadapt.engine.rundir import atomic_write_bytes, check_out_path, write_json
from selfadapt.errors import SelfAdaptError
from selfadapt.experiment import resolve_device, run_experiment
from selfadapt.grid.aggregate import aggregate
from selfadapt.grid.launchers import JobResources, executor, train_as_jobs
from selfadapt.grid.presets import preset_path
from selfadapt.grid.spec import Grid, load_grid
from selfadapt.grid.state import run_state
from selfadapt.summary import percent


def run_grid(path: str | Path, out: str | Path, *, jobs: int = 1, launcher: str = "local",
             resources=None, reports=(), logger: list[str] | None = None) -> Path:
    """Train every run of grid ``path`` (a file or a preset's name) into ``out/runs/``, then
    aggregate; return ``out``.

    Finished runs are skipped without loading data, partial ones resume from their checkpoint.
    ``jobs > 1`` trains that many runs at once in spawned processes, splitting torch's threads
    between them (one each on two cores). A run that fails (say, a diverged loss) does not stop
    the others; the grid raises a :class:`SelfAdaptError` after aggregating, and results.md lists it.
    ``out`` belongs to this process while it runs (a second ``selfadapt bench`` on it is refused).

    ``launcher="slurm"`` (or ``"submitit-local"``) sends each run as a job through submitit with
    ``resources`` (:class:`selfadapt.grid.launchers.JobResources`) instead; see :mod:`selfadapt.grid.launchers`.
    ``reports`` are the applications' tables and figures (:class:`selfadapt.grid.reports.GridReport`)
    written beside the generic ones.

    ``logger`` (else the grid's ``logger`` setting) names the trackers every run and the grid's
    plots and results table go to (:mod:`selfadapt.engine.loggers`); MLflow's store is
    ``out/mlruns`` for all of them unless ``MLFLOW_TRACKING_URI`` is set.

    Example: ``run_grid("docs/grids/fashion-mnist-cpu.toml", "runs/fmnist", jobs=2)``.
    """
    if jobs < 1:
        raise SelfAdaptError(f"--jobs must be >= 1, got {jobs}")
    started = time.perf_counter()
    path = preset_path(str(path))
    grid = load_grid(path, None if logger is None else {"logger": logger})
    loggers = grid.settings.get("logger", [])
    check_available(loggers)
    for device in sorted({run.config.engine.device for run in grid.runs}):
        resolve_device(device)
    out = Path(out)
    check_out_path(out)
    lock = DirectoryLock(out, "grid output")
    if out.is_dir():
        lock.acquire()               # before reading what the runs hold
    try:
        states = {run.name: run_state(run, out) for run in grid.runs}   # every conflict raised before any training
        cluster = _cluster(launcher, out, resources)
        if "mlflow" in loggers:  # the runs and the grid in one store (spawned workers inherit it)
            os.environ.setdefault("MLFLOW_TRACKING_URI", (out / "mlruns").resolve().as_uri())
        (out / "runs").mkdir(parents=True, exist_ok=True)
        if not lock.held:
            lock.acquire()
        lock.announce()
        atomic_write_bytes(out / "grid.toml", grid.path.read_bytes())
        command = f"selfadapt bench {shlex.quote(str(path))} --out {shlex.quote(str(out))}"
        command += (f" --jobs {jobs}" if jobs > 1 else "") + (f" --launcher {launcher}" if launcher != "local" else "")
        failed = _train_grid(grid, out, _todo(grid, states), jobs, cluster, command, started)
        aggregate(out, reports)
        if loggers:
            log_grid(grid, out, loggers)
    finally:
        lock.release()
    _raise_failures(failed, grid, out)
    return out


def _train_grid(grid: Grid, out: Path, todo: list, jobs: int, cluster, command: str, started: float) -> dict:
    """Train the runs left, say how each ends, record the invocation; the failed runs' messages."""
    workers = min(jobs, max(len(todo), 1))
    threads = max(1, torch.get_num_threads() // workers)
    results = _train_all(todo, out, workers, threads, len(grid.runs)) if cluster is None else \
        train_as_jobs(todo, out, cluster, len(grid.runs), _train_one)
    failed = _collect(results, len(grid.runs))
    write_json(out / "failed.json", failed)
    _record_invocation(out, grid, command, workers, threads, trained=len(todo), seconds=time.perf_counter() - started)
    return failed


def _raise_failures(failed: dict, grid: Grid, out: Path) -> None:
    if failed:
        name, message = next(iter(failed.items()))
        same = sum(m == message for m in failed.values())
        raise SelfAdaptError(f"{len(failed)} of {len(grid.runs)} runs failed; {name}"
                             + (f" and {same - 1} more" if same > 1 else "") + f": {message} "
                             f"({out / 'results.md'} lists every failed run)")


def _cluster(launcher: str, out: Path, resources):
    """The submitit executor of a cluster launcher (checked before anything is written), or None."""
    if launcher == "local":
        return None
    return executor(launcher, out / "submitit", resources or JobResources())


def _todo(grid: Grid, states: dict) -> list[tuple[int, object]]:
    """``(position, run)`` of the runs left to train; the finished ones are said and skipped."""
    todo = []
    for i, run in enumerate(grid.runs, 1):
        if states[run.name] == "finished":
            print(f"[{i}/{len(grid.runs)}] skipped {run.name} (finished)", flush=True)
        else:
            todo.append((i, run))
    return todo


def _collect(results, total: int) -> dict[str, str]:
    """Say how each run ended as it ends; return the failed runs' messages by name."""
    failed = {}
    for i, run, result in results:
        if isinstance(result, str):
            failed[run.name] = result
            print(f"[{i}/{total}] failed {run.name}: {result}", flush=True)
        else:
            print(f"[{i}/{total}] finished {run.name}: {_describe_result(result)}, "
                  f"{result['seconds']:.1f} s", flush=True)
    return failed


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
    # Runs are handed out one per free worker (none wait in the pool's queue). Workers ignore Ctrl-C;
    # on Ctrl-C this process stops them with SIGTERM, which the engine turns into a clean stop.
    with ProcessPoolExecutor(max_workers=workers, mp_context=get_context("spawn"),
                             initializer=_worker_setup, initargs=(threads,)) as pool:
        try:
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
        except KeyboardInterrupt:
            for process in list(pool._processes.values()):
                process.terminate()
            pool.shutdown(wait=True, cancel_futures=True)
            raise KeyboardInterrupt("the grid stopped; the runs in progress kept their last checkpoint; run the "
                                    "same command again to go on") from None


def _worker_setup(threads: int) -> None:
    """A pool worker: its share of torch's threads, and Ctrl-C left to the grid's process."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    torch.set_num_threads(threads)


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
    except KeyboardInterrupt as e:
        if multiprocessing.parent_process() is None:
            raise                     # in the grid's own process: the grid stops
        return f"interrupted: {e}"
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
    history.append({
        "command": command, "grid": grid.name, "provenance": provenance(device),
        "processor": processor_name(), "cpu_count": os.cpu_count(),
        "torch": torch.__version__, "torch_threads_per_run": threads, "parallel_runs": workers,
        "device": describe_device(device),
        "runs_trained": trained, "wall_seconds": round(seconds, 2),
        "finished_at": time.strftime("%Y-%m-%d %H:%M:%S"),
    })
    write_json(record_path, history)
