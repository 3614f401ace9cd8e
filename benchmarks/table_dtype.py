"""SAT's target table in float32, bfloat16 and float16: the flags' F1 and the test accuracy.

The same ``find-label-issues`` command with ``--sat-table-dtype`` changed, one seed per row; by
default the label-issue validation setting V1 (``docs/results/label-issues.md``: Fashion-MNIST 4000,
MLP, 40% symmetric noise, 100 epochs, the CPU defaults), where a table is updated in every one of
the epochs after SAT starts, so rounding has the most steps to accumulate.

    python benchmarks/table_dtype.py --seeds 1 2 3 --out runs/table-dtype
"""
from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import time
from pathlib import Path

SETTING = ("--dataset fashion-mnist --subset 4000 --model mlp --augment none --noise symmetric --noise-rate 0.4 "
           "--noise-seed 0 --epochs 100 --device cpu --no-progress")


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--setting", default=SETTING, help="find-label-issues flags shared by every run")
    parser.add_argument("--dtypes", nargs="+", default=["float32", "bfloat16", "float16"])
    parser.add_argument("--seeds", type=int, nargs="+", default=[1])
    parser.add_argument("--out", default="runs/table-dtype")
    args = parser.parse_args(argv)
    out = Path(args.out)
    rows = []
    print(f"setting: find-label-issues {args.setting}; load average {os.getloadavg()[0]:.1f} at start")
    print("| table dtype | seed | flagged | precision | recall | F1 | ROC AUC | test accuracy | wall s |")
    print("|---|---|---|---|---|---|---|---|---|")
    for seed in args.seeds:
        for dtype in args.dtypes:
            run = out / f"{dtype}-s{seed}"
            command = [sys.executable, "-m", "selfadapt", "find-label-issues", *shlex.split(args.setting),
                       "--seed", str(seed), "--sat-table-dtype", dtype, "--out", str(run)]
            start = time.perf_counter()
            if not (run / "summary.json").is_file():
                subprocess.run(command, check=True, capture_output=True)
            seconds = time.perf_counter() - start
            summary = json.loads((run / "summary.json").read_text())
            flags, ranking = summary["label_issues"], summary["label_ranking"]
            rows.append({"dtype": dtype, "seed": seed, **flags, "roc_auc": ranking["roc_auc"],
                         "test_accuracy": summary["final_test_accuracy"], "seconds": seconds})
            print(f"| {dtype} | {seed} | {flags['flagged']} | {flags['precision']:.4f} | {flags['recall']:.4f} | "
                  f"{flags['f1']:.4f} | {ranking['roc_auc']:.4f} | {summary['final_test_accuracy']:.4f} | "
                  f"{seconds:.0f} |", flush=True)
    (out / "results.json").write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
