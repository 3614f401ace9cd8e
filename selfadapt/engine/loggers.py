"""Experiment trackers: ``--logger tensorboard,mlflow,wandb,csv`` streams a run's per-epoch metrics,
its configuration and its plots, and ``selfadapt bench`` a grid's plots and results table.

One small interface, :class:`Logger`, and one adapter per backend; a backend's package is imported
only when it is asked for, and :func:`check_available` names the extra to install before anything
is written. Only the main process logs. Where each writes (a backend's own environment variables win):

- ``tensorboard``: ``DIR/tensorboard/`` (``tensorboard --logdir runs`` shows every run below ``runs/``);
- ``mlflow``: ``$MLFLOW_TRACKING_URI``, else the file store ``DIR/mlruns``; experiment
  ``$MLFLOW_EXPERIMENT_NAME`` or ``selfadapt``; the run is named after ``DIR``;
- ``wandb``: project ``$WANDB_PROJECT`` or ``selfadapt``, files in ``DIR/wandb/``; offline unless
  ``WANDB_MODE`` is set (``wandb sync DIR/wandb/offline-run-*`` uploads it later);
- ``csv``: ``DIR/metrics.csv``, one row per epoch and a column per metric (the other files are in DIR already).

MLflow's and W&B's run ids are kept in ``DIR/loggers.json``, so a resumed run goes on in the same
tracker run.

>>> parse_logger_names("tensorboard, csv")
['tensorboard', 'csv']
"""
from __future__ import annotations

import csv
import io
import json
import os
import time
import uuid
from pathlib import Path

from selfadapt.config.sections import LOGGERS  # declared with the setting
from selfadapt.engine.rundir import atomic_write_bytes, write_json
from selfadapt.errors import SelfAdaptError, require

_PACKAGES = {"tensorboard": "tensorboard", "mlflow": "mlflow", "wandb": "wandb"}
IDS_FILE = "loggers.json"


def parse_logger_names(names) -> list[str]:
    """``"tensorboard,csv"`` or a list -> the distinct names in order; an unknown one is an error."""
    if isinstance(names, str):
        names = names.split(",")
    out = list(dict.fromkeys(n.strip().lower() for n in names or [] if n.strip()))
    unknown = [n for n in out if n not in LOGGERS]
    if unknown:
        raise SelfAdaptError(f"unknown logger {unknown[0]!r}; choose from {', '.join(LOGGERS)} (comma-separated)")
    return out


def check_available(names) -> None:
    """Import every backend ``names`` asks for; a missing one is one :class:`MissingExtra` line."""
    for name in parse_logger_names(names):
        if name in _PACKAGES:
            require(_PACKAGES[name], "loggers", f"--logger {name}", alone=True)


class Logger:
    """What a tracker is told: the configuration, numbers per step (the 0-based epoch), images and tables."""

    def log_config(self, config: dict) -> None: ...

    def log_metrics(self, metrics: dict[str, float], step: int) -> None: ...

    def log_image(self, path: Path) -> None: ...

    def log_table(self, path: Path) -> None:
        """A CSV file with a header row."""

    def close(self) -> None: ...


class Loggers(Logger):
    """Every chosen tracker for one folder (a run or a grid), as one :class:`Logger`.

    Example: ``with Loggers(["csv"], "runs/x", "x") as log: log.log_metrics({"loss": 0.5}, step=0)``.
    ``start_step`` is where a resumed run goes on (TensorBoard drops what it had logged from there).
    """

    def __init__(self, names, folder, name: str, *, start_step: int | None = None):
        check_available(names)
        folder = Path(folder)
        ids_path = folder / IDS_FILE
        ids = json.loads(ids_path.read_text()) if ids_path.is_file() else {}
        self.loggers: list[Logger] = []
        try:
            for kind in parse_logger_names(names):
                self.loggers.append(_start(kind, folder, name, ids, start_step))
        except SelfAdaptError:
            self.close()
            raise
        if ids:
            write_json(ids_path, ids)

    def log_config(self, config):
        for logger in self.loggers:
            logger.log_config(config)

    def log_metrics(self, metrics, step):
        numbers = {k: float(v) for k, v in metrics.items() if isinstance(v, (int, float)) and not isinstance(v, bool)
                   and k != "epoch"}
        for logger in self.loggers:
            logger.log_metrics(numbers, step)

    def log_image(self, path):
        for logger in self.loggers:
            logger.log_image(Path(path))

    def log_table(self, path):
        for logger in self.loggers:
            logger.log_table(Path(path))

    def log_images(self, folder, pattern: str = "*.png") -> None:
        """Every image matching ``pattern`` under ``folder``, in name order."""
        for path in sorted(Path(folder).glob(pattern)):
            self.log_image(path)

    def close(self):
        for logger in self.loggers:
            logger.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def _start(kind: str, folder: Path, name: str, ids: dict, start_step: int | None) -> Logger:
    """One backend's adapter; a backend that refuses to start (a bad URI, a full disk) is one error line."""
    adapters = {"tensorboard": TensorBoard, "mlflow": MLflow, "wandb": WandB, "csv": CSVFile}
    try:
        return adapters[kind](folder, name, ids, start_step)
    except Exception as e:  # noqa: BLE001 (the backends raise their own types)
        first = (str(e).strip().splitlines() or [type(e).__name__])[0]
        raise SelfAdaptError(f"--logger {kind} could not start: {first}") from e


def read_table(path: Path) -> tuple[list[str], list[list[str]]]:
    with open(path, newline="") as f:
        rows = list(csv.reader(f))
    return (rows[0], rows[1:]) if rows else ([], [])


class TensorBoard(Logger):
    """Scalars per epoch, the configuration and tables as text (markdown), plots as images."""

    def __init__(self, folder, name, ids, start_step):
        from torch.utils.tensorboard import SummaryWriter

        self.writer = SummaryWriter(str(folder / "tensorboard"), purge_step=start_step or None)

    def log_config(self, config):
        self.writer.add_text("config", "```\n" + json.dumps(config, indent=2) + "\n```")

    def log_metrics(self, metrics, step):
        for key, value in metrics.items():
            self.writer.add_scalar(key, value, step)

    def log_image(self, path):
        import numpy as np
        from PIL import Image

        with Image.open(path) as image:
            pixels = np.asarray(image.convert("RGB"))
        self.writer.add_image(f"plots/{path.stem}", pixels, dataformats="HWC")

    def log_table(self, path, most: int = 500):
        header, rows = read_table(path)
        lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        lines += ["| " + " | ".join(row) + " |" for row in rows[:most]]
        if len(rows) > most:
            lines.append(f"\n({len(rows) - most} more rows in {path.name})")
        self.writer.add_text(f"tables/{path.stem}", "\n".join(lines))

    def close(self):
        self.writer.close()


class MLflow(Logger):
    """A tracking run: the flattened configuration as parameters (and ``config.json``), metrics per
    step, plots and tables as artifacts."""

    def __init__(self, folder, name, ids, start_step):
        from mlflow.tracking import MlflowClient

        uri = os.environ.get("MLFLOW_TRACKING_URI") or (folder / "mlruns").resolve().as_uri()
        if uri.startswith("file:"):  # MLflow 3 refuses file stores unless told: a local store needs no server
            os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
        self.client = MlflowClient(tracking_uri=uri)
        key = f"mlflow:{uri}"
        if key not in ids:
            experiment = os.environ.get("MLFLOW_EXPERIMENT_NAME", "selfadapt")
            found = self.client.get_experiment_by_name(experiment)
            experiment_id = found.experiment_id if found else self.client.create_experiment(experiment)
            ids[key] = self.client.create_run(experiment_id, run_name=name).info.run_id
        self.run_id = ids[key]
        self.client.update_run(self.run_id, status="RUNNING")

    def log_config(self, config):
        from mlflow.entities import Param

        logged = self.client.get_run(self.run_id).data.params   # a resumed run keeps its first values
        params = {k: json.dumps(v) if not isinstance(v, str) else v for k, v in _flat(config).items()}
        new = [Param(k, v[:6000]) for k, v in params.items() if k not in logged]
        for start in range(0, len(new), 100):  # MLflow takes at most 100 parameters a call
            self.client.log_batch(self.run_id, params=new[start:start + 100])
        self.client.log_text(self.run_id, json.dumps(config, indent=2), "config.json")

    def log_metrics(self, metrics, step):
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        self.client.log_batch(self.run_id, metrics=[Metric(k, v, now, step) for k, v in metrics.items()])

    def log_image(self, path):
        self.client.log_artifact(self.run_id, str(path), "plots")

    def log_table(self, path):
        self.client.log_artifact(self.run_id, str(path), "tables")

    def close(self):
        self.client.set_terminated(self.run_id)


class WandB(Logger):
    """A W&B run (offline unless ``WANDB_MODE`` says otherwise): config, metrics, images, tables."""

    def __init__(self, folder, name, ids, start_step):
        import wandb

        self.wandb = wandb
        ids.setdefault("wandb", uuid.uuid4().hex[:12])
        self.run = wandb.init(project=os.environ.get("WANDB_PROJECT", "selfadapt"), name=name, dir=str(folder),
                              id=ids["wandb"], resume="allow", mode=os.environ.get("WANDB_MODE", "offline"),
                              settings=wandb.Settings(silent=True, console="off"))

    def log_config(self, config):
        self.run.config.update(config, allow_val_change=True)

    def log_metrics(self, metrics, step):
        self.run.log(metrics, step=step)

    def log_image(self, path):
        self.run.log({f"plots/{path.stem}": self.wandb.Image(str(path))})

    def log_table(self, path):
        header, rows = read_table(path)
        self.run.log({f"tables/{path.stem}": self.wandb.Table(columns=header, data=rows)})

    def close(self):
        self.run.finish()


class CSVFile(Logger):
    """``DIR/metrics.csv``: a row per epoch, a column per metric seen so far (rewritten atomically)."""

    def __init__(self, folder, name, ids, start_step):
        self.path = folder / "metrics.csv"
        header, rows = read_table(self.path) if self.path.is_file() else ([], [])
        self.rows = [dict(zip(header, row)) for row in rows]

    def log_metrics(self, metrics, step):
        self.rows = [r for r in self.rows if int(r["epoch"]) < step]  # a resumed run rewrites from there
        self.rows.append({"epoch": step, **metrics})
        columns = list(dict.fromkeys(k for row in self.rows for k in row))
        text = io.StringIO()
        writer = csv.DictWriter(text, columns, restval="", lineterminator="\n")
        writer.writeheader()
        writer.writerows(self.rows)
        atomic_write_bytes(self.path, text.getvalue().encode())


def _flat(config: dict, prefix: str = "") -> dict:
    """Nested dicts -> dotted keys: ``{"engine": {"lr": 0.1}}`` -> ``{"engine.lr": 0.1}``."""
    out = {}
    for key, value in config.items():
        if isinstance(value, dict) and value:
            out.update(_flat(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out
