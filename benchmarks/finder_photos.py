"""The label-error finder on a photo collection with default settings, beside the same images at
their native size: F1 of the flags against injected noise, and the time from nothing (an empty
image cache) to ``label_issues.csv``.

Each collection is an image folder (``photo_data.py mixed`` and ``photo_data.py native`` write the
same CIFAR-10 images as mixed-size photos and as the original 32 x 32 files); the command is the
README's quick path plus ``--noise symmetric --noise-rate R`` so that the truth is known.

    python benchmarks/finder_photos.py --collection mixed=/tmp/mixed --collection native=/tmp/native \\
        --out /tmp/finder-runs
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def run_finder(name: str, folder: str, out: Path, noise_rate: float, extra: list[str]) -> dict:
    cache = tempfile.mkdtemp(prefix=f"finder-{name}-")
    command = [sys.executable, "-m", "selfadapt", "find-label-issues", "--dataset", f"imagefolder:{folder}",
               "--noise", "symmetric", "--noise-rate", str(noise_rate), "--cache-dir", cache, "--no-progress",
               "--out", str(out / name), *extra]
    print(" ".join(command[2:]), flush=True)
    start = time.perf_counter()
    try:
        done = subprocess.run(command, capture_output=True, text=True)
    finally:
        shutil.rmtree(cache)
    seconds = time.perf_counter() - start
    if done.returncode:
        raise SystemExit(f"{name} failed:\n{done.stdout}\n{done.stderr}")
    summary = json.loads((out / name / "summary.json").read_text())
    chosen = next((line for line in done.stdout.splitlines() if " px" in line and "images at" in line), "")
    flags, ranking = summary["label_issues"], summary["label_ranking"]
    return {"name": name, "seconds": seconds, "images": chosen, "f1": flags["f1"], "precision": flags["precision"],
            "recall": flags["recall"], "roc_auc": ranking["roc_auc"], "test_accuracy": summary.get("final_test_accuracy")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--collection", action="append", required=True, metavar="NAME=FOLDER")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--noise-rate", type=float, default=0.2)
    parser.add_argument("extra", nargs="*", help="more find-label-issues flags, after --")
    args = parser.parse_args()
    print(f"{platform.machine()}, {os.cpu_count()} cores, shared with other jobs")
    rows = [run_finder(*spec.split("=", 1), args.out, args.noise_rate, args.extra) for spec in args.collection]
    print("| collection | images | F1 | precision | recall | ROC AUC | test accuracy | nothing -> label_issues.csv |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['name']} | {r['images']} | {r['f1']:.3f} | {r['precision']:.3f} | {r['recall']:.3f} | "
              f"{r['roc_auc']:.3f} | {r['test_accuracy']:.3f} | {r['seconds']:.0f} s |")


if __name__ == "__main__":
    main()
