"""Users' image collections end to end: photos of every kind through the CLI, the size chosen and
said, the cache reused, streaming identical to memory, the finder naming files, and bad input
(one line, exit 2, nothing written; or skipped and listed)."""
import csv
import io
import json
import os
import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from selfadapt.cli import main
from selfadapt.data import collection
from selfadapt.data.registry import load_dataset
from selfadapt.data.types import LoadOptions


def digit(i: int) -> np.ndarray:
    from sklearn.datasets import load_digits

    digits = load_digits()
    return (digits.images[i] * 255 / 16).astype(np.uint8), int(digits.target[i])


def photo(i: int, size=(120, 90)) -> tuple[Image.Image, int]:
    """A real digit, coloured and enlarged to a small photo (a 4:3 frame around it, mirrored edges)."""
    grey, label = digit(i)
    square = Image.fromarray(np.stack([grey, 255 - grey, grey // 2], -1)).resize((size[1], size[1]),
                                                                                  Image.Resampling.BICUBIC)
    pad = (size[0] - size[1]) // 2
    pixels = np.pad(np.asarray(square), ((0, 0), (pad, size[0] - size[1] - pad), (0, 0)), mode="reflect")
    return Image.fromarray(pixels), label


def write_collection(root, count=60, classes=(0, 1, 2)):
    """Photos of digits 0-2 in class folders, in every format and mode a phone or a scanner gives."""
    from sklearn.datasets import load_digits

    target = load_digits().target
    rows = [i for i in range(len(target)) if target[i] in classes][:count]
    for k, i in enumerate(rows):
        image, label = photo(i, size=(120 + 8 * (k % 5), 90 + 4 * (k % 3)))
        folder = root / f"class{label}"
        folder.mkdir(parents=True, exist_ok=True)
        kind = k % 6
        if kind == 0:
            image.save(folder / f"{k:03d}.jpg", "JPEG", quality=90)
        elif kind == 1:
            exif = Image.Exif()
            exif[0x0112] = 6
            image.transpose(Image.Transpose.ROTATE_90).save(folder / f"{k:03d}.jpg", "JPEG", exif=exif.tobytes())
        elif kind == 2:
            image.convert("CMYK").save(folder / f"{k:03d}.jpg", "JPEG")
        elif kind == 3:
            grey16 = np.asarray(image.convert("L")).astype(np.uint16) * 257
            Image.fromarray(grey16).save(folder / f"{k:03d}.png")
        elif kind == 4:
            image.convert("P").save(folder / f"{k:03d}.gif", save_all=True,
                                    append_images=[image.convert("P").rotate(90)])
        else:
            image.putalpha(200)
            image.save(folder / f"{k:03d}.png")
    (root / "class0" / "notes.txt").write_text("not an image")
    (root / "class1" / "Thumbs.db").write_bytes(b"\0" * 10)
    return root


def test_a_photo_folder_through_the_finder(tmp_path, capsys):
    photos = write_collection(tmp_path / "photos")
    args = ["find-label-issues", "--dataset", f"imagefolder:{photos}", "--noise", "symmetric", "--noise-rate",
            "0.2", "--epochs", "3", "--device", "cpu", "--no-progress", "--cache-dir", str(tmp_path / "cache")]
    assert main([*args, "--out", str(tmp_path / "run")]) == 0
    out, err = capsys.readouterr()
    assert ("60 training and 0 test images at 64 x 64 px, RGB (median shorter side 94 px, capped at 64 px for cnn "
            "on cpu): 0.7 MB decoded, held in memory") in out
    assert "decoded 60 image(s)" in out and f"image cache: {tmp_path / 'cache'}" in out
    assert err.count("ignored 2 file(s)") == 1 and "notes.txt" in err
    assert err.count("animated image(s)") == 1
    with open(tmp_path / "run" / "label_scores.csv", newline="") as f:
        files = sorted(row["file"] for row in csv.DictReader(f))
    assert files == sorted(p.relative_to(photos).as_posix() for p in photos.rglob("*.*")
                           if p.suffix in (".jpg", ".png", ".gif"))
    assert (tmp_path / "run" / "label_issues.png").is_file()
    assert main([*args, "--out", str(tmp_path / "again")]) == 0  # the second run decodes nothing
    assert "(reused)" in capsys.readouterr().out


def test_the_size_is_chosen_for_the_model_and_device_and_can_be_given(tmp_path, capsys):
    photos = write_collection(tmp_path / "photos", count=12)
    options = LoadOptions(cache_dir=str(tmp_path / "cache"), verbose=True)
    assert load_dataset(f"imagefolder:{photos}", options=options).image_size == 64  # median 94, capped
    assert collection.choose_image_size([1500] * 3, model="resnet50", device="cuda") == \
        (224, "median shorter side 1500 px, capped at 224 px for resnet50 on cuda")
    assert collection.choose_image_size([300], model="cnn", device="cuda")[0] == 96
    assert collection.choose_image_size([1500], model="hf:facebook/dinov2-small", device="cpu")[0] == 256
    given = load_dataset(f"imagefolder:{photos}", options=LoadOptions(cache_dir=str(tmp_path / "cache"),
                                                                      image_size=40))
    assert given.train.images.shape[1:] == (3, 40, 40)


def test_streaming_trains_exactly_as_in_memory(tmp_path):
    photos = write_collection(tmp_path / "photos", count=48)
    common = ["train", "--dataset", f"imagefolder:{photos}", "--model", "cnn", "--width", "4", "--epochs", "2",
              "--batch-size", "16", "--lr", "0.05", "--noise", "symmetric", "--noise-rate", "0.3", "--device", "cpu",
              "--no-progress", "--cache-dir", str(tmp_path / "cache"), "--image-size", "24", "--augment", "rrc-flip"]
    assert main([*common, "--out", str(tmp_path / "memory")]) == 0
    assert main([*common, "--stream", "--out", str(tmp_path / "stream")]) == 0
    np.testing.assert_array_equal(np.load(tmp_path / "memory" / "targets.npy"),
                                  np.load(tmp_path / "stream" / "targets.npy"))
    lines = [[json.loads(line)["train_loss"] for line in open(tmp_path / run / "metrics.jsonl")]
             for run in ("memory", "stream")]
    assert lines[0] == lines[1]


def test_a_set_larger_than_the_memory_budget_streams(tmp_path, monkeypatch, capsys):
    photos = write_collection(tmp_path / "photos", count=12)
    monkeypatch.setattr(collection, "memory_budget", lambda device: 1000)
    data = load_dataset(f"imagefolder:{photos}", options=LoadOptions(cache_dir=str(tmp_path / "c"), verbose=True))
    assert type(data.train.images).__name__ == "DiskImages"
    assert "streamed from the cache (more than the memory budget" in capsys.readouterr().out


def test_csv_collection_and_its_cache(tmp_path, capsys):
    photos = write_collection(tmp_path / "photos", count=12)
    listed = sorted(p for p in photos.rglob("*.*") if p.suffix in (".jpg", ".png", ".gif"))
    with open(tmp_path / "list.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["path", "label"])
        writer.writerows((p.relative_to(tmp_path).as_posix(), p.parent.name) for p in listed)
    options = LoadOptions(cache_dir=str(tmp_path / "cache"), image_size=16, verbose=True)
    data = load_dataset(f"csv:{tmp_path / 'list.csv'}", options=options)
    assert data.classes == ["class0", "class1", "class2"] and data.train.files[0] == "photos/class0/000.jpg"
    assert data.train.images.shape == (12, 3, 16, 16)
    load_dataset(f"csv:{tmp_path / 'list.csv'}", options=options)
    assert "(reused)" in capsys.readouterr().out


def bomb_png() -> bytes:
    """A PNG whose header declares 20,000 x 20,000 pixels (a decompression bomb), holding almost nothing."""
    def chunk(kind, body):
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 20000, 20000, 8, 0, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b""))


def truncated_jpeg() -> bytes:
    buffer = io.BytesIO()
    photo(0)[0].save(buffer, "JPEG")
    return buffer.getvalue()[:700]


@pytest.mark.parametrize("name,content,message", [
    ("broken.jpg", truncated_jpeg(), "cannot read image class1/broken.jpg in {root}: image file is truncated"),
    ("empty.jpg", b"", "cannot read image class1/empty.jpg in {root}: empty file (0 bytes)"),
    ("huge.png", bomb_png(), "cannot read image class1/huge.png in {root}: a decompression bomb? its header "
                             "declares 20000 x 20000 = 400,000,000 pixels, more than the 178,956,970"),
])
def test_bad_images_are_one_line_and_nothing_written_or_skipped_and_listed(tmp_path, capsys, name, content, message):
    photos = write_collection(tmp_path / "photos", count=12)
    (photos / "class1" / name).write_bytes(content)
    args = ["find-label-issues", "--dataset", f"imagefolder:{photos}", "--epochs", "1", "--device", "cpu",
            "--no-progress", "--cache-dir", str(tmp_path / "cache")]
    assert main([*args, "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("selfadapt: error: " + message.format(root=photos)), err[-1]
    assert not (tmp_path / "run").exists()
    assert main([*args, "--skip-unreadable", "--out", str(tmp_path / "skipped")]) == 0
    assert f"skipped 1 unreadable image(s) in {photos}: class1/{name} (" in capsys.readouterr().err


def test_an_unwritable_cache_folder_through_the_cli_is_one_line(tmp_path, capsys):
    photos = write_collection(tmp_path / "photos", count=6)
    (tmp_path / "file").write_text("a file where the cache folder should be")
    assert main(["find-label-issues", "--dataset", f"imagefolder:{photos}", "--epochs", "1", "--device", "cpu",
                 "--cache-dir", str(tmp_path / "file" / "cache"), "--out", str(tmp_path / "run")]) == 2
    line = capsys.readouterr().err.strip().splitlines()[-1]
    assert line.startswith(f"selfadapt: error: the image cache folder {tmp_path / 'file' / 'cache'}")
    assert "cannot be written" in line and "point --cache-dir at a writable folder" in line
    assert not (tmp_path / "run").exists()


def test_input_corruption_of_streamed_images_is_refused(tmp_path, capsys):
    photos = write_collection(tmp_path / "photos", count=6)
    assert main(["train", "--dataset", f"imagefolder:{photos}", "--stream", "--noise", "gaussian", "--noise-rate",
                 "0.5", "--epochs", "1", "--device", "cpu", "--model", "cnn", "--cache-dir", str(tmp_path / "c"),
                 "--out", str(tmp_path / "run")]) == 2
    assert "gaussian noise rewrites pixels, which needs the decoded images in memory" in capsys.readouterr().err


def write_digit_folder(root, count=160):
    """Real 8x8 digits as grey PNGs, one folder per class."""
    for i in range(count):
        pixels, label = digit(i)
        (root / str(label)).mkdir(parents=True, exist_ok=True)
        Image.fromarray(pixels).save(root / str(label) / f"{i:04d}.png")
    return root


def stream_worker(rank, world, port, out, setting):
    from test_distributed import join

    from selfadapt.config.run import RunConfig
    from selfadapt.distributed import teardown
    from selfadapt.experiment import train_run

    join(rank, world, port)
    train_run(RunConfig.from_flat(setting), os.path.join(out, "two"), verbose=False)
    teardown()


@pytest.mark.slow
def test_two_processes_streaming_train_like_one_in_memory(tmp_path):
    """Two gloo processes share one cache (built by whichever locks it first) and stream their shards
    (no augmentation: each process draws its own, by design)."""
    import torch.multiprocessing as mp
    from test_distributed import free_port

    from selfadapt.config.run import RunConfig
    from selfadapt.experiment import run_experiment

    folder = write_digit_folder(tmp_path / "digits")
    setting = {"dataset": f"imagefolder:{folder}", "model": "mlp", "width": 32, "method": "sat",
               "sat_start_epoch": 1, "sat_momentum": 0.8, "noise": "symmetric", "noise_rate": 0.4, "epochs": 2,
               "batch_size": 32, "lr": 0.05, "schedule": "constant", "augment": "none", "device": "cpu",
               "progress": False, "cache_dir": str(tmp_path / "cache")}
    run_experiment(RunConfig.from_flat(setting), tmp_path / "one", verbose=False)
    mp.spawn(stream_worker, args=(2, free_port(), str(tmp_path), {**setting, "stream": True}), nprocs=2, join=True)
    one, two = ([json.loads(line) for line in (tmp_path / run / "metrics.jsonl").read_text().splitlines()]
                for run in ("one", "two"))
    for a, b in zip(one, two):
        assert a["train_loss"] == pytest.approx(b["train_loss"], rel=1e-5)
        assert a["train_accuracy_given"] == b["train_accuracy_given"]
    np.testing.assert_allclose(np.load(tmp_path / "one" / "targets.npy"), np.load(tmp_path / "two" / "targets.npy"),
                               atol=1e-5)


def test_tiles_name_each_file_and_the_finder_picks_crops_for_larger_images(tmp_path, monkeypatch):
    import matplotlib.axes
    import torch

    from selfadapt.apps.noisy_labels.finder import finder_defaults
    from selfadapt.apps.noisy_labels.tiles import plot_label_issues
    from selfadapt.label_errors import LabelIssues

    titles = []
    original = matplotlib.axes.Axes.set_title
    monkeypatch.setattr(matplotlib.axes.Axes, "set_title", lambda ax, text, **kw: titles.append(text) or
                        original(ax, text, **kw))
    issues = LabelIssues(torch.tensor([1, 0]), torch.tensor([0, 1]), torch.tensor([1, 0]), torch.tensor([0.9, 0.8]))
    files = ["cats/IMG_0001.jpg", "holidays/2019/beach/IMG_20190713_101112.jpg"]
    plot_label_issues(torch.zeros(2, 3, 8, 8, dtype=torch.uint8), issues, ["cat", "dog"], tmp_path / "t.png",
                      files=files)
    assert titles == ["cat -> dog\n(0.90)\n...h/IMG_20190713_101112.jpg", "dog -> cat\n(0.80)\ncats/IMG_0001.jpg"]
    assert finder_defaults("imagefolder:photos", "cpu", image_size="128")["augment"] == "rrc-flip"
    assert "augment" not in finder_defaults("imagefolder:photos", "cpu", image_size=None)
    assert "augment" not in finder_defaults("csv:list.csv", "cpu", image_size="64")
    assert "augment" not in finder_defaults("imagefolder:photos", "cpu", image_size="not a number")  # reported later


def test_listing_a_folder_of_many_tiny_files_stats_each_image_once(tmp_path, monkeypatch):
    """``os.scandir`` lists without a stat per file; the cache's stamps take exactly one per image."""
    tiny = np.zeros((2, 2), np.uint8)
    for k in range(3000):
        (tmp_path / "photos" / f"c{k % 3}").mkdir(parents=True, exist_ok=True)
        Image.fromarray(tiny + k % 250).save(tmp_path / "photos" / f"c{k % 3}" / f"{k:05d}.png")
    (tmp_path / "photos" / "c0" / "readme.md").write_text("notes")
    calls = []
    real_stat = os.stat
    monkeypatch.setattr(os, "stat", lambda path, *a, **k: calls.append(str(path)) or real_stat(path, *a, **k))
    keys, others = collection.scan_folder(tmp_path / "photos", tmp_path / "photos")
    assert len(keys) == 3000 and others == ["c0/readme.md"] and calls == []
    source = collection.file_source("imagefolder:tiny", tmp_path / "photos", keys)
    assert len(calls) == 3000 and len(set(calls)) == 3000 and source.stamps.shape == (3000, 2)
