"""The command line end to end on real data (digits ships with scikit-learn), and bad input."""
import json
import subprocess
import sys

import numpy as np
import pytest
import torch

from selfadapt.cli import build_parser, main
from selfadapt.config.flags import run_config_from
from selfadapt.data.corruption import NoiseRecord

CE = ["--dataset", "digits", "--model", "mlp", "--width", "32", "--epochs", "2", "--batch-size", "128",
      "--lr", "0.05", "--augment", "none", "--noise", "symmetric", "--noise-rate", "0.4", "--device", "cpu",
      "--no-progress", "--method", "ce"]
TINY = [*CE, "--method", "sat", "--sat-start-epoch", "1"]


def fails_with(capsys, argv, message):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("selfadapt: error: ") and message in err and "Traceback" not in err
    assert err.count("\n") == 1, "one line"


@pytest.mark.slow
def test_train_writes_a_complete_run_and_eval_reads_it(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", *TINY, "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "of 1297 training labels wrong" in printed
    for name in ("config.json", "metrics.jsonl", "summary.json", "noise.npz", "targets.npy", "checkpoint.pt"):
        assert (out / name).is_file(), name
    config = json.loads((out / "config.json").read_text())
    assert config["data"]["noise_seed"] == 0 and config["model"]["seed"] == 0 and config["data"]["data_seed"] is None
    assert config["method"]["options"] == {"sat_momentum": "auto", "sat_start_epoch": 1, "sat_holdout": 0.1,
                                           "sat_patience": 3, "sat_width_reference": 0}
    metrics = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [m["epoch"] for m in metrics] == [0, 1]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["final_test_accuracy"] == metrics[-1]["test_accuracy"]
    assert 0.3 < summary["noise"]["realised_error_rate"] < 0.42
    assert np.load(out / "targets.npy").shape == (1297, 10)
    record = NoiseRecord.load(out / "noise.npz")
    assert (record.new_labels != record.original_labels).mean() == pytest.approx(summary["noise"]["realised_error_rate"])

    for target in (out / "checkpoint.pt", out):
        assert main(["eval", str(target), "--device", "cpu"]) == 0
        printed = capsys.readouterr().out
        assert f"test_accuracy: {summary['final_test_accuracy']:.4f}" in printed
        assert f"train_accuracy_clean: {summary['final_train_accuracy_clean']:.4f}" in printed


@pytest.mark.slow
def test_a_larger_epochs_extends_a_finished_run_exactly(tmp_path):
    constant = [*TINY, "--schedule", "constant", "--method", "sat", "--sat-momentum", "0.9"]  # neither depends on --epochs
    main(["train", *constant, "--out", str(tmp_path / "a"), "--epochs", "3"])
    main(["train", *constant, "--out", str(tmp_path / "b"), "--epochs", "2"])
    main(["train", *constant, "--out", str(tmp_path / "b"), "--epochs", "3"])
    a = torch.load(tmp_path / "a" / "checkpoint.pt", weights_only=True)
    b = torch.load(tmp_path / "b" / "checkpoint.pt", weights_only=True)
    for key in a["model"]:
        assert torch.equal(a["model"][key], b["model"][key])
    assert np.array_equal(np.load(tmp_path / "a" / "targets.npy"), np.load(tmp_path / "b" / "targets.npy"))


def test_preset_with_overrides():
    args = build_parser().parse_args(["train", "--preset", "cifar100:sat-symmetric-0.6", "--epochs", "100", "--lr", "0.02",
                                     "--out", "unused"])
    config = run_config_from(args).flat()
    assert (config["dataset"], config["model"], config["method"]) == ("cifar100", "resnet34", "sat")
    assert (config["noise"], config["noise_rate"], config["epochs"], config["lr"]) == ("symmetric", 0.6, 100, 0.02)
    assert config["sat_start_epoch"] == 60 and config["batch_size"] == 256


@pytest.mark.parametrize("flags,message", [
    (["--noise-rate", "1.5"], "noise_rate must lie in [0, 1], got 1.5"),
    (["--noise-rate", "-0.1"], "noise_rate must lie in [0, 1]"),
    (["--noise-rate", "abc"], "noise_rate must be float, got 'abc'"),
    (["--sat-momentum", "1.0"], "sat_momentum must lie in [0, 1) or be auto, got 1.0"),
    (["--sat-start-epoch", "2"], "SAT starts at epoch 2 (0-based) but the run has only 2 epochs"),
    (["--gce-q", "0.5"], "gce_q is an option of method gce, not of method 'sat'"),
    (["--method", "gce", "--gce-q", "abc"], "gce_q must be float, got 'abc'"),
    (["--method-option", "gce_qq=0.5"], "unknown setting 'gce_qq' (did you mean 'gce_q'?)"),
    (["--method", "gce", "--method-option", "gce_qq=0.5"], "unknown setting 'gce_qq'"),
    (["--model", "resnet9000"], "unknown model 'resnet9000'"),
    (["--method", "magic"], "unknown method 'magic'"),
    (["--dataset", "imagenet"], "unknown dataset"),
    (["--noise", "adversarial"], "unknown noise 'adversarial'"),
    (["--preset", "cifar10-sat-sym0.5"], "unknown preset"),
    (["--method-option", "gce_q"], "KEY=VALUE"),
])
def test_bad_settings_give_one_line(tmp_path, capsys, flags, message):
    fails_with(capsys, ["train", *TINY, *flags, "--out", str(tmp_path / "run")], message)


def test_missing_and_corrupt_dataset_files(tmp_path, capsys):
    fails_with(capsys, ["train", *TINY, "--dataset", "mnist", "--data-dir", str(tmp_path), "--out",
                        str(tmp_path / "run")], "train-images-idx3-ubyte")
    for name in ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte",
                 "t10k-labels-idx1-ubyte"):
        (tmp_path / name).write_bytes(b"\x00\x00\x08\x03garbage")
    fails_with(capsys, ["train", *TINY, "--dataset", "mnist", "--data-dir", str(tmp_path), "--out",
                        str(tmp_path / "run2")], "ubyte")


@pytest.mark.slow
def test_out_holding_a_different_run_is_refused_and_untouched(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", *TINY, "--epochs", "1", "--sat-start-epoch", "0", "--out", str(out)]) == 0
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    fails_with(capsys, ["train", *TINY, "--epochs", "1", "--sat-start-epoch", "0", "--lr", "0.5", "--out", str(out)],
               "holds a different run")
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before


def test_eval_of_a_bad_checkpoint(tmp_path, capsys):
    bad = tmp_path / "checkpoint.pt"
    bad.write_bytes(b"\x80garbage")
    fails_with(capsys, ["eval", str(bad)], "is not a readable selfadapt checkpoint")
    fails_with(capsys, ["eval", str(tmp_path / "missing.pt")], "does not exist")


@pytest.mark.slow
def test_the_installed_command_exits_2_without_a_traceback(tmp_path):
    result = subprocess.run([sys.executable, "-m", "selfadapt.cli", "train", *TINY, "--noise-rate", "2",
                             "--out", str(tmp_path / "run")], capture_output=True, text=True)
    assert result.returncode == 2
    assert result.stderr.strip() == "selfadapt: error: noise_rate must lie in [0, 1], got 2.0"


def test_subsets_are_class_balanced_and_recorded(tmp_path):
    out = tmp_path / "run"
    assert main(["train", *TINY, "--epochs", "1", "--sat-start-epoch", "0", "--subset", "300", "--test-subset", "100",
                 "--out", str(out)]) == 0
    record = NoiseRecord.load(out / "noise.npz")
    assert len(record.original_labels) == 300
    assert np.bincount(record.original_labels).tolist() == [30] * 10
    assert json.loads((out / "config.json").read_text())["data"]["test_subset"] == 100


def test_a_validation_split_is_held_out_of_the_training_data(tmp_path):
    from selfadapt.config.run import RunConfig
    from selfadapt.experiment import prepare_data

    config = RunConfig.from_flat({"dataset": "digits", "val_size": 200, "noise": "symmetric", "noise_rate": 0.4,
                                  "method": "ce", "data_seed": 3})
    data = prepare_data(config, verbose=False)
    assert len(data.val.labels) == 200 and len(data.labels) == 1297 - 200
    assert len(set(data.val.rows.tolist()) | set(data.dataset.train.source_index.tolist())) == 1297
    assert torch.bincount(data.val.labels).tolist() == [20] * 10, "balanced on the given labels"
    assert (data.val.labels != data.val.clean_labels).float().mean() > 0.2, "validation labels are noisy too"
    again = prepare_data(config, verbose=False)
    assert torch.equal(again.val.rows, data.val.rows)
    with pytest.raises(Exception, match="leaves nothing to train on"):
        prepare_data(RunConfig.from_flat({"dataset": "digits", "val_size": 1297, "method": "ce"}), verbose=False)


def test_a_command_that_fails_writes_nothing_and_the_corrected_one_runs(tmp_path, capsys):
    out = tmp_path / "run"
    fails_with(capsys, ["train", *TINY, "--dataset", "digitz", "--out", str(out)], "unknown dataset 'digitz'")
    (tmp_path / "empty").mkdir()
    fails_with(capsys, ["train", *TINY, "--dataset", "mnist", "--data-dir", str(tmp_path / "empty"),
                        "--out", str(out)], "train-images-idx3-ubyte")
    fails_with(capsys, ["train", *TINY, "--dataset", "mnist", "--data-dir", str(tmp_path / "nothing"),
                        "--out", str(out)], "--data-dir " + str(tmp_path / "nothing") + " does not exist")
    fails_with(capsys, ["train", *TINY, "--method", "gce", "--gce-q", "abc", "--out", str(out)], "gce_q must be float")
    assert not out.exists(), "nothing is written before the settings and the data are checked"
    out.mkdir()
    (out / "config.json").write_text('{"left": "by an older failed command"}')
    (out / ".checkpoint.pt.x1y2z3").write_bytes(b"a temporary file a killed run left")
    assert main(["train", *TINY, "--out", str(out)]) == 0, "a config.json without metrics is not a run"
    assert not list(out.glob(".checkpoint.pt.*")), "stale temporary files are removed"


def test_fewer_epochs_than_a_run_has_done_is_refused(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", *TINY, "--out", str(out)]) == 0
    fails_with(capsys, ["train", *TINY, "--epochs", "1", "--sat-start-epoch", "0", "--out", str(out)],
               "holds a different run")
    assert main(["train", *CE, "--out", str(tmp_path / "ce")]) == 0
    fails_with(capsys, ["train", *CE, "--epochs", "1", "--out", str(tmp_path / "ce")],
               "holds 2 trained epochs, more than --epochs 1")


@pytest.mark.slow
def test_sigterm_stops_like_ctrl_c_and_the_run_resumes(tmp_path):
    import signal
    import time

    out = tmp_path / "run"
    command = [sys.executable, "-m", "selfadapt", "train", *CE, "--epochs", "400", "--schedule", "constant",
               "--progress", "--out", str(out)]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 60
    while time.time() < deadline and not ((out / "checkpoint.pt").exists() and len(
            (out / "metrics.jsonl").read_text().splitlines()) >= 2):
        time.sleep(0.05)
    process.send_signal(signal.SIGTERM)
    stdout, stderr = process.communicate(timeout=60)
    assert process.returncode == 130 and "interrupted" in stderr and "Traceback" not in stderr
    assert "epoch 1 [0..399]: " in stdout, "one line per epoch when the output is not a terminal (0-based)"
    assert not [p for p in out.iterdir() if p.name.startswith(".")], "no temporary file is left"
    done = len((out / "metrics.jsonl").read_text().splitlines())
    assert main(["train", *CE, "--epochs", str(done + 1), "--schedule", "constant", "--out", str(out)]) == 0
    assert [json.loads(line)["epoch"] for line in (out / "metrics.jsonl").read_text().splitlines()] == \
        list(range(done + 1))
