"""The benchmark grid: validation, expansion, running, skipping, resuming and the numbers it reports."""
import csv
import json
import shutil
import statistics

import pytest

from selfadapt.apps.registry import grid_reports
from selfadapt.engine.trainer import Trainer
from selfadapt.errors import SelfAdaptError
from selfadapt.grid import aggregate as aggregation
from selfadapt.grid import runner
from selfadapt.grid.reports import mean_curve
from selfadapt.grid.spec import load_grid


def run_grid(*args, **kwargs):
    """The grid as `selfadapt bench` runs it: with every application's tables and figures."""
    return runner.run_grid(*args, reports=grid_reports(), **kwargs)


def aggregate(out):
    return aggregation.aggregate(out, grid_reports())

GRID = """
name = "tiny"
methods = {methods}
seeds = {seeds}
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
augment = "none"
device = "cpu"
[method_settings.sat]
sat_start_epoch = 1
"""


def write_grid(path, methods=("ce", "sat"), seeds=(0, 1), epochs=2):
    path.write_text(GRID.format(methods=json.dumps(list(methods)), seeds=json.dumps(list(seeds)), epochs=epochs))
    return path


def read_csv(path):
    with open(path) as f:
        return list(csv.DictReader(f))


def summaries(out):
    return {p.parent.name: json.loads(p.read_text()) for p in (out / "runs").glob("*/summary.json")}


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """The tiny grid (2 methods x 1 noise rate x 2 seeds, 2 epochs), run once with jobs=1."""
    root = tmp_path_factory.mktemp("grid")
    grid_file = write_grid(root / "tiny.toml")
    out = run_grid(grid_file, root / "out")
    return grid_file, out


def test_load_grid_expands_runs_with_readable_names(tmp_path):
    path = tmp_path / "g.toml"
    path.write_text(GRID.format(methods='["ce", "sat"]', seeds="[3]", epochs=2).replace(
        "[method_settings.sat]", '[[noise]]\nkind = "none"\n[method_settings.sat]\nsat_momentum = 0.8'))
    grid = load_grid(path)
    assert [r.name for r in grid.runs] == ["ce-symmetric-0.4-s3", "sat-symmetric-0.4-s3", "ce-none-s3", "sat-none-s3"]
    sat = grid.runs[1].config.flat()
    assert [sat[k] for k in ("seed", "data_seed", "noise_seed", "noise", "noise_rate")] == [3, 3, 3, "symmetric", 0.4]
    assert (sat["sat_start_epoch"], sat["sat_momentum"], sat["progress"]) == (1, 0.8, False)
    assert grid.runs[0].config.method.options == {}
    assert grid.runs[2].config.data.noise_rate == 0.0


def test_unknown_or_misplaced_method_options_are_refused(tmp_path):
    path = tmp_path / "g.toml"
    for extra, message in (("gce_qq = 0.5", "unknown setting 'gce_qq'"), ("sat_momentum = 1.5", "sat_momentum must lie"),
                           ("gce_q = 0.5", "gce_q is an option of method gce, not of method 'sat'")):
        path.write_text(GRID.format(methods='["ce", "sat"]', seeds="[0]", epochs=2) + extra + "\n")
        with pytest.raises(SelfAdaptError, match=message):
            load_grid(path)


def test_any_setting_is_an_axis_and_options_apply_to_their_methods(tmp_path):
    path = tmp_path / "axes.toml"
    path.write_text(GRID.format(methods='["ce", "sat"]', seeds="[0]", epochs=2)
                    + "\n[axes]\nwidth = [8, 32]\nsat_momentum = [0.7, 0.9]\n")
    grid = load_grid(path)
    names = [r.name for r in grid.runs]
    assert names == ["ce-symmetric-0.4-width=8-s0", "sat-symmetric-0.4-width=8-sat_momentum=0.7-s0",
                     "sat-symmetric-0.4-width=8-sat_momentum=0.9-s0", "ce-symmetric-0.4-width=32-s0",
                     "sat-symmetric-0.4-width=32-sat_momentum=0.7-s0", "sat-symmetric-0.4-width=32-sat_momentum=0.9-s0"]
    config = grid.runs[2].config
    assert (config.model.width, config.method.options["sat_momentum"]) == (8, 0.9)
    assert len(grid.rows) == 6


def test_human_noise_takes_variants(tmp_path):
    path = tmp_path / "n.toml"
    path.write_text('methods = ["ce"]\nseeds = [0]\n[[noise]]\nkind = "human"\nvariants = ["worse", "aggre"]\n'
                    '[settings]\ndataset = "cifar10"\ndevice = "cuda"\n')
    grid = load_grid(path)   # the device is checked by run_grid, so a CUDA grid loads anywhere
    assert grid.name == "n"
    assert [(r.name, r.config.data.noise_variant) for r in grid.runs] == [
        ("ce-human-worse-s0", "worse"), ("ce-human-aggre-s0", "aggre")]


BAD_GRIDS = {
    "not toml": ("methods = [", "not valid TOML"),
    "unknown key": ('methods = ["ce"]\nseeds = [0]\nsed = 1\n[[noise]]\nkind = "none"', "unknown key(s) sed"),
    "unknown method": ('methods = ["cee"]\nseeds = [0]\n[[noise]]\nkind = "none"', "unknown method 'cee'"),
    "no seeds": ('methods = ["ce"]\n[[noise]]\nkind = "none"', "seeds must be a non-empty list"),
    "twice": ('methods = ["ce", "ce"]\nseeds = [0]\n[[noise]]\nkind = "none"', "lists a value twice"),
    "bad noise": ('methods = ["ce"]\nseeds = [0]\nnoise = 3', "[[noise]] must be one or more tables"),
    "unknown kind": ('methods = ["ce"]\nseeds = [0]\n[[noise]]\nkind = "sym"\nrates = [0.2]', "unknown noise kind 'sym'"),
    "rate": ('methods = ["ce"]\nseeds = [0]\n[[noise]]\nkind = "symmetric"\nrates = [0.2, 1.5]', "[0, 1], got 1.5"),
    "no rates": ('methods = ["ce"]\nseeds = [0]\n[[noise]]\nkind = "asymmetric"', "needs rates"),
    "noise key": ('methods = ["ce"]\nseeds = [0]\n[[noise]]\nkind = "symmetric"\nrate = [0.2]', "unknown key(s) rate"),
    "variants": ('methods = ["ce"]\nseeds = [0]\n[[noise]]\nkind = "symmetric"\nvariants = ["worse"]', "only noise kind"),
    "human dataset": ('methods = ["ce"]\nseeds = [0]\n[[noise]]\nkind = "human"\nvariants = ["worse"]'
                      '\n[settings]\ndataset = "digits"', "only for cifar10 and cifar100"),
    "variant": ('methods = ["ce"]\nseeds = [0]\n[[noise]]\nkind = "human"\nvariants = ["wrose"]'
                '\n[settings]\ndataset = "cifar10"', "unknown cifar10 variant 'wrose'"),
    "setting": ('methods = ["ce"]\nseeds = [0]\n[[noise]]\nkind = "none"\n[settings]\nepoch = 3', "unknown setting 'epoch'"),
    "grid field": ('methods = ["ce"]\nseeds = [0]\n[[noise]]\nkind = "none"\n[settings]\nseed = 3', "seed is set by the grid"),
    "type": ('methods = ["ce"]\nseeds = [0]\n[[noise]]\nkind = "none"\n[settings]\nepochs = "3"', "epochs must be int, got '3'"),
    "range": ('methods = ["ce"]\nseeds = [0]\n[[noise]]\nkind = "none"\n[settings]\nepochs = 0', "epochs must be >= 1"),
    "model": ('methods = ["ce"]\nseeds = [0]\n[[noise]]\nkind = "none"\n[settings]\nmodel = "x"', "unknown model 'x'"),
    "method settings": ('methods = ["ce"]\nseeds = [0]\n[[noise]]\nkind = "none"\n[method_settings.stat]\nlr = 0.1',
                        "[method_settings.stat] names an unknown method"),
    "method setting": ('methods = ["ce"]\nseeds = [0]\n[[noise]]\nkind = "none"\n[method_settings.sat]\nlr = "x"',
                       "lr must be float, got 'x'"),
    "axis": ('methods = ["ce"]\nseeds = [0]\n[axes]\nwidth = []', "width must be a non-empty list"),
    "axis setting": ('methods = ["ce"]\nseeds = [0]\n[axes]\nwidht = [1, 2]', "unknown setting 'widht'"),
    "axis value": ('methods = ["ce"]\nseeds = [0]\n[axes]\nwidth = [4, 0]', "width must be >= 1, got 0"),
    "model without a width": ('methods = ["ce"]\nseeds = [0]\n[axes]\nwidth = [4]\n[settings]\nmodel = "linear"',
                              "model linear has no width"),
}


@pytest.mark.parametrize("case", sorted(BAD_GRIDS))
def test_bad_grid_files_are_one_line_errors(tmp_path, case):
    text, message = BAD_GRIDS[case]
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(SelfAdaptError) as info:
        load_grid(path)
    assert message in str(info.value) and "\n" not in str(info.value)


def test_missing_grid_file(tmp_path):
    with pytest.raises(SelfAdaptError, match="does not exist"):
        run_grid(tmp_path / "nope.toml", tmp_path / "out")


@pytest.mark.slow
def test_results_match_the_runs(finished):
    grid_file, out = finished
    runs = summaries(out)
    assert sorted(runs) == ["ce-symmetric-0.4-s0", "ce-symmetric-0.4-s1", "sat-symmetric-0.4-s0", "sat-symmetric-0.4-s1"]
    rows = {r["method"]: r for r in read_csv(out / "results.csv")}
    assert sorted(rows) == ["ce", "sat"]
    for method, row in rows.items():
        mine = [runs[f"{method}-symmetric-0.4-s{s}"] for s in (0, 1)]
        final = [s["final_test_accuracy"] for s in mine]
        best = [s["best_test_accuracy"] for s in mine]
        assert (row["noise"], row["level"], row["n_seeds"], row["missing_seeds"]) == ("symmetric", "0.4", "2", "")
        assert float(row["final_test_accuracy_mean"]) == pytest.approx(statistics.mean(final))
        assert float(row["final_test_accuracy_std"]) == pytest.approx(statistics.stdev(final))   # ddof=1
        assert float(row["best_test_accuracy_mean"]) == pytest.approx(statistics.mean(best))
        assert float(row["best_test_accuracy_std"]) == pytest.approx(statistics.stdev(best))
        clean = statistics.mean(s["final_train_accuracy_clean"] for s in mine)
        assert float(row["final_train_accuracy_clean_mean"]) == pytest.approx(clean)
    sat_f1 = statistics.mean(runs[f"sat-symmetric-0.4-s{s}"]["label_issues"]["f1"] for s in (0, 1))
    assert float(rows["sat"]["label_issue_f1_mean"]) == pytest.approx(sat_f1)
    assert rows["ce"]["label_issue_f1_mean"] == "n/a"
    # symmetric noise redraws uniformly over the 10 classes: about 0.4 * 9/10 of the labels are wrong
    assert 0.3 < float(rows["ce"]["realised_noise_rate_mean"]) < 0.42


@pytest.mark.slow
def test_markdown_and_plots(finished):
    grid_file, out = finished
    md = (out / "results.md").read_text()
    assert f"`selfadapt bench {grid_file} --out {out}`" in md
    assert "# Benchmark grid: tiny" in md and "optimistic" in md and "Hardware:" in md
    runs = summaries(out)
    final = [runs[f"sat-symmetric-0.4-s{s}"]["final_test_accuracy"] for s in (0, 1)]
    cell = f"{100 * statistics.mean(final):.2f} ± {100 * statistics.stdev(final):.2f}"
    assert f"| sat | {cell} |" in md
    assert "None: every run finished." in md
    for name in ("accuracy-symmetric-0.4.png", "memorisation-symmetric-0.4.png"):
        assert (out / "plots" / name).stat().st_size > 1000
    # the memorisation curves are the per-epoch means over seeds of what the evaluator logged
    logged = [[json.loads(line) for line in (out / "runs" / f"sat-symmetric-0.4-s{s}" / "metrics.jsonl")
               .read_text().splitlines()] for s in (0, 1)]
    curve = mean_curve(logged, "memorised_share")
    assert curve[0] is None, "memorisation is measured every 10 epochs and after the last"
    assert curve[1] == pytest.approx(statistics.mean(m[1]["memorised_share"] for m in logged))
    assert 0 <= curve[1] <= 1


@pytest.mark.slow
def test_second_invocation_skips_without_training(finished, monkeypatch, capsys):
    grid_file, out = finished
    stamps = {p: p.stat().st_mtime_ns for p in (out / "runs").glob("*/checkpoint.pt")}

    def no_training(*args, **kwargs):
        raise AssertionError("a finished run was trained again")
    monkeypatch.setattr(runner, "run_experiment", no_training)
    monkeypatch.setattr("selfadapt.experiment.prepare_data", no_training)
    before = (out / "results.csv").read_text()
    run_grid(grid_file, out)
    assert capsys.readouterr().out.count("skipped") == 4
    assert {p: p.stat().st_mtime_ns for p in stamps} == stamps
    assert (out / "results.csv").read_text() == before


@pytest.mark.slow
def test_interrupted_grid_resumes_where_it_stopped(finished, tmp_path, monkeypatch, capsys):
    grid_file, reference = finished
    out = tmp_path / "out"
    original = Trainer.train_epoch

    def interrupt_at_second_epoch(self, epoch):
        if epoch == 1:
            raise KeyboardInterrupt
        return original(self, epoch)
    monkeypatch.setattr(Trainer, "train_epoch", interrupt_at_second_epoch)
    with pytest.raises(KeyboardInterrupt):
        run_grid(grid_file, out)
    monkeypatch.setattr(Trainer, "train_epoch", original)
    first = out / "runs" / "ce-symmetric-0.4-s0"
    epoch0 = (first / "metrics.jsonl").read_text()
    assert len(epoch0.splitlines()) == 1 and not (first / "summary.json").exists()

    aggregate(out)   # a partial grid tabulates what finished and lists the rest
    md = (out / "results.md").read_text()
    assert "- ce-symmetric-0.4-s0: unfinished (1 of 2 epochs)" in md and "- sat-symmetric-0.4-s1: not started" in md
    assert {r["n_seeds"] for r in read_csv(out / "results.csv")} == {"0"}

    run_grid(grid_file, out)
    assert "started ce-symmetric-0.4-s0" in capsys.readouterr().out
    assert (first / "metrics.jsonl").read_text().startswith(epoch0)   # epoch 0 kept, not retrained
    assert summaries(out)["ce-symmetric-0.4-s0"]["final_test_accuracy"] == \
        summaries(reference)["ce-symmetric-0.4-s0"]["final_test_accuracy"]
    assert "None: every run finished." in (out / "results.md").read_text()


@pytest.mark.slow
def test_more_epochs_extend_finished_runs(finished, tmp_path):
    grid_file, reference = finished
    out = tmp_path / "out"
    shutil.copytree(reference, out)
    before = (out / "runs" / "sat-symmetric-0.4-s1" / "metrics.jsonl").read_text()
    run_grid(write_grid(tmp_path / "tiny.toml", epochs=3), out)
    after = (out / "runs" / "sat-symmetric-0.4-s1" / "metrics.jsonl").read_text()
    assert after.startswith(before) and len(after.splitlines()) == 3
    assert all(s["epochs"] == 3 for s in summaries(out).values())


@pytest.mark.slow
def test_changed_settings_are_refused_before_training(finished, tmp_path, monkeypatch):
    grid_file, reference = finished
    out = tmp_path / "out"
    shutil.copytree(reference, out)
    changed = tmp_path / "tiny.toml"
    changed.write_text(grid_file.read_text().replace("lr = 0.05", "lr = 0.1"))
    monkeypatch.setattr(runner, "run_experiment", lambda *a, **k: pytest.fail("trained"))
    with pytest.raises(SelfAdaptError, match="holds a different run .*differs in lr"):
        run_grid(changed, out)


@pytest.mark.slow
def test_failed_runs_are_listed_and_the_others_finish(tmp_path, monkeypatch):
    original = runner.run_experiment

    def sat_fails(config, folder, **kwargs):
        if config.method.method == "sat" and config.data.noise == "none":
            raise RuntimeError("CUDA out of memory.\nTried to allocate 2 GiB")
        if config.method.method == "sat":
            raise SelfAdaptError("training diverged at epoch 0 (loss nan); lower --lr")
        return original(config, folder, **kwargs)
    monkeypatch.setattr(runner, "run_experiment", sat_fails)
    out = tmp_path / "out"
    grid_file = write_grid(tmp_path / "one.toml", seeds=[0])
    grid_file.write_text(grid_file.read_text().replace("[settings]", '[[noise]]\nkind = "none"\n[settings]'))
    with pytest.raises(SelfAdaptError, match="2 of 4 runs failed; sat-symmetric-0.4-s0: training diverged"):
        run_grid(grid_file, out)
    rows = {(r["method"], r["noise"]): r for r in read_csv(out / "results.csv")}
    assert rows["ce", "symmetric"]["n_seeds"] == "1" and rows["ce", "symmetric"]["final_test_accuracy_std"] == "n/a"
    assert rows["sat", "symmetric"]["n_seeds"] == "0" and rows["sat", "symmetric"]["missing_seeds"] == "0"
    assert rows["ce", "none"]["realised_noise_rate_mean"] == "0.0"
    md = (out / "results.md").read_text()
    assert "- sat-symmetric-0.4-s0: failed: training diverged" in md and "- sat-none-s0: failed: RuntimeError: CUDA out of memory.\n" in md
    assert "± n/a |" in md and "## clean labels: test_accuracy, final (last epoch)" in md and "| run | clean |" in md
    assert (out / "plots" / "accuracy-none.png").exists() and not (out / "plots" / "memorisation-none.png").exists()


@pytest.mark.slow
def test_parallel_jobs_finish_every_run(finished, tmp_path):
    grid_file, reference = finished
    out = run_grid(grid_file, tmp_path / "out", jobs=2)
    assert sorted(summaries(out)) == sorted(summaries(reference))
    assert json.loads((out / "bench.json").read_text())[-1]["torch_threads_per_run"] >= 1
    assert all(r["n_seeds"] == "2" for r in read_csv(out / "results.csv"))


def test_runs_in_flight_are_spread_over_the_visible_gpus():
    from selfadapt.grid.runner import spread_over_gpus

    assert spread_over_gpus("cuda", [1, 0, 1]) == 1 and spread_over_gpus("auto", [2, 2]) == 0
    assert spread_over_gpus("cuda", [0]) is None, "one GPU: the run keeps its device"
    assert spread_over_gpus("cuda:1", [0, 0]) is None and spread_over_gpus("cpu", [0, 0]) is None
