"""``selfadapt demo``: cross-entropy against SAT on scikit-learn's digits with 40% symmetric noise.

Needs nothing but the installed package and runs in under a minute on two CPU cores (16 s
measured). The MLP is large enough, and trained long enough without augmentation, for
cross-entropy to memorise the wrong labels; SAT's targets stop following them once it starts.
"""
from __future__ import annotations

import argparse
from pathlib import Path

from selfadapt.apps.command import Command
from selfadapt.config.run import RunConfig
from selfadapt.engine.rundir import read_metrics, write_json
from selfadapt.experiment import run_experiment
from selfadapt.plots import plot_curves

DEMO = dict(
    dataset="digits",          # 1297 train / 500 test real 8x8 digits, shipped with scikit-learn
    model="mlp",
    width=512,                 # wide enough to memorise every wrong label
    noise="symmetric",
    noise_rate=0.4,            # 40% of labels redrawn uniformly: 36% wrong
    noise_seed=0,
    epochs=60,
    batch_size=64,
    optimizer="sgd",
    lr=0.05,
    weight_decay=0.0,          # no regulariser to hide memorisation
    schedule="cosine",
    augment="none",            # 8x8 images: no crops; memorisation shows sooner without augmentation
    device="cpu",
)
SAT_OPTIONS = dict(
    sat_momentum=0.9,
    sat_start_epoch=5,         # CE has learnt the clean patterns (test accuracy peaks) and not yet the noise
)


def run_demo(out: str | Path) -> dict:
    """Train CE and SAT, print both test accuracies and SAT's label-error precision/recall."""
    out = Path(out)
    summaries, curves = {}, {}
    for method in ("ce", "sat"):
        print(f"--- {method} ---")
        summaries[method] = run_experiment(RunConfig.from_flat(
            {**DEMO, "method": method, **(SAT_OPTIONS if method == "sat" else {})}), out / method)
        curves[method] = [m["test_accuracy"] for m in read_metrics(out / method / "metrics.jsonl")]
    issues = summaries["sat"]["label_issues"]
    plot_curves(curves, out / "test_accuracy.png", ylabel="test accuracy",
                title="digits, 40% symmetric label noise (36% wrong)")
    summary = {
        "setting": {**DEMO, **SAT_OPTIONS},
        "ce_final_test_accuracy": summaries["ce"]["final_test_accuracy"],
        "sat_final_test_accuracy": summaries["sat"]["final_test_accuracy"],
        "sat_label_issues": issues,
        "plot": "test_accuracy.png",
    }
    write_json(out / "summary.json", summary)
    print(f"\nCE  final test accuracy: {100 * summary['ce_final_test_accuracy']:.2f}%")
    print(f"SAT final test accuracy: {100 * summary['sat_final_test_accuracy']:.2f}%")
    print(f"SAT flagged {issues['flagged']} labels as wrong ({issues['true_errors']} really are): "
          f"precision {100 * issues['precision']:.1f}%, recall {100 * issues['recall']:.1f}%")
    print(f"wrote {out / 'summary.json'} and {out / 'test_accuracy.png'}")
    return summary


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", default="runs/demo", help="default runs/demo")


def run(args: argparse.Namespace) -> int:
    run_demo(args.out)
    return 0


COMMANDS = [Command("demo", "CE vs SAT on digits with 40%% label noise (under a minute)", add_arguments, run)]
