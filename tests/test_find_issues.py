"""find-label-issues: planted label errors in an image folder are found, and the CSV is well formed."""
import csv
import json

import numpy as np
import pytest
from PIL import Image

from selfadapt.cli import main
from selfadapt.data.registry import load_dataset


def write_digit_folder(root, per_class=40, planted=12, seed=0):
    """Real digits as PNG files in class folders, ``planted`` of them filed under a wrong class."""
    digits = load_dataset("digits")
    rng = np.random.default_rng(seed)
    images, labels = digits.train.images.numpy(), digits.train.labels.numpy()
    chosen = np.concatenate([np.flatnonzero(labels == c)[:per_class] for c in range(10)])
    wrong = set(rng.choice(chosen, size=planted, replace=False).tolist())
    planted_files = {}
    for i in chosen:
        true = int(labels[i])
        given = (true + 1 + int(rng.integers(9))) % 10 if i in wrong else true
        folder = root / "train" / f"class{given}"
        folder.mkdir(parents=True, exist_ok=True)
        name = f"img{i:04d}.png"
        Image.fromarray(images[i, 0]).resize((16, 16)).save(folder / name)
        if i in wrong:
            planted_files[f"train/class{given}/{name}"] = (given, true)
    return planted_files


@pytest.mark.slow
def test_find_label_issues_on_an_image_folder(tmp_path, capsys):
    planted = write_digit_folder(tmp_path / "data")
    out = tmp_path / "run"
    argv = ["find-label-issues", "--dataset", f"imagefolder:{tmp_path / 'data'}", "--model", "mlp", "--width", "128",
            "--epochs", "30", "--sat-start-epoch", "8", "--batch-size", "32", "--lr", "0.05", "--augment", "none",
            "--device", "cpu", "--no-progress", "--out", str(out)]
    assert main(argv) == 0
    with open(out / "label_issues.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0]) == ["index", "file", "given_label", "suggested_label", "given_class", "suggested_class",
                             "confidence", "score"]
    confidences = [float(r["confidence"]) for r in rows]
    assert confidences == sorted(confidences, reverse=True) and all(0 < c <= 1 for c in confidences)
    assert all(r["given_label"] != r["suggested_label"] for r in rows)
    assert all(r["given_class"] == f"class{r['given_label']}" for r in rows)
    flagged = {r["file"]: int(r["suggested_label"]) for r in rows}
    found = [f for f in planted if f in flagged]
    assert len(found) >= 0.75 * len(planted), f"found {len(found)} of {len(planted)} planted errors"
    assert sum(flagged[f] == planted[f][1] for f in found) >= 0.75 * len(found), "suggests the true class"
    assert len(rows) <= 2 * len(planted), "few false alarms"
    summary = json.loads((out / "summary.json").read_text())
    assert summary["label_issues_found"] == len(rows) and "label_issues" not in summary  # truth unknown here
    with open(out / "label_scores.csv", newline="") as f:
        scored = list(csv.DictReader(f))
    assert len(scored) == 400 and len({r["file"] for r in scored}) == 400
    scores = [float(r["score"]) for r in scored]
    assert scores == sorted(scores, reverse=True) and 0 <= scores[-1] and scores[0] <= 1
    assert (out / "label_issues.png").stat().st_size > 1000
    printed = capsys.readouterr().out
    assert f"{len(rows)} suspected label errors of 400 training samples" in printed
    assert "most frequent given -> suggested: class" in printed


@pytest.mark.slow
def test_default_sat_settings_find_injected_noise(tmp_path):
    """No SAT flag: the automatic start epoch and momentum find the injected errors (F1 >= 0.75)."""
    out = tmp_path / "run"
    assert main(["find-label-issues", "--dataset", "digits", "--model", "mlp", "--width", "128", "--epochs", "15",
                 "--lr", "0.05", "--augment", "none", "--noise", "symmetric-exclusive",
                 "--noise-rate", "0.2", "--device", "cpu", "--no-progress", "--out", str(out)]) == 0
    summary = json.loads((out / "summary.json").read_text())
    scores = summary["label_issues"]
    assert scores["true_errors"] == round(0.2 * 1297)
    assert scores["f1"] >= 0.75 and scores["precision"] > 0.7 and scores["recall"] > 0.8
    assert 1 <= summary["final_sat_start_epoch"] < 15 and 0 < summary["final_sat_momentum"] <= 0.9
    with open(out / "label_issues.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == scores["flagged"] and all(r["file"] == "" for r in rows)
    ranking = summary["label_ranking"]
    assert ranking["k"] == scores["true_errors"] and ranking["precision_at_k"] > 0.75 and ranking["roc_auc"] > 0.9


@pytest.mark.slow
def test_top_k_lists_the_k_highest_scores(tmp_path):
    out = tmp_path / "run"
    assert main(["find-label-issues", "--dataset", "digits", "--subset", "300", "--model", "mlp", "--epochs", "6",
                 "--sat-start-epoch", "2", "--noise", "symmetric", "--noise-rate", "0.3", "--device", "cpu",
                 "--no-progress", "--top", "7", "--out", str(out)]) == 0
    read = lambda name: list(csv.DictReader(open(out / name, newline="")))
    listed, scored = read("label_issues.csv"), read("label_scores.csv")
    assert len(listed) == 7 and listed == scored[:7] and len(scored) == 300
    ranking = json.loads((out / "summary.json").read_text())["label_ranking"]
    assert ranking["k"] == 7


def test_find_label_issues_refuses_a_non_sat_method_and_a_bad_top(tmp_path, capsys):
    assert main(["find-label-issues", "--dataset", "digits", "--method", "ce", "--out", str(tmp_path / "r")]) == 2
    assert "trains with SAT" in capsys.readouterr().err
    assert main(["find-label-issues", "--dataset", "digits", "--top", "0", "--out", str(tmp_path / "r")]) == 2
    assert "--top must be at least 1" in capsys.readouterr().err
    assert not (tmp_path / "r").exists()


@pytest.mark.slow
def test_cpu_runs_get_cpu_sized_defaults_and_flags_override_them(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["find-label-issues", "--dataset", "digits", "--subset", "200", "--epochs", "2", "--device", "cpu",
                 "--no-progress", "--out", str(out)]) == 0
    assert "find-label-issues defaults: --model cnn --batch-size 128 --lr 0.05" in capsys.readouterr().out
    config = json.loads((out / "config.json").read_text())
    assert config["model"]["model"] == "cnn" and config["engine"]["epochs"] == 2 and config["data"]["batch_size"] == 128
