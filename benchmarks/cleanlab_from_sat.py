"""What cleanlab finds from SAT's targets (``pred_probs.npy`` of a ``find-label-issues`` run), beside SAT's own flags.

``pred_probs.npy`` holds SAT's corrected label distributions, rows in the order of
``label_scores.csv`` (whose ``given_label`` column are the labels). They are in-sample targets (each
sample trained on its own), not the out-of-sample probabilities cleanlab's theory assumes: this
measures what its filters make of them anyway. Both of cleanlab's entry points are run:
``cleanlab.filter.find_label_issues(labels, pred_probs)`` with its default filter (and its other
filters) and ``Datalab(...).find_issues(pred_probs=...)`` (needs ``pip install 'cleanlab[datalab]'``).
With ``--truth`` (the true labels in dataset order, ``.npy``) every set of flags is scored.

    python benchmarks/cleanlab_from_sat.py runs/ff-100k/sat-run --truth runs/cifar-features/table-100000-truth.npy
"""
from __future__ import annotations

import argparse
import csv
import json
import time
from pathlib import Path

import numpy as np


def score(flagged: np.ndarray, wrong: np.ndarray | None) -> dict:
    out = {"flagged": int(flagged.sum())}
    if wrong is not None:
        hits = int((flagged & wrong).sum())
        precision, recall = hits / max(int(flagged.sum()), 1), hits / max(int(wrong.sum()), 1)
        out.update(precision=precision, recall=recall,
                   f1=2 * precision * recall / (precision + recall) if precision + recall else 0.0)
    return out


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run", type=Path, help="a find-label-issues output folder")
    parser.add_argument("--truth", type=Path, default=None, help="true labels in dataset order (.npy)")
    args = parser.parse_args(argv)
    from cleanlab.filter import find_label_issues

    rows = list(csv.DictReader(open(args.run / "label_scores.csv", newline="")))
    index = np.array([int(r["index"]) for r in rows])
    labels = np.array([int(r["given_label"]) for r in rows])
    pred_probs = np.load(args.run / "pred_probs.npy")
    flagged_by_sat = np.zeros(len(rows), bool)
    listed = {int(r["index"]) for r in csv.DictReader(open(args.run / "label_issues.csv", newline=""))}
    flagged_by_sat[[k for k, i in enumerate(index) if i in listed]] = True
    wrong = None if args.truth is None else labels != np.load(args.truth)[index]
    results = {"SAT's own flags (argmax of the target != given)": score(flagged_by_sat, wrong)}
    for filter_by in ("prune_by_noise_rate", "prune_by_class", "both", "confident_learning"):
        start = time.perf_counter()
        flags = find_label_issues(labels=labels, pred_probs=pred_probs, filter_by=filter_by)
        name = f"cleanlab.filter.find_label_issues, filter_by={filter_by}" + (" (default)" * (filter_by ==
                                                                                          "prune_by_noise_rate"))
        results[name] = {**score(flags, wrong), "seconds": time.perf_counter() - start,
                         "also_flagged_by_sat": int((flags & flagged_by_sat).sum())}
    try:
        from cleanlab import Datalab

        start = time.perf_counter()
        lab = Datalab(data={"label": labels}, label_name="label", verbosity=0)
        lab.find_issues(pred_probs=pred_probs, issue_types={"label": {}})
        flags = lab.get_issues("label")["is_label_issue"].to_numpy()
        results["Datalab.find_issues(pred_probs=...), label issues"] = {
            **score(flags, wrong), "seconds": time.perf_counter() - start,
            "also_flagged_by_sat": int((flags & flagged_by_sat).sum())}
    except ImportError as e:
        print(f"Datalab skipped: {e}")
    print(f"{args.run}: {len(rows)} samples" + ("" if wrong is None else f", {int(wrong.sum())} labels truly wrong"))
    print("| flags from | flagged | also flagged by SAT | precision | recall | F1 | seconds |")
    print("|---|---|---|---|---|---|---|")
    for name, r in results.items():
        quality = " | ".join(f"{r[k]:.4f}" for k in ("precision", "recall", "f1")) if wrong is not None else "- | - | -"
        print(f"| {name} | {r['flagged']} | {r.get('also_flagged_by_sat', r['flagged'])} | {quality} | "
              f"{r.get('seconds', 0):.1f} |")
    (args.run / "cleanlab_from_sat.json").write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
