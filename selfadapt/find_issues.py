"""``selfadapt find-label-issues``: train once with SAT and list the labels that are probably wrong.

SAT's corrected targets are a by-product of training: a sample whose target's argmax differs from
its given label is flagged, ranked by the target's confidence. No cross-validation, one training run.
"""
from __future__ import annotations

from pathlib import Path

from selfadapt.errors import SelfAdaptError
from selfadapt.experiment import train_run
from selfadapt.label_issues import suspected_label_errors, write_label_issues_csv
from selfadapt.rundir import write_json
from selfadapt.settings import RunConfig
from selfadapt.targets import label_distribution_store

FINDER_METHODS = ("sat", "sat-sce")


def find_label_issues(config: RunConfig, out: str | Path) -> dict:
    """Train ``config`` (a SAT method) into ``out`` and write ``out/label_issues.csv``.

    When the true labels are known (injected noise, CIFAR-N) ``out/summary.json`` also holds the
    precision, recall and F1 of the flags. Returns the summary.
    Example: ``find_label_issues(RunConfig.from_flat({"dataset": "digits", "model": "mlp", "epochs": 20}), "runs/x")``.
    """
    if config.method.method not in FINDER_METHODS:
        raise SelfAdaptError(f"find-label-issues trains with SAT; --method must be one of {', '.join(FINDER_METHODS)}")
    out = Path(out)
    result = train_run(config, out)
    train = result.data.dataset.train
    issues = suspected_label_errors(label_distribution_store(result.objective).values, result.data.labels)
    count = write_label_issues_csv(out / "label_issues.csv", issues, source_index=train.source_index,
                                   classes=result.data.dataset.classes, files=train.files)
    summary = {**result.summary, "label_issues_file": "label_issues.csv", "label_issues_found": count}
    write_json(out / "summary.json", summary)
    print(f"{count} suspected label errors of {len(train)} training samples -> {out / 'label_issues.csv'}")
    if "label_issues" in summary:
        scores = summary["label_issues"]
        print(f"against the known true labels: precision {scores['precision']:.3f}, recall {scores['recall']:.3f}, "
              f"F1 {scores['f1']:.3f}")
    return summary
