"""The table of SAT (automatic start and momentum) against cleanlab over the validation runs.

Reads ``runs/li-val/<setting>-s<seed>/results.json`` written by ``validation-vs-cleanlab.sh`` and
prints, per setting, mean ± sample std over seeds of F1, precision, recall and the ROC AUC of the
per-sample score, for SAT's row and cleanlab's default row, plus training passes and wall time.

    python docs/results/label-issues/summarise_validation.py runs/li-val
"""
from __future__ import annotations

import json
import statistics
import sys
from pathlib import Path

SAT, CLEANLAB = "SAT", "cleanlab find_label_issues (default"


def mean_std(values: list[float]) -> str:
    if len(values) == 1:
        return f"{values[0]:.3f}"
    return f"{statistics.fmean(values):.3f} ± {statistics.stdev(values):.3f}"


def main(folder: Path) -> None:
    settings: dict[str, list[dict]] = {}
    for path in sorted(folder.glob("*-s*/results.json")):
        settings.setdefault(path.parent.name.rsplit("-s", 1)[0], []).append(json.loads(path.read_text()))
    print("| setting | seeds | method | F1 | precision | recall | ROC AUC | passes | wall s (mean) |")
    print("|---|---|---|---|---|---|---|---|---|")
    verdicts = []
    for name, runs in settings.items():
        f1 = {}
        for label, prefix in (("SAT auto", SAT), ("cleanlab", CLEANLAB)):
            rows = [next(r for r in run["rows"] if r["method"].startswith(prefix)) for run in runs]
            f1[label] = [r["f1"] for r in rows]
            print(f"| {name} | {len(runs)} | {label} | {mean_std(f1[label])} | "
                  f"{mean_std([r['precision'] for r in rows])} | {mean_std([r['recall'] for r in rows])} | "
                  f"{mean_std([r['roc_auc'] for r in rows])} | {rows[0]['passes']:g} | "
                  f"{statistics.fmean(r['seconds'] for r in rows):.0f} |")
        sat, cl = statistics.fmean(f1["SAT auto"]), statistics.fmean(f1["cleanlab"])
        verdicts.append(f"{name}: SAT {sat:.3f} vs cleanlab {cl:.3f} -> "
                        f"{'SAT at least cleanlab' if sat >= cl else 'cleanlab better'}")
    print()
    print("\n".join(verdicts))


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else "runs/li-val"))
