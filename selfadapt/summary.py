"""What a finished run reports: its summary, its targets, one-line descriptions."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from selfadapt.label_errors import label_issue_scores, suspected_label_errors
from selfadapt.targets import find_target_stores, label_distribution_store


def save_targets(objective, folder: Path) -> None:
    """Each target store of ``objective`` as ``.npy``: the label distributions (or the only store)
    as ``targets.npy``, any other as ``targets-<name>.npy``."""
    stores = find_target_stores(objective)
    main = label_distribution_store(objective) or (next(iter(stores.values())) if len(stores) == 1 else None)
    for name, store in stores.items():
        file = "targets.npy" if store is main else f"targets-{name}.npy"
        np.save(folder / file, store.values.float().cpu().numpy())


_NOT_METRICS = frozenset({"epoch", "lr", "seconds", "train_seconds", "eval_seconds"})


def summarise(config, history: list[dict], parts) -> dict:
    """Final and best values of every evaluator's primary metric (best marked optimistic where it
    is chosen on the test set), the last value of every metric, the noise and label issues."""
    summary = {"method": config.method.method, "dataset": config.data.dataset, "model": config.model.model,
               "epochs": len(history), "seconds": sum(m.get("seconds", 0.0) for m in history),
               "noise": parts.data.noise.summary()}
    last = {}
    for record in history:
        last.update({k: v for k, v in record.items() if k not in _NOT_METRICS and v is not None})
    summary.update({f"final_{k}": v for k, v in last.items()})
    primaries = [e for e in parts.evaluators if e.primary]
    for evaluator in primaries:
        key = evaluator.primary
        summary[f"final_{key}"] = history[-1].get(key) if history else None
        scored = [m for m in history if m.get(key) is not None]
        pick = max if evaluator.higher_is_better else min
        best = pick(scored, key=lambda m: m[key], default=None)
        summary[f"best_{key}"] = best[key] if best else None
        summary[f"best_{key}_epoch"] = best["epoch"] if best else None
    if primaries:
        main = primaries[0]
        summary["primary_metric"] = main.primary
        summary["higher_is_better"] = main.higher_is_better
        summary["best_epoch"] = summary[f"best_{main.primary}_epoch"]
        summary["best_note"] = "best epochs are chosen on the evaluated (test) set itself: optimistic; report final_*"
    if parts.objective.settings_used():
        summary["settings_used"] = parts.objective.settings_used()
    store = label_distribution_store(parts.objective)
    if store is not None and parts.data.truth_known and parts.data.label_errors.any():
        flagged = suspected_label_errors(store.values, parts.data.labels).index.cpu()
        summary["label_issues"] = label_issue_scores(flagged, parts.data.label_errors)
    return summary


def describe_summary(summary: dict) -> str:
    """One line: the final and best value of the run's primary metric."""
    key = summary.get("primary_metric")
    if key is None:
        return f"{summary['method']}: trained {summary['epochs']} epochs"
    return (f"{summary['method']}: final {key} {percent(summary[f'final_{key}'])}, best "
            f"{percent(summary[f'best_{key}'])} (epoch {summary['best_epoch']})")


def percent(value, sign: str = "%") -> str:
    """``0.1234 -> '12.34%'``; ``None -> 'n/a'``."""
    return "n/a" if value is None else f"{100 * value:.2f}{sign}"
