"""Running a grid: every run of a grid file trained into ``OUT/runs/``, in parallel processes,
spread over the visible GPUs, or as cluster jobs (:mod:`selfadapt.grid.launchers`); then
aggregated (:mod:`selfadapt.grid.aggregate`). Finished runs are skipped, partial ones resume.

Example: ``run_grid("docs/grids/fashion-mnist-cpu.toml", "runs/fmnist", jobs=2)``.
"""
from __future__ import annotations

import json
import os
import shlex
import time
import traceback
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from multiprocessing import get_context
from pathlib import Path

import torch

from selfadapt.config.provenance import describe_device, processor_name, provenance
from selfadapt.config.run import RunConfig
from selfadapt.engine.rundir import atomic_write_bytes, write_json
from selfadapt.errors import SelfAdaptError
from selfadapt.experiment import resolve_device, run_experiment
from selfadapt.grid.aggregate import aggregate
from selfadapt.grid.presets import preset_path
from selfadapt.grid.spec import Grid, load_grid
from selfadapt.grid.state import run_state
from selfadapt.summary import percent


def run_grid(path: str | Path, out: str | Path, *, jobs: int = 1, launcher: str = "local",
             resources=None, reports=()) -> Path:
    """Train every run of grid ``path`` into ``out/runs/``, then :func:`aggregate`; return ``out``.

    Finished runs are skipped without loading data, partial ones resume from their checkpoint.
    ``jobs > 1`` trains that many runs at once in spawned processes, splitting torch's threads
    between them (one each on two cores). A run that fails (say, a diverged loss) does not stop
    the others; the grid raises a :class:`SelfAdaptError` after aggregating, and results.md lists it.

    ``launcher="slurm"`` (or ``"submitit-local"``) sends each run as a job through submitit with
    ``resources`` (:class:`selfadapt.grid.launchers.JobResources`) instead; see :mod:`selfadapt.grid.launchers`.
    ``reports`` are the applications' tables and figures (:class:`selfadapt.grid.reports.GridReport`)
    written beside the generic ones.

    Example: ``run_grid("docs/grids/fashion-mnist-cpu.toml", "runs/fmnist", jobs=2)``.
    """
    if jobs < 1:
        raise SelfAdaptError(f"--jobs must be >= 1, got {jobs}")
    started = time.perf_counter()
    path = preset_path(str(path))
    grid = load_grid(path)
    for device in sorted({run.config.engine.device for run in grid.runs}):
        resolve_device(device)
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise SelfAdaptError(f"--out {out} is a file, not a directory")
    states = {run.name: run_state(run, out) for run in grid.runs}   # every conflict raised before any training
    if launcher != "local":
        from selfadapt.grid.launchers import JobResources, executor, train_as_jobs

        cluster = executor(launcher, out / "submitit", resources or JobResources())
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
    aggregate(out, reports)
    if failed:
        name, message = next(iter(failed.items()))
        same = sum(m == message for m in failed.values())
        raise SelfAdaptError(f"{len(failed)} of {len(grid.runs)} runs failed; {name}"
                             + (f" and {same - 1} more" if same > 1 else "") + f": {message} "
                             f"({out / 'results.md'} lists every failed run)")
    return out


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
    history.append({
        "command": command, "grid": grid.name, "provenance": provenance(device),
        "processor": processor_name(), "cpu_count": os.cpu_count(),
        "torch": torch.__version__, "torch_threads_per_run": threads, "parallel_runs": workers,
        "device": describe_device(device),
        "runs_trained": trained, "wall_seconds": round(seconds, 2),
        "finished_at": time.strftime("%Y-%m-%d %H:%M:%S"),
    })
    write_json(record_path, history)
