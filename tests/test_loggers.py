"""--logger: what a run and a grid send to TensorBoard, MLflow, W&B (offline) and CSV, read back from
the backends' own files and stores; a missing backend is one line naming the extra, before anything
is written."""
import csv
import json
import sys

import pytest

from selfadapt.cli import main
from selfadapt.engine.rundir import read_metrics
from selfadapt.errors import MissingExtra

TRAIN = ["train", "--dataset", "digits", "--model", "mlp", "--width", "32", "--method", "sat", "--noise", "symmetric",
         "--noise-rate", "0.4", "--sat-start-epoch", "1", "--batch-size", "128", "--lr", "0.05", "--augment", "none",
         "--device", "cpu", "--no-progress"]


def events(folder):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    accumulator = EventAccumulator(str(folder), size_guidance={"images": 0, "tensors": 0, "scalars": 0})
    accumulator.Reload()
    return accumulator


def scalars(accumulator, tag):
    return [(e.step, e.value) for e in accumulator.Scalars(tag)]


def text(accumulator, tag):
    return accumulator.Tensors(f"{tag}/text_summary")[-1].tensor_proto.string_val[0].decode()


def mlflow_client(tmp_path, monkeypatch):
    from mlflow.tracking import MlflowClient

    uri = (tmp_path / "store").as_uri()
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")
    return MlflowClient(tracking_uri=uri)


@pytest.mark.slow
def test_a_run_streams_to_every_logger_and_a_resumed_run_goes_on_in_the_same_place(tmp_path, monkeypatch):
    pytest.importorskip("tensorboard"), pytest.importorskip("mlflow"), pytest.importorskip("wandb")
    client = mlflow_client(tmp_path, monkeypatch)
    monkeypatch.delenv("WANDB_MODE", raising=False)   # offline by default
    out = tmp_path / "run"
    flags = [*TRAIN, "--logger", "tensorboard,mlflow,wandb,csv", "--out", str(out)]
    assert main([*flags, "--epochs", "2"]) == 0
    assert main([*flags, "--epochs", "3"]) == 0       # resumed and extended: the same tracker runs go on
    metrics = read_metrics(out / "metrics.jsonl")
    assert [m["epoch"] for m in metrics] == [0, 1, 2]

    board = events(out / "tensorboard")
    for key in ("train_loss", "test_accuracy", "lr"):
        logged = scalars(board, key)
        assert [s for s, _ in logged] == [0, 1, 2]
        assert [v for _, v in logged] == pytest.approx([m[key] for m in metrics], rel=1e-6)
    assert json.loads(text(board, "config").strip("`\n"))["engine"]["lr"] == 0.05

    [run] = client.search_runs([client.get_experiment_by_name("selfadapt").experiment_id])
    assert run.info.run_name == "run" and run.info.status == "FINISHED"
    history = client.get_metric_history(run.info.run_id, "test_accuracy")
    history = sorted((h.step, h.value) for h in history)
    assert [s for s, _ in history] == [0, 1, 2]
    assert [v for _, v in history] == pytest.approx([m["test_accuracy"] for m in metrics])
    assert run.data.params["engine.lr"] == "0.05" and run.data.params["method.method"] == "sat"
    assert {a.path for a in client.list_artifacts(run.info.run_id)} >= {"config.json"}

    offline = sorted((out / "wandb").glob("offline-run-*"))
    assert len(offline) == 2 and len({p.name.rsplit("-", 1)[1] for p in offline}) == 1, "one W&B run, resumed"
    assert all(next(p.glob("run-*.wandb")).stat().st_size > 0 for p in offline)

    with open(out / "metrics.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [int(r["epoch"]) for r in rows] == [0, 1, 2]
    assert [float(r["train_loss"]) for r in rows] == pytest.approx([m["train_loss"] for m in metrics])


@pytest.mark.slow
def test_a_grid_sends_its_plots_and_results_table(tmp_path, monkeypatch):
    pytest.importorskip("tensorboard"), pytest.importorskip("mlflow")
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    grid = tmp_path / "grid.toml"
    grid.write_text('name = "tiny"\nmethods = ["ce"]\nseeds = [0]\n[settings]\ndataset = "digits"\nmodel = "mlp"\n'
                    'width = 16\nepochs = 2\nbatch_size = 256\naugment = "none"\ndevice = "cpu"\n')
    out = tmp_path / "out"
    assert main(["bench", str(grid), "--out", str(out), "--logger", "tensorboard,mlflow"]) == 0
    board = events(out / "tensorboard")
    assert "plots/accuracy-none" in board.Tags()["images"]
    table = text(board, "tables/results")
    assert table.startswith("| method | noise | level |") and "| ce |" in table
    assert scalars(events(out / "runs" / "ce-none-s0" / "tensorboard"), "train_loss")[-1][0] == 1
    from mlflow.tracking import MlflowClient
    client = MlflowClient(tracking_uri=(out / "mlruns").as_uri())   # the grid and its runs share one store
    runs = {r.info.run_name: r for r in client.search_runs([client.get_experiment_by_name("selfadapt").experiment_id])}
    assert set(runs) == {"tiny", "ce-none-s0"}
    artifacts = {a.path for a in client.list_artifacts(runs["tiny"].info.run_id, "plots")}
    assert "plots/accuracy-none.png" in artifacts
    assert [a.path for a in client.list_artifacts(runs["tiny"].info.run_id, "tables")] == ["tables/results.csv"]


@pytest.mark.slow
def test_find_label_issues_sends_its_tiles_and_list(tmp_path):
    pytest.importorskip("tensorboard")
    out = tmp_path / "issues"
    assert main(["find-label-issues", "--dataset", "digits", "--model", "mlp", "--width", "32", "--noise", "symmetric",
                 "--noise-rate", "0.3", "--epochs", "3", "--lr", "0.1", "--logger", "tensorboard", "--out", str(out)]) == 0
    board = events(out / "tensorboard")
    assert board.Tags()["images"] == ["plots/label_issues"]
    assert text(board, "tables/label_issues").startswith("| ")
    assert [s for s, _ in scalars(board, "train_loss")] == [0, 1, 2]


def test_a_missing_backend_names_the_extra_and_writes_nothing(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "wandb", None)   # as if not installed
    out = tmp_path / "run"
    assert main([*TRAIN, "--epochs", "2", "--logger", "csv,wandb", "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["selfadapt: error: --logger wandb needs wandb: pip install 'selfadapt[loggers]' (or wandb alone)"]
    assert not out.exists()


def test_an_unknown_logger_is_one_line(tmp_path, capsys):
    assert main([*TRAIN, "--epochs", "2", "--logger", "tensorbord", "--out", str(tmp_path / "run")]) == 2
    assert "logger must be a comma-separated list of tensorboard, mlflow, wandb, csv" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


def test_the_lightning_integration_without_lightning_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "lightning", None)
    monkeypatch.setitem(sys.modules, "lightning.pytorch", None)
    monkeypatch.delitem(sys.modules, "selfadapt.integrations.lightning", raising=False)
    with pytest.raises(MissingExtra, match=r"needs lightning: pip install 'selfadapt\[lightning\]'"):
        import selfadapt.integrations.lightning  # noqa: F401
    with pytest.raises(ImportError):   # a user's `except ImportError` catches it too
        import selfadapt.integrations.lightning  # noqa: F401,F811
