"""Real feature tables for the finder benchmarks: CIFAR-10 photos through a small backbone, replicated.

No pretrained weights can be reached here, so the backbone is trained first, on images the tables
never contain. Every step is skipped when its output exists (rerun to continue):

1. ``OUT/cifar10/{train,test}/<class>/NNNN.jpg``: the real CIFAR-10 JPEGs (``--archive``).
2. ``OUT/resnet-init/``: a small transformers ResNet (embedding 32, stages 64/128/256/384, one basic
   block each: 384 pooled features) with its image processor (CIFAR-10's mean and std, no resize),
   randomly initialised, written with ``save_pretrained``.
3. ``OUT/extractor-run/``: ``selfadapt train --model hf:OUT/resnet-init`` on the 10,000 CIFAR-10
   *test* images with their true labels (cross-entropy, crop + flip, whole network), then
   ``OUT/resnet-cifar/``: the trained backbone written back with ``save_pretrained``.
4. ``OUT/cifar10-features.npz``: ``selfadapt embed --model hf:OUT/resnet-cifar`` of the 50,000
   training images (never seen by the backbone).
5. ``OUT/table-<rows>.npz`` (+ ``-truth.npy``, the true labels): ``rows`` rows; row ``r`` is training
   image ``r mod 45000`` of the first 4,500 of each class, its 384 features plus Gaussian jitter of
   ``--jitter`` x each feature's standard deviation (seed 0), its label replaced, with probability
   ``--noise-rate``, by one of the 9 other classes drawn uniformly (seed 0, independently per row).
   ``X_test``/``y_test``: the last 500 training images of each class (5,000, true labels).

    python benchmarks/cifar_features.py --out runs/cifar-features --rows 100000 1000000
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tarfile
from pathlib import Path

import numpy as np
import torch

_ROOT = Path(__file__).resolve().parents[1]
ARCHIVE = next((p for p in (_ROOT.parent / "shared", _ROOT.parents[1] / "shared") if p.is_dir()),
               _ROOT.parent / "shared") / "data" / "cifar10-jpeg.tar.gz"
BASE_PER_CLASS = 4500  # training images per class in the tables; the rest (500 a class) is X_test
CIFAR_MEAN, CIFAR_STD = [0.4914, 0.4822, 0.4465], [0.2023, 0.1994, 0.2010]


def run(command: list[str]) -> None:
    print("$", " ".join(command), flush=True)
    subprocess.run(command, check=True)


def extract(archive: Path, out: Path) -> Path:
    folder = out / "cifar10"
    if not (folder / "test").is_dir():
        with tarfile.open(archive) as tar:
            tar.extractall(folder, filter="data")
    return folder


def initial_backbone(out: Path) -> Path:
    folder = out / "resnet-init"
    if not (folder / "config.json").is_file():
        import transformers as t

        torch.manual_seed(0)
        model = t.ResNetModel(t.ResNetConfig(embedding_size=32, hidden_sizes=[64, 128, 256, 384],
                                             depths=[1, 1, 1, 1], layer_type="basic"))
        model.save_pretrained(folder)
        t.ConvNextImageProcessor(size={"shortest_edge": 32}, crop_pct=1.0, image_mean=CIFAR_MEAN,
                                 image_std=CIFAR_STD).save_pretrained(folder)
    return folder


def trained_backbone(out: Path, cifar: Path, init: Path, epochs: int) -> Path:
    folder = out / "resnet-cifar"
    if (folder / "config.json").is_file():
        return folder
    run([sys.executable, "-m", "selfadapt", "train", "--model", f"hf:{init}", "--dataset", f"imagefolder:{cifar / 'test'}",
         "--method", "ce", "--epochs", str(epochs), "--batch-size", "128", "--lr", "0.05", "--backbone-lr-scale", "1",
         "--augment", "crop-flip", "--device", "cpu", "--no-progress", "--out", str(out / "extractor-run")])
    from selfadapt.engine.rundir import load_checkpoint
    from selfadapt.models import build_model

    model = build_model(f"hf:{init}", num_classes=10)
    model.load_state_dict(load_checkpoint(out / "extractor-run")["model"])
    model.backbone.model.save_pretrained(folder)
    (folder / "preprocessor_config.json").write_bytes((init / "preprocessor_config.json").read_bytes())
    return folder


def features(out: Path, cifar: Path, backbone: Path) -> Path:
    file = out / "cifar10-features.npz"
    if not file.is_file():
        run([sys.executable, "-m", "selfadapt", "embed", "--model", f"hf:{backbone}", "--dataset",
             f"imagefolder:{cifar / 'train'}", "--device", "cpu", "--batch-size", "256", "--out", str(file)])
    return file


def table(out: Path, source: Path, rows: int, jitter: float, noise_rate: float) -> Path:
    file = out / f"table-{rows}.npz"
    if file.is_file():
        return file
    with np.load(source) as npz:
        x, y, ids, classes = npz["X"], npz["y"], npz["ids"], npz["classes"]
    rank = np.concatenate([np.arange((y == c).sum()) for c in range(10)])  # position within its class (folder order)
    order = np.argsort(y, kind="stable")
    within = np.empty_like(y)
    within[order] = rank
    base, held = np.flatnonzero(within < BASE_PER_CLASS), np.flatnonzero(within >= BASE_PER_CLASS)
    rng = np.random.default_rng(0)
    scale = (jitter * x[base].std(axis=0)).astype(np.float32)
    source_row = base[np.arange(rows) % len(base)]
    table_x = np.empty((rows, x.shape[1]), np.float32)
    for start in range(0, rows, 100_000):
        chunk = source_row[start:start + 100_000]
        table_x[start:start + len(chunk)] = x[chunk] + scale * rng.standard_normal((len(chunk), x.shape[1]),
                                                                                   dtype=np.float32)
    truth = y[source_row].astype(np.int64)
    noisy = truth.copy()
    flip = rng.random(rows) < noise_rate
    noisy[flip] = (truth[flip] + rng.integers(1, 10, flip.sum())) % 10
    np.savez(file, X=table_x, y=noisy, X_test=x[held], y_test=y[held].astype(np.int64), classes=classes,
             ids=np.array([f"{ids[s]}#{r // len(base)}" for r, s in enumerate(source_row)]))
    np.save(out / f"table-{rows}-truth.npy", truth)
    print(f"{file}: {rows} rows from {len(base)} images, {flip.mean():.2%} labels wrong", flush=True)
    return file


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default="runs/cifar-features")
    parser.add_argument("--archive", type=Path, default=ARCHIVE)
    parser.add_argument("--rows", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--epochs", type=int, default=15, help="training epochs of the backbone")
    parser.add_argument("--jitter", type=float, default=0.25)
    parser.add_argument("--noise-rate", type=float, default=0.3)
    args = parser.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if not args.archive.is_file():
        sys.exit(f"the CIFAR-10 JPEG archive {args.archive} is absent (--archive)")
    cifar = extract(args.archive, out)
    backbone = trained_backbone(out, cifar, initial_backbone(out), args.epochs)
    source = features(out, cifar, backbone)
    for rows in args.rows:
        table(out, source, rows, args.jitter, args.noise_rate)
    (out / "tables.json").write_text(json.dumps(vars(args), default=str, indent=2))


if __name__ == "__main__":
    main()
