"""Run directories for the review tests, on real data: the data set is rebuilt exactly as the run
saw it (``prepare_data``), and the targets are made from the known truth, so which samples are
suspects, and what the right answer is, is known to the test."""
from __future__ import annotations

import csv
import json

import numpy as np
from PIL import Image

from selfadapt.apps.noisy_labels.listing import write_label_issues_csv
from selfadapt.config.run import RunConfig
from selfadapt.data.registry import load_dataset
from selfadapt.experiment import prepare_data
from selfadapt.label_errors import suspected_label_errors


def make_run(folder, settings: dict, *, truth=None, finder: bool = True, seed: int = 0):
    """A run directory for ``settings`` (flat names) whose targets point at ``truth`` (per training
    row, or a function of the data giving them; default the run's clean labels) with 0.8, plus
    noise; with ``finder`` also
    ``label_issues.csv`` (the flagged samples, as find-label-issues writes it). Returns the data."""
    config = RunConfig.from_flat({"model": "mlp", "augment": "none", "epochs": 1, "device": "cpu", **settings})
    data = prepare_data(config, verbose=False)
    truth = truth(data) if callable(truth) else truth
    truth = data.clean_labels.numpy() if truth is None else np.asarray(truth)
    rng = np.random.default_rng(seed)
    classes = data.dataset.num_classes
    targets = rng.dirichlet(np.ones(classes), size=len(truth)).astype(np.float32) * 0.2
    targets[np.arange(len(truth)), truth] += 0.8
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text(json.dumps(config.to_dict()))
    np.save(folder / "targets.npy", targets)
    data.noise.save(folder / "noise.npz")
    if finder:
        import torch

        issues = suspected_label_errors(torch.from_numpy(targets), data.labels)
        train = data.dataset.train
        write_label_issues_csv(folder / "label_issues.csv", issues, source_index=train.source_index,
                               classes=data.dataset.classes, files=train.files)
    return data


def write_digit_pngs(root, *, per_class=12, wrong=(), layout="csv"):
    """Real digits as PNG files: ``layout="csv"`` writes ``root/img/*.png`` and ``root/labels.csv``
    (with an extra ``note`` column); ``"folder"`` writes ``root/train/<class>/*.png`` and a test
    split. The images whose position is in ``wrong`` get the next class as their label. Returns the
    true class of every written file (relative to the data root)."""
    digits = load_dataset("digits")
    images, labels = digits.train.images.numpy(), digits.train.labels.numpy()
    chosen = np.concatenate([np.flatnonzero(labels == c)[:per_class] for c in range(10)])
    truth, rows = {}, []
    for k, i in enumerate(chosen):
        given = (int(labels[i]) + 1) % 10 if k in wrong else int(labels[i])
        name = f"img/{i:04d}.png" if layout == "csv" else f"train/c{given}/{i:04d}.png"
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(images[i, 0]).save(root / name)
        truth[name] = int(labels[i])
        rows.append((name, f"c{given}", f"row {k}"))
    if layout == "csv":
        with open(root / "labels.csv", "w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(["path", "label", "note"])
            writer.writerows(rows)
    else:
        for c in range(10):
            (root / "test" / f"c{c}").mkdir(parents=True, exist_ok=True)
            Image.fromarray(images[np.flatnonzero(labels == c)[-1], 0]).save(root / "test" / f"c{c}" / "t.png")
    return truth


def write_features(path, *, n=None, wrong=0.2, seed=0):
    """scikit-learn's real digits as 64-d feature vectors with ids and a text per row; a share
    ``wrong`` of the labels moved to the next class. Returns the true labels."""
    digits = load_dataset("digits")
    x = digits.train.images.numpy().reshape(len(digits.train), -1).astype(np.float32) / 255
    y = digits.train.labels.numpy()
    if n is not None:  # repeat the digits to n rows (a large synthetic run)
        reps = np.resize(np.arange(len(y)), n)
        x, y = x[reps] + np.random.default_rng(seed).normal(0, 0.01, (n, x.shape[1])).astype(np.float32), y[reps]
    rng = np.random.default_rng(seed)
    given = y.copy()
    flip = rng.random(len(y)) < wrong
    given[flip] = (y[flip] + 1) % 10
    ids = np.array([f"d{i:06d}" for i in range(len(y))])
    texts = np.array([f"digit image {i}" for i in range(len(y))])
    classes = np.array(["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"])
    np.savez(path, X=x, y=given, ids=ids, texts=texts, classes=classes, X_test=x[:50], y_test=y[:50])
    return y
