"""hf: data sets written by the test: save_to_disk folders, parquet folders, columns, splits, errors."""
import csv
import io
import json
import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from selfadapt.data.decode import DecodeSettings, decode
from selfadapt.data.types import LoadOptions
from selfadapt.errors import SelfAdaptError

datasets = pytest.importorskip("datasets", reason="hf: data sets need the hf extra (pip install 'selfadapt[hf]')")
from selfadapt.data.formats.hf import load_hf  # noqa: E402

NAMES = ["zero", "one", "two"]


def png(pixels: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(pixels).resize((24, 24), Image.Resampling.BICUBIC).save(buffer, "PNG")
    return buffer.getvalue()


def digit_split(rows, class_label=True, image="image", label="label"):
    """Real scikit-learn digits of classes 0-2 as PNG images with their labels."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    picked = [i for i in np.flatnonzero(digits.target < 3)][rows]
    images = [{"bytes": png((digits.images[i] * 255 / 16).astype(np.uint8)), "path": None} for i in picked]
    labels = [int(digits.target[i]) for i in picked]
    features = datasets.Features({image: datasets.Image(),
                                  label: datasets.ClassLabel(names=NAMES) if class_label else datasets.Value("string"),
                                  "note": datasets.Value("string")})
    values = labels if class_label else [NAMES[y] for y in labels]
    return datasets.Dataset.from_dict({image: images, label: values, "note": ["x"] * len(picked)}, features=features)


@pytest.fixture
def saved(tmp_path):
    data = datasets.DatasetDict(train=digit_split(slice(0, 45)), test=digit_split(slice(45, 60)))
    data.save_to_disk(str(tmp_path / "saved"))
    return tmp_path / "saved", data


def options(tmp_path, **kwargs):
    return LoadOptions(cache_dir=str(tmp_path / "cache"), verbose=False, **kwargs)


def test_a_save_to_disk_folder_with_class_labels_and_a_test_split(tmp_path, saved):
    folder, data = saved
    loaded = load_hf(str(folder), options(tmp_path))
    assert loaded.classes == NAMES and (len(loaded.train), len(loaded.test)) == (45, 15)
    assert loaded.train.labels.tolist() == data["train"]["label"] and loaded.test.files[0] == "test/0"
    assert loaded.image_size == 24 and loaded.in_channels == 1  # grey PNGs, their own size
    first, _ = decode(_bytes(data["train"], 0), DecodeSettings(24, 1))
    np.testing.assert_array_equal(loaded.train.images[0].numpy(), first)
    again = load_hf(str(folder), options(tmp_path))  # decoded once, reused
    assert np.array_equal(again.train.images.numpy(), loaded.train.images.numpy())


def _bytes(part, row):
    return part.cast_column("image", datasets.Image(decode=False))[row]["image"]["bytes"]


def test_a_split_is_chosen_after_the_colon_and_an_unknown_one_is_refused(tmp_path, saved):
    folder, _ = saved
    only_test = load_hf(f"{folder}:test", options(tmp_path))
    assert (len(only_test.train), len(only_test.test)) == (15, 0)
    with pytest.raises(SelfAdaptError, match="has no split 'valid'; its splits: train, test"):
        load_hf(f"{folder}:valid", options(tmp_path))


def test_a_folder_of_parquet_files(tmp_path):
    (tmp_path / "pq").mkdir()
    digit_split(slice(0, 30)).to_parquet(str(tmp_path / "pq" / "train-00000-of-00001.parquet"))
    digit_split(slice(30, 40)).to_parquet(str(tmp_path / "pq" / "test-00000-of-00001.parquet"))
    loaded = load_hf(str(tmp_path / "pq"), options(tmp_path, image_size=16))
    assert (len(loaded.train), len(loaded.test), loaded.image_size) == (30, 10, 16) and loaded.classes == NAMES


def test_named_columns_and_string_labels(tmp_path):
    part = digit_split(slice(0, 12), class_label=False, image="picture", label="kind")
    part.save_to_disk(str(tmp_path / "plain"))
    loaded = load_hf(str(tmp_path / "plain"), options(tmp_path, image_column="picture", label_column="kind"))
    assert loaded.classes == sorted(NAMES) and len(loaded.test) == 0
    assert [loaded.classes[y] for y in loaded.train.labels.tolist()] == part["kind"]
    with pytest.raises(SelfAdaptError, match="cannot tell which column holds the labels .*--label-column"):
        load_hf(str(tmp_path / "plain"), options(tmp_path))
    with pytest.raises(SelfAdaptError, match="has no column 'photo'; its columns: picture, kind, note"):
        load_hf(str(tmp_path / "plain"), options(tmp_path, image_column="photo", label_column="kind"))


def test_a_hub_name_offline_without_a_cache_is_one_line(tmp_path):
    code = ("from selfadapt.data.formats.hf import load_hf\nfrom selfadapt.data.types import LoadOptions\n"
            "from selfadapt.errors import SelfAdaptError\n"
            "try:\n    load_hf('someone/no-such-images', LoadOptions())\n"
            "except SelfAdaptError as e:\n    print(e)\n")
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf")}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    line = out.stdout.strip()
    assert line.startswith("cannot load Hugging Face data set 'someone/no-such-images': ") and "\n" not in line
    assert "offline, a hub data set must already be in the datasets cache" in line


@pytest.mark.slow
def test_an_unreachable_hub_is_said_at_once_in_one_line(tmp_path):
    """The hub on but unreachable (a closed local port): the cache is read, and what it lacks is one line."""
    env = {**os.environ, "HF_HOME": str(tmp_path / "hf"), "HF_ENDPOINT": "http://127.0.0.1:9"}
    env.pop("HF_HUB_OFFLINE", None)
    out = subprocess.run([sys.executable, "-m", "selfadapt", "train", "--dataset", "hf:someone/no-such-images",
                          "--out", str(tmp_path / "run")], capture_output=True, text=True, env=env, timeout=120)
    assert out.returncode == 2 and out.stdout == "" and out.stderr.count("\n") == 1, out.stderr
    assert "is not in the datasets cache and the hub cannot be reached (127.0.0.1: " in out.stderr
    assert not (tmp_path / "run").exists()


def test_without_the_extra_the_error_names_it(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "datasets", None)
    with pytest.raises(SelfAdaptError, match=r"pip install 'selfadapt\[hf\]'"):
        load_hf("anything", options(tmp_path))


def test_find_label_issues_on_an_hf_folder_uses_its_test_split(tmp_path, saved):
    from selfadapt.cli import main

    folder, _ = saved
    out = tmp_path / "run"
    assert main(["find-label-issues", "--dataset", f"hf:{folder}", "--model", "mlp", "--epochs", "2", "--device",
                 "cpu", "--no-progress", "--cache-dir", str(tmp_path / "cache"), "--out", str(out)]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert "final_test_accuracy" in summary
    with open(out / "label_scores.csv", newline="") as f:
        assert sorted(row["file"] for row in csv.DictReader(f)) == sorted(f"train/{i}" for i in range(45))
