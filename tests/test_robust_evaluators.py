"""Robust-accuracy evaluators (PGD, FGSM, AutoAttack) on a model trained on real digits, and an
adversarial run end to end through the command line."""
import csv
import json

import pytest
import torch
from test_attacks import accuracy, digits_model  # noqa: F401  (the trained model, a session fixture)
from test_cli import fails_with

from selfadapt.apps.registry import grid_reports
from selfadapt.cli import main
from selfadapt.data.loader import DeviceLoader
from selfadapt.data.registry import load_dataset
from selfadapt.evaluators.base import EvalData
from selfadapt.evaluators.registry import build_evaluators
from selfadapt.evaluators.robust import fixed_subset
from selfadapt.grid import runner
from selfadapt.objectives import Objective


def run_grid(*args, **kwargs):
    """The grid as `selfadapt bench` runs it: with every application's tables and figures."""
    return runner.run_grid(*args, reports=grid_reports(), **kwargs)


@pytest.fixture
def eval_data():
    test = load_dataset("digits").test
    loader = DeviceLoader(test.images, test.labels, batch_size=128)
    return EvalData(loader, loader, None, 10)


def test_pgd_and_fgsm_evaluators_on_a_fixed_subset(digits_model, eval_data):  # noqa: F811
    model, x, y = digits_model
    options = {"robust_eps": 0.1, "robust_subset": 200, "pgd_step_size": 0.01, "pgd_start_epoch": 3, "pgd_every": 2}
    pgd, fgsm = build_evaluators(["pgd", "fgsm"], options)
    assert [e for e in range(10) if pgd.due(e, 10)] == [4, 6, 8, 9]
    assert [e for e in range(3) if fgsm.due(e, 3)] == [0, 1, 2]
    model.train()
    torch.manual_seed(0)
    state = torch.get_rng_state()
    strong, fast = pgd(model, Objective(), eval_data, 4), fgsm(model, Objective(), eval_data, 4)
    assert model.training, "the evaluator restores the mode it found"
    assert torch.equal(torch.get_rng_state(), state), "training's random draws do not depend on evaluation"
    assert pgd(model, Objective(), eval_data, 6) == strong, "the same random starts every epoch"
    model.eval()
    subset = fixed_subset(500, 200)
    assert strong["pgd_examples"] == fast["fgsm_examples"] == 200
    assert strong["pgd_clean_accuracy"] == pytest.approx(accuracy(model, x[subset], y[subset]))
    assert strong["pgd_accuracy"] <= fast["fgsm_accuracy"] <= fast["fgsm_clean_accuracy"] - 0.2
    assert pgd.primary == "pgd_accuracy" and pgd.higher_is_better


def test_autoattack_images_are_the_first_of_pgds():
    assert set(fixed_subset(10000, 1000).tolist()) <= set(fixed_subset(10000, 5000).tolist())
    assert len(fixed_subset(300, None)) == len(fixed_subset(300, 500)) == 300


def test_autoattack_evaluator_runs_last_and_keeps_a_resumable_state(digits_model, eval_data, tmp_path):  # noqa: F811
    model, x, y = digits_model
    autoattack, = build_evaluators(["autoattack"], {"robust_eps": 0.2, "autoattack_n_ex": 30})
    assert [e for e in range(5) if autoattack.due(e, 5)] == [4]
    eval_data.run_dir = tmp_path
    result = autoattack(model, Objective(), eval_data, 4)
    assert result["autoattack_examples"] == 30
    assert list(result)[-4:] == ["autoattack_after_apgd_ce", "autoattack_after_apgd_t", "autoattack_after_fab_t",
                                 "autoattack_after_square"]
    assert result["autoattack_accuracy"] <= result["autoattack_after_apgd_ce"] < result["autoattack_clean_accuracy"]
    assert len(list(tmp_path.glob("autoattack-*-standard-eps0.2-n30.json"))) == 1


def test_adversarial_run_end_to_end_and_eval_with_an_attack(tmp_path, capsys):
    out = tmp_path / "trades"
    assert main(["train", "--dataset", "digits", "--model", "mlp", "--width", "32", "--method", "trades",
                 "--epochs", "2", "--attack-eps", "0.1", "--attack-steps", "2", "--attack-step-size", "0.05",
                 "--robust-eps", "0.1", "--robust-subset", "100", "--pgd-steps", "5", "--pgd-step-size", "0.03",
                 "--device", "cpu", "--no-progress", "--out", str(out)]) == 0
    metrics = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [m["pgd_examples"] for m in metrics] == [100, 100]
    assert all(m["robust_loss"] > 0 and m["pgd_accuracy"] <= m["pgd_clean_accuracy"] for m in metrics)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["best_pgd_accuracy"] == max(m["pgd_accuracy"] for m in metrics)
    capsys.readouterr()
    assert main(["eval", str(out), "--attack", "fgsm", "--n-ex", "50", "--eps", "0.05", "--device", "cpu"]) == 0
    printed = capsys.readouterr().out
    assert "fgsm_examples: 50" in printed and "fgsm_accuracy: " in printed and "test_accuracy" not in printed
    fails_with(capsys, ["eval", str(out), "--attack", "cw", "--device", "cpu"], "unknown evaluator 'cw'")
    fails_with(capsys, ["eval", str(out), "--attack", "pgd", "--eps", "1.5", "--device", "cpu"],
               "robust_eps must lie in [0, 1]")


@pytest.mark.slow
def test_a_grid_reports_best_and_final_robust_accuracy_and_plots_robust_overfitting(tmp_path):
    grid = tmp_path / "adv.toml"
    grid.write_text("""
name = "adv"
methods = ["trades"]
seeds = [0]
[settings]
dataset = "digits"
model = "mlp"
width = 32
epochs = 3
augment = "none"
device = "cpu"
evaluators = ["accuracy", "pgd"]
robust_eps = 0.1
robust_subset = 100
pgd_steps = 5
pgd_step_size = 0.03
[method_settings.trades]
attack_eps = 0.1
attack_steps = 2
attack_step_size = 0.05
""")
    out = run_grid(grid, tmp_path / "out")
    with open(out / "results.csv") as f:
        rows = {row["method"]: row for row in csv.DictReader(f)}
    metrics = [json.loads(line) for line in (out / "runs" / "trades-none-s0" / "metrics.jsonl").open()]
    curve = [m["pgd_accuracy"] for m in metrics]
    assert len(curve) == 3 and float(rows["trades"]["best_pgd_accuracy_mean"]) == pytest.approx(max(curve))
    assert float(rows["trades"]["final_pgd_accuracy_mean"]) == pytest.approx(curve[-1])
    assert (out / "plots" / "robust-overfitting-none.png").stat().st_size > 1000
