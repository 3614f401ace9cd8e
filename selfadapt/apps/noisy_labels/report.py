"""Noisy-label tables and figures of a benchmark grid.

- ``results.md``: per noise kind, the precision, recall and F1 of the label errors flagged by each
  run's corrected targets (runs whose summaries hold ``label_issues``);
- ``plots/memorisation-<cell>.png``: per noise cell, the share of label-corrupted training samples
  predicted as their wrong label, as their clean label, and whose corrected target is the clean
  label, per epoch (the ``memorisation`` evaluator's curves).
"""
from __future__ import annotations

from selfadapt.grid.reports import GridReport, GridResults, write_styled_curves
from selfadapt.grid.spec import row_label
from selfadapt.summary import percent

MEMORISATION_STYLES = {"memorised_share": "-", "predicted_clean_share": "--", "corrected_target_share": ":"}
MEMORISATION_LABELS = {"memorised_share": "predicted as its wrong label",
                       "predicted_clean_share": "predicted as its clean label",
                       "corrected_target_share": "corrected target is the clean label"}


def label_issue_values(summary: dict) -> dict[str, float]:
    """``label_issue_precision``, ``_recall`` and ``_f1`` of a run's summary (where it has them).

    >>> label_issue_values({"label_issues": {"precision": 0.5, "recall": 0.25, "f1": 0.33, "flagged": 4}})
    {'label_issue_precision': 0.5, 'label_issue_recall': 0.25, 'label_issue_f1': 0.33}
    """
    scores = summary.get("label_issues") or {}
    return {f"label_issue_{key}": scores[key] for key in ("precision", "recall", "f1") if key in scores}


def label_issue_table(results: GridResults) -> list[str]:
    """Markdown: per noise kind, precision / recall / F1 (%) of each run row's flags."""
    grid, lines = results.grid, []
    for kind in dict.fromkeys(kind for kind, _ in grid.cells):
        rows = [r for r in results.rows if r["noise"] == kind and r.get("label_issue_f1_mean") is not None]
        if not rows:
            continue
        title = "clean labels" if kind == "none" else f"{kind} noise"
        lines += [f"## {title}: label errors flagged by the corrected targets (precision / recall / F1, %)", "",
                  "| run | level | precision | recall | F1 |", "|---|---|---|---|---|"]
        lines += [f"| {row_label(r['method'], [(k, r[k]) for k in grid.axes if k in r])} | {r['level']} | "
                  f"{percent(r['label_issue_precision_mean'], sign='')} | "
                  f"{percent(r['label_issue_recall_mean'], sign='')} | "
                  f"{percent(r['label_issue_f1_mean'], sign='')} |" for r in rows]
        lines.append("")
    return lines


def memorisation_curves(results: GridResults) -> list[str]:
    return write_styled_curves(results, MEMORISATION_STYLES, MEMORISATION_LABELS, "memorisation",
                               ylabel="share of label-corrupted samples")


GRID_REPORTS = [GridReport("label-issues", label_issue_table, values=label_issue_values),
                GridReport("memorisation", memorisation_curves)]
