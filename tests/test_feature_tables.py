"""Feature tables at scale: defaults sized by the table, block-wise checks and writers that never hold a
second copy, and pred_probs.npy (SAT's targets for cleanlab) in label_scores.csv's order."""
import csv
import io
import json

import numpy as np
import pytest
import torch

from selfadapt.apps.noisy_labels.finder import finder_defaults
from selfadapt.apps.noisy_labels.listing import write_label_issues_csv
from selfadapt.apps.noisy_labels.tables import table_defaults, table_shape
from selfadapt.cli import main
from selfadapt.data.registry import load_dataset
from selfadapt.errors import SelfAdaptError
from selfadapt.label_errors import LabelIssues, top_suspects
from selfadapt.summary import save_rows


def test_a_large_table_gets_batches_epochs_and_a_table_dtype_sized_by_it(tmp_path):
    rows = 60_000
    np.savez(tmp_path / "t.npz", X=np.zeros((rows, 4), np.float32), y=np.arange(rows) % 7)
    assert table_shape(str(tmp_path / "t.npz")) == (rows, 7) and table_shape(str(tmp_path / "missing.npz")) == (0, 0)
    defaults = finder_defaults(f"features:{tmp_path / 't.npz'}", "cpu")
    assert defaults == {"model": "linear", "augment": "none", "batch_size": 2048, "epochs": 17, "optimizer": "adam",
                        "lr": 0.001414}
    assert table_defaults(1_000_000, 1000)["sat_table_dtype"] == "bfloat16"  # a float32 table would be 4 GB
    assert "sat_table_dtype" not in table_defaults(1_000_000, 100) and table_defaults(1_000_000, 10)["epochs"] == 4


def test_the_label_csv_is_what_the_csv_module_writes_in_blocks(tmp_path):
    classes = ["plain", "with, comma", 'with "quotes"', "two\nlines"]
    issues = LabelIssues(torch.tensor([3, 0, 2, 1, 4]), torch.tensor([1, 0, 3, 2, 1]), torch.tensor([0, 2, 1, 3, 3]),
                         torch.tensor([0.9, 0.8, 0.71234567, 0.6, 0.5]))
    files = ["a.jpg", "b,c.jpg", "d.jpg", 'e"f.jpg', "g.jpg"]
    scores = torch.tensor([0.1, 0.2, 0.3, 0.4, 0.5])
    count = write_label_issues_csv(tmp_path / "x.csv", issues, source_index=torch.arange(5) * 10, classes=classes,
                                   files=files, scores=scores, rows=2)
    expected = io.StringIO(newline="")
    writer = csv.writer(expected)
    writer.writerow(["index", "file", "given_label", "suggested_label", "given_class", "suggested_class", "confidence",
                     "score"])
    for p, g, s, c in zip(*(t.tolist() for t in issues)):
        writer.writerow([p * 10, files[p], g, s, classes[g], classes[s], f"{c:.6f}", f"{scores[p].item():.6f}"])
    assert count == 5 and (tmp_path / "x.csv").read_bytes() == expected.getvalue().encode()


def test_rows_are_saved_in_blocks_in_order_normalised_and_in_half_precision(tmp_path):
    table = torch.rand(300_000, 3).bfloat16()  # blocks of about 4M values: one block here, three (of 2 rows) below
    order = torch.randperm(300_000)
    save_rows(tmp_path / "p.npy", table, order=order, normalise=True)
    saved = np.load(tmp_path / "p.npy")
    expected = table.float()[order]
    assert saved.dtype == np.float32 and np.allclose(saved, (expected / expected.sum(1, keepdim=True)).numpy())
    wide = torch.rand(5, 2_000_000).half()
    save_rows(tmp_path / "w.npy", wide, dtype=torch.float16)
    assert np.load(tmp_path / "w.npy").dtype == np.float16 and np.array_equal(np.load(tmp_path / "w.npy"), wide.numpy())


def test_top_suspects_of_every_row_needs_no_gathered_copy_and_agrees_with_the_gather():
    targets = torch.rand(1000, 5).softmax(1)
    given = torch.randint(0, 5, (1000,))
    everything, few = top_suspects(targets, given, 1000), top_suspects(targets, given, 10)
    for a, b in zip(everything, few):
        assert torch.equal(a[:10], b)


def test_bad_rows_are_found_past_the_first_block(tmp_path):
    x = np.zeros((40_000, 3))
    x[33_333, 1] = np.nan
    np.savez(tmp_path / "nan.npz", X=x, y=np.arange(40_000) % 2)
    with pytest.raises(SelfAdaptError, match="row 33333 holds NaN or infinite values"):
        load_dataset(f"features:{tmp_path / 'nan.npz'}")
    x[33_333, 1] = 0
    x[20_000, 0] = 1e300
    np.savez(tmp_path / "huge.npz", X=x, y=np.arange(40_000) % 2)
    with pytest.raises(SelfAdaptError, match="row 20000 holds values beyond float32's range"):
        load_dataset(f"features:{tmp_path / 'huge.npz'}")


def test_pred_probs_are_the_targets_in_label_scores_order_and_cleanlab_reads_them(tmp_path):
    cleanlab = pytest.importorskip("cleanlab.filter")
    digits = load_dataset("digits")
    rng = np.random.default_rng(0)
    y = digits.train.labels.numpy().copy()
    flip = rng.random(len(y)) < 0.2
    y[flip] = (y[flip] + rng.integers(1, 10, flip.sum())) % 10
    np.savez(tmp_path / "f.npz", X=digits.train.images.flatten(1).numpy() / 16.0, y=y)
    out = tmp_path / "run"
    assert main(["find-label-issues", "--dataset", f"features:{tmp_path / 'f.npz'}", "--epochs", "20",
                 "--batch-size", "64", "--device", "cpu", "--no-progress", "--out", str(out)]) == 0
    rows = list(csv.DictReader(open(out / "label_scores.csv", newline="")))
    index, labels = (np.array([int(r[k]) for r in rows]) for k in ("index", "given_label"))
    pred_probs, targets = np.load(out / "pred_probs.npy"), np.load(out / "targets.npy")
    assert pred_probs.shape == targets.shape and np.allclose(pred_probs.sum(1), 1, atol=1e-6)
    assert np.allclose(pred_probs, targets[index] / targets[index].sum(1, keepdims=True), atol=1e-6)
    assert np.array_equal(labels, y[index]) and json.loads((out / "summary.json").read_text())["pred_probs_file"]
    flagged = cleanlab.find_label_issues(labels, pred_probs)
    wrong = flip[index]
    assert flagged.sum() > 0 and (flagged & wrong).sum() / flagged.sum() > 0.7  # cleanlab's flags from SAT's targets
