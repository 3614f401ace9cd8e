"""The finder on a feature table against cleanlab's recommended path, on the same features.

Each method runs in its own process (its wall time and peak resident memory are its own):

- ``sat``: the command a user types, ``selfadapt find-label-issues --dataset features:TABLE``
  (its feature-table defaults unless ``--sat-flags`` adds some); flags: ``label_issues.csv``.
  Wall time from process start to exit (imports, loading the table, writing every file included).
- ``cleanlab``: out-of-sample probabilities from 5-fold logistic regression (scikit-learn's
  ``StandardScaler`` + ``LogisticRegression()`` with its defaults, folds stratified and seeded),
  then ``cleanlab.filter.find_label_issues(labels, pred_probs)`` with its defaults: what
  ``CleanLearning(LogisticRegression()).find_label_issues`` does. Wall time includes loading the table.
- ``logreg``: one logistic regression fitted on every row; flagged where its prediction differs
  from the given label (the plain baseline of "Label Noise: Ignorance Is Bliss").

The truth is ``TABLE``'s ``-truth.npy`` (true labels of the rows); F1 of the flags against it.
``synthetic:NxDxC`` makes a Gaussian-mixture table instead (a class mean per class, unit noise
scaled by ``--spread``, 30% of labels replaced by another class), for timing and memory at sizes
no real table here reaches (1,000 classes).

    python benchmarks/feature_finder.py runs/cifar-features/table-100000.npz --methods sat cleanlab logreg
    python benchmarks/feature_finder.py synthetic:1000000x384x1000 --methods sat --sat-flags "--sat-table-dtype bfloat16"
"""
from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import shlex
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve()


def synthetic_table(spec: str, folder: Path, spread: float) -> Path:
    """``synthetic:NxDxC`` written to ``folder`` (once) with its truth; returns the table's path."""
    n, d, c = (int(v) for v in spec.split(":", 1)[1].lower().split("x"))
    file = folder / f"synthetic-{n}x{d}x{c}.npz"
    if file.is_file():
        return file
    rng = np.random.default_rng(0)
    centres = rng.standard_normal((c, d)).astype(np.float32)
    truth = rng.integers(0, c, n)
    x = np.empty((n, d), np.float32)
    for start in range(0, n, 100_000):
        rows = truth[start:start + 100_000]
        x[start:start + len(rows)] = centres[rows] + spread * rng.standard_normal((len(rows), d), dtype=np.float32)
    given = truth.copy()
    flip = rng.random(n) < 0.3
    given[flip] = (truth[flip] + rng.integers(1, c, flip.sum())) % c
    test = rng.integers(0, c, 10_000)
    x_test = centres[test] + spread * rng.standard_normal((len(test), d), dtype=np.float32)
    np.savez(file, X=x, y=given, X_test=x_test, y_test=test)
    np.save(folder / f"synthetic-{n}x{d}x{c}-truth.npy", truth)
    return file


def f1_of(flagged: np.ndarray, wrong: np.ndarray) -> dict:
    hits = int(wrong[flagged].sum())
    precision, recall = hits / max(len(flagged), 1), hits / max(int(wrong.sum()), 1)
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"flagged": len(flagged), "precision": precision, "recall": recall, "f1": f1}


def child(command: list[str], log: Path) -> tuple[float, float, str]:
    """Run ``command`` (output to ``log``); its wall seconds, its own peak resident memory (GB,
    the kernel's ``ru_maxrss`` of that process, from ``wait4``) and its standard output."""
    start = time.perf_counter()
    with open(log, "w") as f:
        process = subprocess.Popen(command, stdout=f, stderr=subprocess.STDOUT, text=True)
        _, status, usage = os.wait4(process.pid, 0)
    process.returncode = os.waitstatus_to_exitcode(status)
    wall = time.perf_counter() - start
    text = log.read_text()
    if process.returncode:
        sys.exit(f"{' '.join(command)} failed:\n{text[-2000:]}")
    return wall, usage.ru_maxrss / 1e6, text  # KiB -> GB


def run_sat(table: Path, out: Path, flags: list[str]) -> dict:
    run = out / "sat-run"
    subprocess.run(["rm", "-rf", str(run)], check=True)
    command = [sys.executable, "-m", "selfadapt", "find-label-issues", "--dataset", f"features:{table}",
               "--device", "cpu", "--no-progress", "--out", str(run), *flags]
    wall, peak, printed = child(command, out / "sat.log")
    flagged = np.array([int(r["index"]) for r in csv.DictReader(open(run / "label_issues.csv", newline=""))], np.int64)
    summary = json.loads((run / "summary.json").read_text())
    defaults = next((line for line in printed.splitlines() if line.startswith("find-label-issues defaults")), "")
    return {"flags": flagged, "seconds": wall, "peak_gb": peak, "command": " ".join(command), "defaults": defaults,
            "test_accuracy": summary.get("final_test_accuracy"), "settings_used": summary.get("settings_used")}


def run_python(method: str, table: Path, out: Path) -> dict:
    """``cleanlab`` or ``logreg`` in a child process of this script (``--inner``)."""
    command = [sys.executable, str(HERE), str(table), "--inner", method, "--out", str(out)]
    wall, peak, _ = child(command, out / f"{method}.log")
    result = json.loads((out / f"{method}.json").read_text())
    return {"flags": np.load(out / f"{method}-flags.npy"), "seconds": wall, "peak_gb": peak, "command": " ".join(command),
            **result}


def inner(method: str, table: Path, out: Path) -> None:
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold, cross_val_predict
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    with np.load(table) as npz:
        x, y = npz["X"], npz["y"]
        test = (npz["X_test"], npz["y_test"]) if "X_test" in npz.files else None
    model = make_pipeline(StandardScaler(), LogisticRegression())
    if method == "cleanlab":
        from cleanlab.filter import find_label_issues

        folds = StratifiedKFold(5, shuffle=True, random_state=0)
        pred_probs = cross_val_predict(model, x, y, cv=folds, method="predict_proba")
        flagged = np.flatnonzero(find_label_issues(labels=y, pred_probs=pred_probs))
        accuracy = None
    else:
        model.fit(x, y)
        flagged = np.flatnonzero(model.predict(x) != y)
        accuracy = float((model.predict(test[0]) == test[1]).mean()) if test else None
    np.save(out / f"{method}-flags.npy", flagged)
    (out / f"{method}.json").write_text(json.dumps({"test_accuracy": accuracy}))


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("table", help="an .npz (features: format) with TABLE-truth.npy beside it, or synthetic:NxDxC")
    parser.add_argument("--methods", nargs="+", default=["sat", "cleanlab", "logreg"],
                        choices=["sat", "cleanlab", "logreg"])
    parser.add_argument("--sat-flags", default="", help="extra find-label-issues flags, one string")
    parser.add_argument("--spread", type=float, default=2.0, help="synthetic: noise scale around the class means")
    parser.add_argument("--out", default="runs/feature-finder")
    parser.add_argument("--inner", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if args.inner:
        return inner(args.inner, Path(args.table), out)
    table = synthetic_table(args.table, out, args.spread) if args.table.startswith("synthetic:") else Path(args.table)
    truth = np.load(table.with_name(table.stem + "-truth.npy"))
    with np.load(table) as npz:
        given = npz["y"]
    wrong = given != truth
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, load average "
          f"{os.getloadavg()[0]:.1f} at start; table {table}: {len(given)} rows, {int(given.max()) + 1} classes, "
          f"{wrong.mean():.2%} labels wrong", flush=True)
    rows = []
    for method in args.methods:
        result = run_sat(table, out, shlex.split(args.sat_flags)) if method == "sat" else run_python(method, table, out)
        result.update(f1_of(result.pop("flags"), wrong), method=method, load_after=os.getloadavg()[0])
        rows.append(result)
        print(f"{method}: F1 {result['f1']:.4f} (precision {result['precision']:.4f}, recall {result['recall']:.4f}, "
              f"{result['flagged']} flagged), {result['seconds']:.1f} s, peak {result['peak_gb']:.2f} GB, "
              f"load {result['load_after']:.1f}", flush=True)
    times = {r["method"]: r["seconds"] for r in rows}
    if "sat" in times and "cleanlab" in times:
        print(f"SAT time / cleanlab time = {times['sat'] / times['cleanlab']:.3f}")
    (out / "results.json").write_text(json.dumps({"table": str(table), "rows": rows}, indent=2, default=str))


if __name__ == "__main__":
    main()
