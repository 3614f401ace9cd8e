"""Bad input, as a new user types it: one line, exit status 2, nothing written. Each case of
docs/results/reliability.md (inputs refused) is here."""
import json

import numpy as np
import pytest
from PIL import Image

from selfadapt.cli import main
from selfadapt.errors import SelfAdaptError
from selfadapt.grid.spec import load_grid

TINY = ["--dataset", "digits", "--model", "mlp", "--width", "16", "--method", "ce", "--augment", "none",
        "--epochs", "2", "--device", "cpu"]


def refused(capsys, args: list[str], message: str, out=None) -> str:
    code = main(args)
    err = capsys.readouterr().err
    assert code == 2, err
    assert err.startswith("selfadapt: error: ") and err.count("\n") == 1, err
    assert message in err, err
    assert out is None or not out.exists(), "nothing is written"
    return err


def image_files(folder, names):
    folder.mkdir(parents=True, exist_ok=True)
    for k, name in enumerate(names):
        Image.fromarray(np.full((8, 8, 3), 40 * k % 255, np.uint8)).save(folder / name)


@pytest.mark.parametrize("extra,message", [
    (["--subset", "1000000000000"], "--subset 1000000000000 is more than the 1297 samples of digits's training split"),
    (["--test-subset", "5000"], "--test-subset 5000 is more than the 500 samples"),
    (["--batch-size", "1000000000000"], "batch_size must be > 0 (and at most 16777216)"),
    (["--epochs", "1e12"], "epochs must be int, got '1e12'"),
    (["--epochs", "1000000000000"], "epochs must be >= 1 (and at most 100000)"),
    (["--lr", "inf"], "lr must be a finite number, got 'inf'"),
    (["--lr", "nan"], "lr must be a finite number, got 'nan'"),
    (["--dataset", "fashion-mnist", "--data-dir", "/some/typo"], "--data-dir /some/typo does not exist"),
    (["--methd", "sat"], "unknown flag(s) --methd (did you mean '--method'?)"),
    (["--gce_q", "0.5"], "unknown flag(s) --gce_q (did you mean --gce-q?)"),
    (["--preset", "cifar1"], "unknown preset 'cifar1' (did you mean 'cifar10'?)"),
    (["--image-size", "64"], "--image-size applies to image collections (imagefolder:, csv:, hf:), not to digits"),
    (["--stream"], "--stream applies to image collections (imagefolder:, csv:, hf:), not to digits"),
    (["--label-column", "fine"], "--label-column names a column of an hf: data set, not of digits"),
    (["--method", "sat-selective", "--sat-start-epoch", "0", "--val-size", "200"],
     "method sat-selective starts after --sat-pretrain-epochs"),
    (["--method", "sat-selective", "--val-size", "200"],
     "selective SAT starts at epoch 150 (0-based) but the run has only 2 epochs, so selective SAT would never run: "
     "lower --sat-pretrain-epochs or raise --epochs"),
])
def test_settings_that_cannot_be_meant(tmp_path, capsys, extra, message):
    out = tmp_path / "run"
    refused(capsys, ["train", *TINY, *extra, "--out", str(out)], message, out)


def test_a_mistyped_flag_is_named_before_a_missing_required_one(capsys):
    refused(capsys, ["embed", "--modle", "hf:x", "--dataset", "digits", "--out", "e.npz"],
            "unknown flag(s) --modle (did you mean '--model'?)")
    refused(capsys, ["train", "--image-sise", "64"], "unknown flag(s) --image-sise (did you mean '--image-size'?)")
    refused(capsys, ["train", "--datas", "digits"], "the following arguments are required: --out")  # a prefix, not a typo
    refused(capsys, [], "the following arguments are required: command")


def test_an_output_inside_a_file(tmp_path, capsys):
    (tmp_path / "file").write_text("x")
    refused(capsys, ["train", *TINY, "--out", str(tmp_path / "file" / "x")],
            f"cannot be created: {tmp_path / 'file'} is a file, not a directory")


def test_features_data_that_is_not_an_npz_of_vectors(tmp_path, capsys):
    out = tmp_path / "run"
    flags = ["--model", "linear", "--augment", "none", "--epochs", "2", "--device", "cpu", "--out", str(out)]
    np.save(tmp_path / "x.npy", np.zeros((4, 3)))
    refused(capsys, ["train", "--dataset", f"features:{tmp_path / 'x.npy'}", *flags],
            "holds a single array (float64 (4, 3)), not an .npz with arrays X and y", out)
    (tmp_path / "empty.npz").write_bytes(b"")
    refused(capsys, ["train", "--dataset", f"features:{tmp_path / 'empty.npz'}", *flags], "it is empty", out)
    np.savez(tmp_path / "huge.npz", X=np.array([[1.0, 2.0], [1e300, 0.0]] * 3), y=[0, 1] * 3)
    refused(capsys, ["train", "--dataset", f"features:{tmp_path / 'huge.npz'}", *flags],
            "X row 1 holds values beyond float32's range", out)
    np.savez(tmp_path / "ok.npz", X=np.random.rand(20, 3), y=[0, 1] * 10)
    refused(capsys, ["train", "--dataset", f"features:{tmp_path / 'ok.npz'}", *flags, "--model", "cnn"],
            "feature vectors take --model linear or mlp", out)


@pytest.mark.parametrize("rows,message", [
    ("path,label\na.png,cat\nb.png,cat\n", "holds one class only (cat): there is nothing to tell apart"),
    ("path,label\na.png,cat\nb.png,dog,extra\n", "line 3 has 3 fields, the header 2"),
    ("path,label\na.png,cat\n../../etc/passwd,dog\n", "line 3: ../../etc/passwd points outside the CSV's folder"),
])
def test_csv_rows_that_cannot_train(tmp_path, capsys, rows, message):
    image_files(tmp_path, ["a.png", "b.png"])
    (tmp_path / "labels.csv").write_text(rows)
    refused(capsys, ["train", "--dataset", f"csv:{tmp_path / 'labels.csv'}", "--model", "mlp", "--augment", "none",
                     "--method", "ce", "--epochs", "1", "--device", "cpu", "--out", str(tmp_path / "run")],
            message, tmp_path / "run")


def test_a_csv_that_is_not_utf8_names_the_line(tmp_path, capsys):
    image_files(tmp_path, ["a.png", "b.png"])
    (tmp_path / "labels.csv").write_bytes("path,label\na.png,caf\u00e9\nb.png,dog\n".encode("latin-1"))
    refused(capsys, ["train", "--dataset", f"csv:{tmp_path / 'labels.csv'}", "--model", "mlp", "--augment", "none",
                     "--method", "ce", "--epochs", "1", "--device", "cpu", "--out", str(tmp_path / "run")],
            "is not UTF-8 text (line 2, byte 20: b'\\xe9'); save it as UTF-8")


def test_csv_labels_that_look_like_typos_are_said(tmp_path, capsys):
    names = [f"{k}.png" for k in range(24)]
    image_files(tmp_path, names)
    labels = ["tshirt"] * 10 + ["trouser"] * 10 + ["Tshirt", "3", "3", "3"]
    (tmp_path / "labels.csv").write_text("path,label,note\n" +
                                         "".join(f"{n},{y},x\n" for n, y in zip(names, labels)))
    assert main(["train", "--dataset", f"csv:{tmp_path / 'labels.csv'}", "--model", "mlp", "--augment", "none",
                 "--method", "ce", "--epochs", "1", "--device", "cpu", "--out", str(tmp_path / "run")]) == 0
    err = capsys.readouterr().err
    assert "classes 'Tshirt', 'tshirt' differ only in case or spacing (1, 10 samples)" in err
    assert "labels mix numbers (3) and names" in err
    assert "class(es) '3' (3), 'Tshirt' (1) have fewer than 5 samples" in err
    assert "column(s) note are not read" in err


def test_a_refused_checkpoint_rewrites_nothing_and_torch_stays_quiet(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", *TINY, "--out", str(out)]) == 0
    (out / "checkpoint.pt").write_bytes(b"\x80\x04K\x01.")      # a plain pickle, not a checkpoint
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    err = refused(capsys, ["train", *TINY, "--epochs", "3", "--out", str(out)],
                  "is not a readable selfadapt checkpoint")
    assert "Warning" not in err
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before, "config.json and noise.npz untouched"


def test_a_grid_key_from_another_tool_gets_a_suggestion(tmp_path):
    grid = tmp_path / "g.toml"
    grid.write_text('methods = ["ce"]\nseeds = [0]\n[settings]\ndataset = "digits"\nlearning_rate = 0.1\n')
    with pytest.raises(SelfAdaptError, match=r"unknown setting 'learning_rate' \(did you mean 'lr'\?\)"):
        load_grid(grid)


def test_the_finder_says_when_its_flags_outrun_its_model(tmp_path, capsys):
    """A linear model after two epochs agrees with few held-out labels: the flags are said to be unreliable,
    beside the share of wrong labels the held-out accuracy allows."""
    out = tmp_path / "run"
    assert main(["find-label-issues", "--dataset", "digits", "--model", "linear", "--augment", "none",
                 "--noise", "symmetric", "--noise-rate", "0.3", "--epochs", "4", "--lr", "0.0005",
                 "--device", "cpu", "--out", str(out)]) == 0
    captured = capsys.readouterr()
    summary = json.loads((out / "summary.json").read_text())
    bound = summary["label_error_share_bound"]
    assert bound is not None and f"the model disagrees with {bound:.1%} of the held-out given labels" in captured.out
    assert summary["label_issues_warnings"] and "selfadapt: warning:" in captured.err
