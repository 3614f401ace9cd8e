"""Grid runs as cluster jobs through submitit (the ``slurm`` extra): one job per run.

``selfadapt bench GRID --out OUT --launcher slurm --partition gpu --gpus-per-run 1 --time-limit 2880``
submits every run of the grid that is not finished as one Slurm job, waits for them, and
aggregates as a local grid does. A run that a time limit stopped has its checkpoint: the next
call submits it again and it resumes. ``--launcher submitit-local`` runs the same jobs as local
processes through submitit's local executor (how the tests check this path). Job logs go to
``OUT/submitit/``.

Submitted jobs keep running when the waiting command is interrupted: wait for them to end
(``squeue``) before calling again, or two jobs train the same run.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from selfadapt.errors import SelfAdaptError

LAUNCHERS = ("local", "slurm", "submitit-local")


@dataclass(frozen=True)
class JobResources:
    """What each job asks the cluster for; ``partition`` only applies to Slurm."""

    partition: str | None = None
    gpus_per_run: int = 1
    cpus_per_run: int = 8
    time_limit_min: int = 24 * 60

    def __post_init__(self):
        if self.gpus_per_run < 0:
            raise SelfAdaptError(f"--gpus-per-run must be >= 0, got {self.gpus_per_run}")
        if self.cpus_per_run < 1:
            raise SelfAdaptError(f"--cpus-per-run must be >= 1, got {self.cpus_per_run}")
        if self.time_limit_min < 1:
            raise SelfAdaptError(f"--time-limit must be >= 1 minute, got {self.time_limit_min}")


def executor(launcher: str, folder: Path, resources: JobResources):
    """A submitit executor for ``launcher`` (``slurm`` or ``submitit-local``) writing logs under ``folder``."""
    if launcher not in LAUNCHERS[1:]:
        raise SelfAdaptError(f"unknown launcher {launcher!r}; choose from {', '.join(LAUNCHERS)}")
    try:
        import submitit
    except ImportError:
        raise SelfAdaptError("--launcher slurm needs submitit: pip install 'selfadapt[slurm]'") from None
    cluster = "slurm" if launcher == "slurm" else "local"
    if cluster == "slurm" and submitit.AutoExecutor.which() != "slurm":
        raise SelfAdaptError("--launcher slurm: no Slurm here (sbatch not found); "
                             "use --launcher local or submitit-local")
    ex = submitit.AutoExecutor(folder=folder, cluster=cluster)
    params = {"timeout_min": resources.time_limit_min, "gpus_per_node": resources.gpus_per_run,
              "cpus_per_task": resources.cpus_per_run, "tasks_per_node": 1, "nodes": 1}
    if resources.partition:
        params["slurm_partition"] = resources.partition
    ex.update_parameters(**params)
    return ex


def train_as_jobs(todo, out: Path, ex, total: int, train_one):
    """With the submitit executor ``ex``, submit ``train_one(name, config, folder, position)`` for each ``(position, run)`` of ``todo``;
    yield ``(position, run, summary or error message)`` as the jobs end (a job that dies, say at
    its time limit, yields why)."""
    jobs = []
    for i, run in todo:
        ex.update_parameters(name=run.name)
        jobs.append((i, run, ex.submit(train_one, run.name, run.config.to_dict(), str(out / "runs" / run.name),
                                       f"[{i}/{total}]")))
    for i, run, job in jobs:
        print(f"[{i}/{total}] submitted {run.name} as job {job.job_id}", flush=True)
    for i, run, job in jobs:
        try:
            result = job.result()
        except Exception as e:  # noqa: BLE001 (a killed or failed job: reported, the grid goes on)
            first_line = (str(e).strip().splitlines() or [""])[0]
            result = f"job {job.job_id} ended without a result: {type(e).__name__}: {first_line}"
        yield i, run, result
