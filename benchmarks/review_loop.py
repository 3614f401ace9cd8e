"""The whole loop on real data: find -> review (in a real browser, by keyboard) -> apply -> retrain.

Fashion-MNIST (a class-balanced subset) with injected label noise:

1. ``selfadapt find-label-issues`` (SAT, the CPU defaults);
2. ``selfadapt review``'s page in headless Chromium (Debian's, driven by Playwright): the key ``a``
   (accept the suggestion) pressed on the top ``--review`` suspects, and, in copies of the run, on
   every flagged one, and by an "oracle" reviewer who knows the truth (``a``, ``k`` or the true
   class's digit) on every flagged one; the scripted key rate and the save latencies are recorded;
   a screenshot goes to ``--screenshot``;
3. ``selfadapt apply-review``: precision of the accepted fixes against the known truth;
4. ``selfadapt train --method ce`` on the noisy labels and on each fixed set (``--labels-from``),
   the same seeds: test accuracy before and after.

Run: ``python benchmarks/review_loop.py --out runs/review-loop --screenshot docs/results/review.png
--retrain-epochs 15 --seeds 0 1``
(on 2 shared CPU cores about 10 minutes for the finder and 5 for each 15-epoch retrain). Writes ``OUT/results.json`` and prints a table.
"""
from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import time
from pathlib import Path

from selfadapt.cli import main as selfadapt

CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def data_flags(args) -> list[str]:
    return ["--dataset", "fashion-mnist", "--subset", str(args.subset), "--noise", "symmetric-exclusive",
            "--noise-rate", str(args.noise_rate), "--noise-seed", "0", "--device", "cpu", "--no-progress"]


def train_flags(args, epochs: int | None = None) -> list[str]:
    return ["--model", "cnn", "--epochs", str(epochs or args.epochs), "--batch-size", "128", "--lr", "0.05"]


def find(args, run: Path) -> None:
    if not (run / "summary.json").is_file():
        assert selfadapt(["find-label-issues", *data_flags(args), *train_flags(args), "--out", str(run)]) == 0


def review_in_browser(run: Path, presses: int | None, screenshot: Path | None, oracle: bool = False) -> dict:
    """Press ``a`` on the first ``presses`` suspects (all when None); an ``oracle`` reviewer knows
    the truth and presses ``a`` (suggestion right), ``k`` (given label right) or the true class's
    digit. Returns timings."""
    from playwright.sync_api import sync_playwright

    from selfadapt.apps.review.app import ReviewApp
    from selfadapt.apps.review.server import ReviewServer
    from selfadapt.apps.review.suspects import load_run

    started = time.perf_counter()
    server = ReviewServer(ReviewApp(load_run(run)))
    startup = time.perf_counter() - started
    server.start_background()
    presses = presses or len(server.app.run.suspects)
    keys = oracle_keys(server.app.run) if oracle else ["a"] * presses
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
        page = browser.new_context(bypass_csp=True, viewport={"width": 1200, "height": 900}).new_page()
        page.goto(server.url)
        page.wait_for_function("window.reviewStats && window.reviewStats.ready")
        opened = page.evaluate("window.reviewStats.firstRenderMs")
        began = time.perf_counter()
        for k in range(presses):
            page.keyboard.press(keys[k])
            if screenshot is not None and k == 5:
                page.wait_for_function("window.reviewStats.saveMs.length >= 6")
                page.wait_for_timeout(300)
                page.screenshot(path=str(screenshot))
        page.wait_for_function(f"window.reviewStats.saveMs.length >= {presses}", timeout=600_000)
        seconds = time.perf_counter() - began
        saves = page.evaluate("window.reviewStats.saveMs")
        browser.close()
    server.shutdown()
    server.server_close()
    return {"decisions": presses, "server_start_s": round(startup, 2), "open_ms": round(opened, 1),
            "seconds": round(seconds, 2), "decisions_per_s": round(presses / seconds, 1),
            "save_ms_median": round(statistics.median(saves), 1),
            "save_ms_p95": round(sorted(saves)[int(0.95 * (len(saves) - 1))], 1)}


def oracle_keys(run) -> list[str]:
    """The key a reviewer who knows the true label presses on each suspect, in rank order."""
    s, truth = run.suspects, run.truth
    keys = []
    for row, given, suggested in zip(s.rows, s.given, s.suggested):
        true = truth[row]
        keys.append("a" if true == suggested else "k" if true == given else str(true))
    return keys


def retrain(args, out: Path, labels_from: Path | None, seed: int) -> float:
    if not (out / "summary.json").is_file():
        extra = ["--labels-from", str(labels_from)] if labels_from else []
        assert selfadapt(["train", *data_flags(args), *train_flags(args, args.retrain_epochs), "--method", "ce", "--seed", str(seed),
                          "--data-seed", "0", *extra, "--out", str(out)]) == 0
    return json.loads((out / "summary.json").read_text())["final_test_accuracy"]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path("runs/review-loop"))
    parser.add_argument("--subset", type=int, default=4000)
    parser.add_argument("--noise-rate", type=float, default=0.2)
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--retrain-epochs", type=int, default=None, help="epochs of the CE retrains (default --epochs)")
    parser.add_argument("--review", type=int, default=100, help="suspects accepted in the first review")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--screenshot", type=Path, default=None)
    args = parser.parse_args()
    run = args.out / "find"
    find(args, run)
    finder = json.loads((run / "summary.json").read_text())
    results = {"settings": vars(args) | {"out": str(args.out), "screenshot": str(args.screenshot)},
               "finder": {k: finder.get(k) for k in ("final_test_accuracy", "label_issues", "label_ranking",
                                                       "label_issues_flagged")}}
    reviews = {f"top{args.review}": (run, args.review, args.screenshot, False),
               "all_flagged": (args.out / "find-all", None, None, False),
               "oracle_all_flagged": (args.out / "find-oracle", None, None, True)}
    for name, (folder, presses, shot, oracle) in reviews.items():
        timing = folder / "review_timing.json"
        if not (folder / "review.csv").is_file():
            if folder != run:
                shutil.copytree(run, folder, ignore=shutil.ignore_patterns("checkpoint.pt", "review*"))
            timing.write_text(json.dumps(review_in_browser(folder, presses, shot, oracle)))
        if timing.is_file():
            results[f"review_{name}"] = json.loads(timing.read_text())
        assert selfadapt(["apply-review", str(folder), "--out", str(args.out / f"fixed-{name}")]) == 0
        results[f"apply_{name}"] = json.loads((args.out / f"fixed-{name}" / "apply_summary.json").read_text())
    for name, labels in [("noisy", None), *[(n, f[0] / "review.csv") for n, f in reviews.items()]]:
        accuracies = [retrain(args, args.out / f"ce-{name}-seed{s}", labels, s) for s in args.seeds]
        results[f"ce_{name}"] = {"test_accuracy": accuracies, "mean": statistics.mean(accuracies),
                                 "stdev": statistics.stdev(accuracies) if len(accuracies) > 1 else 0.0}
    (args.out / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
