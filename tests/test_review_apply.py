"""apply-review writes the corrected labels in each input's own form; --labels-from retrains on them."""
import csv
import json

import numpy as np
import pytest
from review_support import make_run, write_digit_pngs, write_features

from selfadapt.apps.review.app import ReviewApp
from selfadapt.apps.review.apply import apply_review
from selfadapt.apps.review.suspects import load_run
from selfadapt.cli import main
from selfadapt.config.run import RunConfig
from selfadapt.data.label_overrides import read_label_overrides
from selfadapt.data.registry import load_dataset
from selfadapt.experiment import prepare_data


def review_all(folder, pick=None):
    """Decide on every suspect of the run in ``folder``: accept, or ``pick(item)`` -> (decision, label)."""
    app = ReviewApp(load_run(folder))
    decided = {}
    for position in range(len(app.run.suspects)):
        item = app.run.describe(position)
        decision, label = pick(item, app.run.classes) if pick else ("accept", None)
        decided[item["index"]] = app.decide({"index": item["index"], "decision": decision, "label": label,
                                             "version": 0})["item"]
    return app, decided


def rows_of(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_built_in_data_get_a_list_of_changes_and_the_precision_of_the_fixes(tmp_path, capsys):
    data = make_run(tmp_path / "run", {"dataset": "digits", "noise": "symmetric-exclusive", "noise_rate": 0.2})
    every = {"k": 0}

    def pick(item, classes):  # keep every fifth, skip every seventh, accept the rest
        every["k"] += 1
        return ("keep", None) if every["k"] % 5 == 0 else ("skip", None) if every["k"] % 7 == 0 else ("accept", None)
    app, decided = review_all(tmp_path / "run", pick)
    assert main(["apply-review", str(tmp_path / "run"), "--out", str(tmp_path / "fixed")]) == 0
    changes = rows_of(tmp_path / "fixed" / "changes.csv")
    accepted = {k for k, r in decided.items() if r["decision"] == "accept"}
    assert {int(r["index"]) for r in changes} == accepted
    summary = json.loads((tmp_path / "fixed" / "apply_summary.json").read_text())
    truth, given = data.clean_labels.numpy(), data.labels.numpy()
    right = sum(int(r["label"]) == truth[app.row_of[int(r["index"])]] for r in changes)
    assert summary["changed"] == len(accepted) and summary["changes_right"] == right
    assert summary["precision"] == pytest.approx(right / len(accepted))
    assert summary["wrong_labels_before"] == int((given != truth).sum())
    assert summary["wrong_labels_after"] == summary["wrong_labels_before"] - right
    assert all(r["true"] == str(truth[app.row_of[int(r["index"])]]) for r in changes)
    assert f"precision {right / len(accepted):.3f}" in capsys.readouterr().out
    assert sorted(p.name for p in (tmp_path / "fixed").iterdir()) == ["apply_summary.json", "changes.csv"]


def test_labels_from_a_review_or_changes_file_retrains_on_the_fixed_labels(tmp_path):
    settings = {"dataset": "digits", "noise": "symmetric-exclusive", "noise_rate": 0.2, "subset": 800,
                "model": "mlp", "augment": "none", "epochs": 1, "device": "cpu"}
    data = make_run(tmp_path / "run", settings)
    app, decided = review_all(tmp_path / "run")
    apply_review(tmp_path / "run", tmp_path / "fixed")
    expected = data.labels.numpy().copy()
    for key, row in decided.items():
        expected[app.row_of[key]] = int(row["label"])
    for source in ("run/review.csv", "fixed/changes.csv"):
        fixed = prepare_data(RunConfig.from_flat({**settings, "labels_from": str(tmp_path / source)}), verbose=False)
        assert np.array_equal(fixed.labels.numpy(), expected)
        assert np.array_equal(fixed.clean_labels.numpy(), data.clean_labels.numpy())
        assert fixed.label_error_rate == pytest.approx(float(np.mean(expected != data.clean_labels.numpy())))
        assert fixed.label_error_rate < data.label_error_rate  # what Co-teaching's forget rate is sized by
    out = tmp_path / "retrained"
    argv = ["train", *[f"--{k.replace('_', '-')}={v}" for k, v in settings.items()], "--method", "ce",
            "--labels-from", str(tmp_path / "run/review.csv"), "--no-progress", "--out", str(out)]
    assert main(argv) == 0
    assert json.loads((out / "config.json").read_text())["data"]["labels_from"].endswith("review.csv")


def test_csv_data_get_their_own_csv_back_with_labels_corrected(tmp_path):
    truth = write_digit_pngs(tmp_path / "data", per_class=6, wrong={1, 9, 30, 44})
    data = make_run(tmp_path / "run", {"dataset": f"csv:{tmp_path / 'data' / 'labels.csv'}"},
                    truth=lambda d: [truth[f] for f in d.dataset.train.files])
    review_all(tmp_path / "run", lambda item, classes: ("relabel", "c3") if item["rank"] == 2 else ("accept", None))
    apply_review(tmp_path / "run", tmp_path / "fixed")
    rows = rows_of(tmp_path / "fixed" / "labels.csv")
    original = rows_of(tmp_path / "data" / "labels.csv")
    assert list(rows[0]) == ["path", "label", "note"] and [r["note"] for r in rows] == [r["note"] for r in original]
    changes = {r["file"]: r["label"] for r in rows_of(tmp_path / "fixed" / "changes.csv")}
    assert len(changes) >= 4
    for new, old in zip(rows, original):
        assert (tmp_path / "fixed" / new["path"]).resolve() == (tmp_path / "data" / old["path"]).resolve()
        assert new["label"] == changes.get(old["path"], old["label"])
    again = load_dataset(f"csv:{tmp_path / 'fixed' / 'labels.csv'}")  # usable as a data set as it is
    assert np.array_equal(again.train.images.numpy(), data.dataset.train.images.numpy())
    assert sum(again.train.labels.numpy() != data.labels.numpy()) == len(changes)


def test_an_image_folder_gets_a_path_label_csv_that_labels_from_reads(tmp_path):
    truth = write_digit_pngs(tmp_path / "photos", per_class=5, wrong={2, 13, 27}, layout="folder")
    name = f"imagefolder:{tmp_path / 'photos'}"
    data = make_run(tmp_path / "run", {"dataset": name}, truth=lambda d: [truth[f] for f in d.dataset.train.files])
    review_all(tmp_path / "run")
    apply_review(tmp_path / "run", tmp_path / "fixed")
    rows = rows_of(tmp_path / "fixed" / "labels.csv")
    assert len(rows) == len(data.labels) and list(rows[0]) == ["path", "label"]
    fixed = prepare_data(RunConfig.from_flat({"dataset": name, "model": "mlp", "augment": "none",
                                              "labels_from": str(tmp_path / "fixed" / "labels.csv")}), verbose=False)
    by_path = {(tmp_path / "fixed" / r["path"]).resolve(): r["label"] for r in rows}
    files = data.dataset.train.files
    assert [data.dataset.classes[y] for y in fixed.labels] == [by_path[(tmp_path / "photos" / f).resolve()]
                                                               for f in files]
    assert [fixed.dataset.classes[y] for y in fixed.labels] == [f"c{truth[f]}" for f in files]  # all found, all right
    assert len(fixed.dataset.test) == 10  # the test split stays


def test_features_get_their_npz_back_with_y_corrected(tmp_path):
    truth = write_features(tmp_path / "emb.npz")
    name = f"features:{tmp_path / 'emb.npz'}"
    make_run(tmp_path / "run", {"dataset": name}, truth=truth)
    review_all(tmp_path / "run")
    apply_review(tmp_path / "run", tmp_path / "fixed")
    with np.load(tmp_path / "emb.npz") as before, np.load(tmp_path / "fixed" / "emb.npz") as after:
        assert sorted(before.files) == sorted(after.files)
        for key in before.files:
            if key != "y":
                assert np.array_equal(before[key], after[key])
        assert np.array_equal(after["y"], truth)  # the synthetic targets point at the truth
        changed = before["y"] != after["y"]
    changes = rows_of(tmp_path / "fixed" / "changes.csv")
    assert len(changes) == changed.sum() and changes[0]["file"].startswith("d")  # named by id
    fixed = prepare_data(RunConfig.from_flat({"dataset": name, "model": "mlp", "augment": "none",
                                              "labels_from": str(tmp_path / "fixed" / "changes.csv")}), verbose=False)
    assert np.array_equal(fixed.labels.numpy(), truth)


def test_label_files_naming_unknown_samples_or_classes_are_one_line_errors(tmp_path, capsys):
    digits = load_dataset("digits")
    bad = {"unknown-class.csv": "index,label\n3,seven\n", "unknown-index.csv": "index,label\n99999,7\n",
           "twice.csv": "index,label\n3,7\n3,8\n", "no-key.csv": "name,label\nx,7\n",
           "paths-for-digits.csv": "path,label\na.png,7\n"}
    messages = ["line 2: unknown class 'seven'", "line 2: digits has no training sample with index 99999",
                "line 3: the sample of line 2 is named again", "must name a label column and one of path",
                "digits is not read from files"]
    for (name, text), message in zip(bad.items(), messages):
        (tmp_path / name).write_text(text)
        with pytest.raises(Exception, match=message):
            read_label_overrides(tmp_path / name, digits)
    argv = ["train", "--dataset", "digits", "--model", "mlp", "--augment", "none", "--epochs", "1", "--device", "cpu",
            "--labels-from", str(tmp_path / "unknown-class.csv"), "--out", str(tmp_path / "never")]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "selfadapt: error:" in err and not (tmp_path / "never").exists()
