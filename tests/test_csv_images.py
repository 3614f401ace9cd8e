"""csv:FILE data sets: real digit images listed in a CSV, labels as names or integers, bad rows refused."""
import csv

import numpy as np
import pytest
from PIL import Image

from selfadapt.cli import main
from selfadapt.data.registry import load_dataset
from selfadapt.errors import SelfAdaptError


def write_digit_csv(root, labels_as=str, per_class=6):
    """Real 8x8 digits as PNGs under root/img/, listed in root/list.csv (classes 0-2 named or numbered)."""
    digits = load_dataset("digits").train
    names = ["zero", "one", "two"]
    rows = []
    (root / "img").mkdir(parents=True)
    for c in range(3):
        for i in np.flatnonzero(digits.labels.numpy() == c)[:per_class]:
            Image.fromarray(digits.images[i, 0].numpy()).save(root / "img" / f"{i}.png")
            rows.append((f"img/{i}.png", names[c] if labels_as is str else c, int(digits.images[i].sum())))
    with open(root / "list.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["path", "label"])
        writer.writerows(row[:2] for row in rows)
    return root / "list.csv", rows


@pytest.mark.parametrize("labels_as", [str, int])
def test_csv_rows_load_with_their_files_and_labels(tmp_path, labels_as):
    file, rows = write_digit_csv(tmp_path, labels_as)
    data = load_dataset(f"csv:{file}")
    assert data.classes == (["one", "two", "zero"] if labels_as is str else ["0", "1", "2"])
    assert data.train.files == [r[0] for r in rows] and len(data.test) == 0
    assert [data.classes[k] for k in data.train.labels.tolist()] == [str(r[1]) for r in rows]
    assert [int(im.sum()) for im in data.train.images] == [r[2] for r in rows]  # the files' own pixels


@pytest.mark.parametrize("edit,message", [
    (lambda lines: lines + [lines[1]], "is listed twice (first on line 2)"),
    (lambda lines: lines + ["img/nope.png,zero"], "line 20: image file img/nope.png does not exist"),
    (lambda lines: lines[:1] + [",zero"] + lines[1:], "line 2: empty path or label"),
    (lambda lines: ["file,label"] + lines[1:], "header must name columns path and label"),
])
def test_bad_rows_are_one_clear_error(tmp_path, edit, message):
    file, _ = write_digit_csv(tmp_path)
    file.write_text("\n".join(edit(file.read_text().splitlines())) + "\n")
    with pytest.raises(SelfAdaptError, match=message.replace("(", r"\(").replace(")", r"\)")):
        load_dataset(f"csv:{file}")


@pytest.mark.slow
def test_integer_labels_must_cover_every_class_and_unreadable_images_are_named(tmp_path, capsys):
    file, _ = write_digit_csv(tmp_path, int)
    lines = file.read_text().splitlines()
    file.write_text("\n".join(line.replace(",1", ",3") for line in lines) + "\n")
    with pytest.raises(SelfAdaptError, match=r"class\(es\) 1 have no sample"):
        load_dataset(f"csv:{file}")
    file.write_text("\n".join(lines) + "\n")
    (tmp_path / lines[1].split(",")[0]).write_bytes(b"not an image")
    out = tmp_path / "run"
    assert main(["find-label-issues", "--dataset", f"csv:{file}", "--out", str(out)]) == 2
    assert f"cannot read image {lines[1].split(',')[0]}" in capsys.readouterr().err and not out.exists()


def test_find_label_issues_on_a_csv_keeps_the_paths(tmp_path):
    file, rows = write_digit_csv(tmp_path)
    out = tmp_path / "run"
    assert main(["find-label-issues", "--dataset", f"csv:{file}", "--model", "mlp", "--epochs", "4",
                 "--augment", "none", "--device", "cpu", "--no-progress", "--out", str(out)]) == 0
    with open(out / "label_scores.csv", newline="") as f:
        scored = list(csv.DictReader(f))
    assert sorted(r["file"] for r in scored) == sorted(r[0] for r in rows)


def test_skip_unreadable_leaves_out_and_lists_broken_images(tmp_path, capsys):
    file, rows = write_digit_csv(tmp_path)
    broken = rows[4][0]
    (tmp_path / broken).write_bytes((tmp_path / broken).read_bytes()[:40])  # a truncated PNG
    with pytest.raises(SelfAdaptError, match=f"cannot read image {broken}"):
        load_dataset(f"csv:{file}")
    data = load_dataset(f"csv:{file}", skip_unreadable=True)
    assert data.train.files == [r[0] for r in rows if r[0] != broken]
    assert f"skipped 1 unreadable image(s) in {tmp_path}: {broken}" in capsys.readouterr().err
    out = tmp_path / "run"
    assert main(["find-label-issues", "--dataset", f"csv:{file}", "--skip-unreadable", "--model", "mlp", "--epochs",
                 "2", "--augment", "none", "--device", "cpu", "--no-progress", "--out", str(out)]) == 0
    assert len(list(csv.DictReader(open(out / "label_scores.csv", newline="")))) == len(rows) - 1


def test_skip_unreadable_in_an_image_folder(tmp_path, capsys):
    write_digit_csv(tmp_path / "src")
    for k, png in enumerate(sorted((tmp_path / "src" / "img").iterdir())):
        folder = tmp_path / "folder" / f"class{k % 2}"
        folder.mkdir(parents=True, exist_ok=True)
        (folder / png.name).write_bytes(png.read_bytes() if k != 3 else b"broken")
    data = load_dataset(f"imagefolder:{tmp_path / 'folder'}", skip_unreadable=True)
    assert len(data.train) == 17 and "skipped 1 unreadable image(s)" in capsys.readouterr().err
