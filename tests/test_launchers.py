"""Grid runs as submitit jobs: the same results as the local pool, resubmission of unfinished runs."""
import json
import os
import subprocess
import sys

import pytest

from selfadapt.apps.registry import grid_reports
from selfadapt.errors import SelfAdaptError
from selfadapt.grid import runner
from selfadapt.grid.launchers import JobResources


def run_grid(*args, **kwargs):
    """The grid as `selfadapt bench` runs it: with every application's tables and figures."""
    return runner.run_grid(*args, reports=grid_reports(), **kwargs)

pytest.importorskip("submitit")

GRID = """
name = "tiny-jobs"
methods = ["ce"]
seeds = [0]
[[noise]]
kind = "symmetric"
rates = [0.4]
[settings]
dataset = "digits"
model = "mlp"
width = 32
epochs = {epochs}
batch_size = 128
lr = 0.05
schedule = "constant"            # so that a run extended from 2 to 3 epochs matches one of 3
augment = "none"
device = "cpu"
"""
RUNS = ("ce-symmetric-0.4-s0",)
ONE_CORE = JobResources(gpus_per_run=0, cpus_per_run=1, time_limit_min=10)


def grid_file(tmp_path, epochs):
    path = tmp_path / f"jobs-{epochs}.toml"
    path.write_text(GRID.format(epochs=epochs))
    return path


def curves(out):
    return {name: [(m["train_loss"], m["test_accuracy"]) for m in map(json.loads, (
        out / "runs" / name / "metrics.jsonl").read_text().splitlines())] for name in RUNS}


@pytest.mark.slow
def test_submitit_jobs_match_local_runs_and_unfinished_runs_are_resubmitted(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    local = run_grid(grid_file(tmp_path, 3), tmp_path / "local")
    jobs = tmp_path / "jobs"
    run_grid(grid_file(tmp_path, 2), jobs, launcher="submitit-local", resources=ONE_CORE)
    first = capsys.readouterr().out
    assert first.count("submitted") == 1 and any((jobs / "submitit").glob("*_log.out"))
    assert {k: v[:2] for k, v in curves(local).items()} == curves(jobs)
    # a larger budget leaves the run unfinished (as a time limit would): the next call submits it again, it resumes
    run_grid(grid_file(tmp_path, 3), jobs, launcher="submitit-local", resources=ONE_CORE)
    assert capsys.readouterr().out.count("submitted") == 1
    assert curves(local) == curves(jobs)
    assert "--launcher submitit-local" in (jobs / "results.md").read_text()
    run_grid(grid_file(tmp_path, 3), jobs, launcher="submitit-local", resources=ONE_CORE)
    assert "submitted" not in capsys.readouterr().out   # finished runs are not submitted again


@pytest.mark.slow
def test_bad_launcher_settings_are_one_line(tmp_path):
    with pytest.raises(SelfAdaptError, match="--gpus-per-run must be >= 0"):
        JobResources(gpus_per_run=-1)
    with pytest.raises(SelfAdaptError, match="--time-limit must be >= 1 minute"):
        JobResources(time_limit_min=0)
    env = {**os.environ, "PATH": os.path.dirname(sys.executable)}   # no sbatch on this PATH
    result = subprocess.run([sys.executable, "-m", "selfadapt", "bench", str(grid_file(tmp_path, 2)), "--out",
                             str(tmp_path / "out"), "--launcher", "slurm"], capture_output=True, text=True, env=env)
    assert result.returncode == 2 and "no Slurm here" in result.stderr and "Traceback" not in result.stderr
