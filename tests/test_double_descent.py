"""Double descent: SAT's width rule inside a run, the grid figures and the interpolation threshold."""
import json

import pytest
import torch

from selfadapt.apps.double_descent import (
    TRAIN,
    TRAIN_RUNNING,
    clear_peak,
    epoch_error_points,
    error_points,
    interpolation_threshold,
    peak_contrast,
    write_double_descent,
)
from selfadapt.apps.registry import grid_reports
from selfadapt.config.run import RunConfig, differing_settings
from selfadapt.errors import SelfAdaptError
from selfadapt.experiment import train_run
from selfadapt.grid import runner
from selfadapt.grid.presets import preset_path
from selfadapt.grid.spec import load_grid
from selfadapt.objectives.method import MethodContext
from selfadapt.objectives.registry import build_objective


def run_grid(*args, **kwargs):
    """The grid as `selfadapt bench` runs it: with every application's tables and figures."""
    return runner.run_grid(*args, reports=grid_reports(), **kwargs)

GRID = """
name = "tiny-dd"
methods = ["ce", "sat"]
seeds = [0, 1]
[[noise]]
kind = "symmetric"
rates = [0.4]
[axes]
width = [8, 32]
[settings]
dataset = "digits"
model = "mlp"
epochs = 5
batch_size = 128
lr = 0.05
augment = "none"
device = "cpu"
[method_settings.sat]
sat_momentum = 0.9
sat_start_epoch = 1
sat_width_reference = 32
"""


def sat_loss(width, **options):
    ctx = MethodContext(labels=torch.tensor([0, 1, 2, 1]), num_classes=3, epochs=500, width=width)
    return build_objective("sat", ctx, options).loss


def test_width_rule_scales_momentum_and_start_from_the_reference_width():
    scaled = sat_loss(16, sat_momentum=0.9, sat_start_epoch=40, sat_width_reference=64)
    assert scaled.store.momentum == pytest.approx(0.9 ** (16 / 64)) and scaled.start_epoch == 160
    assert scaled.settings_used() == {"sat_momentum": pytest.approx(0.9 ** 0.25), "sat_start_epoch": 160}
    at_reference = sat_loss(64, sat_momentum=0.9, sat_start_epoch=40, sat_width_reference=64)
    assert (at_reference.store.momentum, at_reference.start_epoch) == (0.9, 40)
    off = sat_loss(16, sat_momentum=0.9, sat_start_epoch=40)
    assert (off.store.momentum, off.start_epoch) == (0.9, 40)


def test_width_rule_that_starts_sat_after_the_last_epoch_is_one_line():
    flat = {"method": "sat", "model": "mlp", "width": 4, "epochs": 100, "sat_momentum": 0.9, "sat_start_epoch": 40,
            "sat_width_reference": 64}
    with pytest.raises(SelfAdaptError, match=r"starts at epoch 640 .* width rule moved it from 40 at width 64"):
        RunConfig.from_flat(flat)
    # no width given: the model's default (mlp: 512 hidden units) is the run's width
    RunConfig.from_flat({**flat, "width": None, "epochs": 10})
    with pytest.raises(SelfAdaptError, match="sat_width_reference must be >= 0"):
        RunConfig.from_flat({**flat, "sat_width_reference": -1})
    with pytest.raises(SelfAdaptError, match="give sat_momentum and sat_start_epoch as numbers, not auto"):
        RunConfig.from_flat({**flat, "sat_momentum": "auto"})


def test_runs_made_before_a_setting_existed_still_match_its_default():
    fixed = {"method": "sat", "sat_momentum": 0.9, "sat_start_epoch": 40}
    now = RunConfig.from_flat(fixed).to_dict()
    before = json.loads(json.dumps(now))
    del before["method"]["options"]["sat_width_reference"]
    assert differing_settings(before, now) == []
    changed = RunConfig.from_flat({**fixed, "sat_width_reference": 64}).to_dict()
    assert differing_settings(before, changed) == ["sat_width_reference"]


def test_interpolation_threshold_is_where_train_error_stays_small():
    assert interpolation_threshold([(4, 0.3), (16, 0.005), (32, 0.02), (64, 0.0), (128, 0.0)]) == 64
    assert interpolation_threshold([(4, 0.3), (8, 0.2)]) is None
    assert interpolation_threshold([(4, 0.3), (8, 0.02)], tolerance=0.05) == 8


def test_peak_contrast_compares_the_peak_with_a_quarter_and_four_times_its_width():
    points = [(4, 0.26), (8, 0.21), (12, 0.23), (16, 0.24), (32, 0.31), (64, 0.29), (96, 0.25), (128, 0.22)]
    assert peak_contrast(points) == {"peak": 32, "error": 0.31, "left": 8, "left_error": 0.21, "right": 128,
                                     "right_error": 0.22}
    assert clear_peak(peak_contrast(points)) and not clear_peak({**peak_contrast(points), "left_error": 0.29})
    assert peak_contrast([(4, 0.3), (8, 0.2), (16, 0.1)]) is None   # monotone: no interior peak


def test_error_points_from_result_rows_and_epoch_curves():
    rows = [{"width": 32, "final_test_accuracy_mean": 0.75, "final_test_accuracy_std": 0.01},
            {"width": 8, "final_test_accuracy_mean": 0.5, "final_test_accuracy_std": None}]
    assert error_points(rows, "width", "test_accuracy") == [(8, 0.5, None), (32, 0.25, 0.01)]
    runs = [[{"test_accuracy": 0.5}, {"test_accuracy": 0.6}], [{"test_accuracy": 0.7}]]
    points = epoch_error_points(runs, "test_accuracy")
    assert [p[0] for p in points] == [1, 2] and points[0][1] == pytest.approx(0.4) and points[1] == (2, 0.4, None)
    assert points[0][2] == pytest.approx(0.1414213, abs=1e-6)


@pytest.mark.slow
def test_width_grid_records_the_rule_per_run_and_draws_both_curves(tmp_path):
    grid_file = tmp_path / "dd.toml"
    grid_file.write_text(GRID)
    out = run_grid(grid_file, tmp_path / "out")
    grid = load_grid(grid_file)
    assert len(grid.runs) == 8
    for width, (momentum, start) in {8: (0.9 ** 0.25, 4), 32: (0.9, 1)}.items():
        summary = json.loads((out / "runs" / f"sat-symmetric-0.4-width={width}-s1" / "summary.json").read_text())
        assert summary["settings_used"] == {"sat_momentum": pytest.approx(momentum), "sat_start_epoch": start}
        ce = json.loads((out / "runs" / f"ce-symmetric-0.4-width={width}-s1" / "summary.json").read_text())
        assert "settings_used" not in ce
    # at width 8 the rule moves SAT's start from 1 to 4: cross-entropy, identical to CE's run, until then
    metrics = [json.loads(line) for line in
               (out / "runs" / "sat-symmetric-0.4-width=8-s0" / "metrics.jsonl").read_text().splitlines()]
    ce_metrics = [json.loads(line) for line in
                  (out / "runs" / "ce-symmetric-0.4-width=8-s0" / "metrics.jsonl").read_text().splitlines()]
    assert [m["train_loss"] for m in metrics[:4]] == [m["train_loss"] for m in ce_metrics[:4]]
    assert metrics[4]["train_loss"] != ce_metrics[4]["train_loss"]
    table = (out / "double-descent.md").read_text()
    ce8 = json.loads((out / "runs" / "ce-symmetric-0.4-width=8-s0" / "summary.json").read_text())
    ce8b = json.loads((out / "runs" / "ce-symmetric-0.4-width=8-s1" / "summary.json").read_text())
    mean = 100 * (1 - (ce8["final_test_accuracy"] + ce8b["final_test_accuracy"]) / 2)
    assert table.count("\n| 8 | ") == 1 and f"| 8 | {mean:.2f} ± " in table
    for name in ("error-vs-width.png", "error-vs-epoch-symmetric-0.4-width=8.png",
                 "error-vs-epoch-symmetric-0.4-width=32.png"):
        assert (out / "plots" / name).stat().st_size > 5000


def test_epoch_wise_cpu_grid_runs_are_the_model_wise_grids_largest_width():
    from pathlib import Path

    grids = Path(__file__).resolve().parent.parent / "docs" / "grids"
    model = {r.name: r for r in load_grid(grids / "double-descent-model-cpu.toml").runs}
    epoch = load_grid(grids / "double-descent-epoch-cpu.toml").runs
    assert len(epoch) == 6
    for run in epoch:
        twin = model[run.name.replace("symmetric-0.2-", "symmetric-0.2-width=256-")]
        # they train alike; only how often the train error is measured differs
        assert differing_settings(run.config.to_dict(), twin.config.to_dict()) == ["memorisation_every"]
        assert "memorisation" in run.config.eval.evaluators and "memorisation" in twin.config.eval.evaluators
    for name in ("double-descent-model", "double-descent-epoch"):
        runs = load_grid(preset_path(name)).runs
        assert {r.config.engine.epochs for r in runs} == {4000}
        assert all(r.config.method.options.get("sat_width_reference") in (None, 0, 64) for r in runs)
        assert any(r.config.method.options.get("sat_width_reference") == 64 for r in runs) == ("model" in name)
        assert all("memorisation" in r.config.eval.evaluators for r in runs), "the eval-mode train error"


@pytest.mark.slow
def test_eval_mode_train_accuracy_is_a_plain_loop_over_the_unaugmented_training_set():
    """Digits with crop + flip, a CNN with batch norm and dropout, 40% wrong labels: the memorisation
    evaluator's train_accuracy_given_eval equals model.eval() over the un-augmented training images
    against the given labels; the engine's running train-mode accuracy is another number."""
    config = RunConfig.from_flat({"dataset": "digits", "model": "cnn", "epochs": 3, "batch_size": 128, "lr": 0.05,
                                  "augment": "crop-flip", "noise": "symmetric", "noise_rate": 0.4, "device": "cpu",
                                  "evaluators": ["accuracy", "memorisation"], "memorisation_every": 2})
    result = train_run(config, verbose=False)
    model = result.model.eval()
    with torch.no_grad():
        predicted = model(result.data.images.float() / 255).argmax(1)
    plain = (predicted == result.data.labels).double().mean().item()
    assert result.summary["final_train_accuracy_given_eval"] == pytest.approx(plain, abs=1e-6)
    assert abs(result.summary["final_train_accuracy_given"] - plain) > 0.01


@pytest.mark.slow
def test_report_reads_the_eval_mode_train_error_and_labels_the_running_fallback(tmp_path):
    """Two widths, CE: the table's train column is 1 - train_accuracy_given_eval where every run has
    it; runs without it (older) fall back to the running accuracy, and the table says which."""
    grid_file = tmp_path / "dd.toml"
    grid_file.write_text(GRID)
    grid = load_grid(grid_file)

    def metrics(run, eval_too):
        width = dict(run.axes)["width"]
        record = {"epoch": 0, "test_accuracy": 0.5 + width / 100, TRAIN_RUNNING: 0.6 + width / 100}
        return [dict(record, **({TRAIN: 0.7 + width / 100} if eval_too else {}))]
    for eval_too, expected in ((True, {8: 22.0, 32: -2.0}), (False, {8: 32.0, 32: 8.0})):
        runs = [r for r in grid.runs if r.method == "ce"]
        finished = {r.name: ({}, metrics(r, eval_too)) for r in runs}
        rows = []
        for width in (8, 32):
            row = {"method": "ce", "noise": "symmetric", "level": "0.4", "width": width, "n_seeds": 2,
                   "final_test_accuracy_mean": 0.5 + width / 100, "final_test_accuracy_std": 0.0,
                   f"final_{TRAIN_RUNNING}_mean": 0.6 + width / 100, f"final_{TRAIN_RUNNING}_std": 0.0}
            if eval_too:
                row.update({f"final_{TRAIN}_mean": 0.7 + width / 100, f"final_{TRAIN}_std": 0.0})
            rows.append(row)
        out = tmp_path / f"out-{eval_too}"
        (out / "plots").mkdir(parents=True)
        write_double_descent(grid, out, finished, rows)
        table = (out / "double-descent.md").read_text()
        for width, train_error in expected.items():
            assert f"| {width} | {100 - 50 - width:.2f} ± 0.00 | {train_error:.2f} ± 0.00 |" in table
        assert ("eval mode, un-augmented training set" in table) == eval_too
        assert ("running train-mode accuracy" in table) == (not eval_too)
        assert (out / "plots" / "error-vs-width.png").stat().st_size > 5000
