"""features:FILE.npz: real digit vectors as features, with ids and class names; bad arrays refused."""
import csv
import json

import numpy as np
import pytest

from selfadapt.cli import main
from selfadapt.data.registry import load_dataset
from selfadapt.errors import SelfAdaptError


def digit_features(path, **changes):
    """scikit-learn's real 8x8 digits as 64-d vectors, with ids and class names (``changes`` override arrays)."""
    digits = load_dataset("digits")
    arrays = dict(X=digits.train.images.flatten(1).numpy() / 16.0, y=digits.train.labels.numpy(),
                  X_test=digits.test.images.flatten(1).numpy() / 16.0, y_test=digits.test.labels.numpy(),
                  ids=np.array([f"digit-{i}" for i in range(len(digits.train))]),
                  classes=np.array(["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]))
    arrays.update(changes)
    np.savez(path, **{k: v for k, v in arrays.items() if v is not None})
    return arrays


def test_features_load_as_vectors_with_their_statistics(tmp_path):
    arrays = digit_features(tmp_path / "f.npz")
    data = load_dataset(f"features:{tmp_path / 'f.npz'}")
    assert data.train.images.shape == (1297, 64, 1, 1) and data.in_channels == 64 and data.image_size == 1
    assert np.allclose(data.train.images[:, :, 0, 0].numpy(), arrays["X"]) and len(data.test) == 500
    assert data.classes[3] == "three" and data.train.files[5] == "digit-5"
    assert np.allclose(data.mean, arrays["X"].mean(0), atol=1e-6) and min(data.std) > 0  # constant pixels: std 1


@pytest.mark.slow
def test_find_label_issues_on_features_with_a_linear_model(tmp_path, capsys):
    digit_features(tmp_path / "f.npz")
    out = tmp_path / "run"
    assert main(["find-label-issues", "--dataset", f"features:{tmp_path / 'f.npz'}", "--model", "linear",
                 "--augment", "none", "--noise", "symmetric-exclusive", "--noise-rate", "0.2", "--epochs", "20",
                 "--batch-size", "64", "--lr", "0.05", "--device", "cpu", "--no-progress", "--out", str(out)]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["label_issues"]["f1"] > 0.7 and summary["final_test_accuracy"] > 0.85
    rows = list(csv.DictReader(open(out / "label_issues.csv", newline="")))
    assert rows and all(r["file"].startswith("digit-") for r in rows) and not (out / "label_issues.png").exists()
    assert "most frequent given -> suggested" in capsys.readouterr().out


@pytest.mark.parametrize("changes,message", [
    ({"X": None}, "lacks array(s) X"),
    ({"y": np.zeros(1297, dtype=np.int64)}, "class(es) one, two, three"),
    ({"y": np.full(1297, 12)}, "row 0 has label 12, outside the 10 classes"),
    ({"y": np.r_[-1, np.zeros(1296, dtype=np.int64)]}, "row 0 has label -1"),
    ({"X": np.where(np.arange(1297)[:, None] == 7, np.nan, 0.5)}, "X row 7 holds NaN or infinite values"),
    ({"ids": np.array(["a"] * 1297)}, "id 'a' is used by rows 0 and 1"),
    ({"X_test": None}, "X_test and y_test come together"),
    ({"y": np.zeros(5, dtype=np.int64)}, "X has 1297 rows but y has 5 labels"),
])
def test_bad_arrays_are_one_clear_error(tmp_path, changes, message):
    digit_features(tmp_path / "f.npz", **changes)
    with pytest.raises(SelfAdaptError, match=message.replace("(", r"\(").replace(")", r"\)")):
        load_dataset(f"features:{tmp_path / 'f.npz'}")


def test_features_need_no_augmentation_and_bad_files_exit_2(tmp_path, capsys):
    digit_features(tmp_path / "f.npz")
    assert main(["train", "--dataset", f"features:{tmp_path / 'f.npz'}", "--out", str(tmp_path / "r")]) == 2
    assert "add --augment none" in capsys.readouterr().err  # find-label-issues sets it for features itself
    (tmp_path / "bad.npz").write_bytes(b"not a zip")
    assert main(["find-label-issues", "--dataset", f"features:{tmp_path / 'bad.npz'}", "--augment", "none",
                 "--out", str(tmp_path / "r")]) == 2
    assert "cannot read" in capsys.readouterr().err and not (tmp_path / "r").exists()
