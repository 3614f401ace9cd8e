"""What a finished run reports: its summary, its targets, one-line descriptions."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from selfadapt.engine.rundir import atomic_write
from selfadapt.label_errors import label_issue_scores, suspected_label_errors
from selfadapt.targets import find_target_stores, label_distribution_store


def save_targets(objective, folder: Path) -> None:
    """Each target store of ``objective`` as ``.npy``: the label distributions (or the only store)
    as ``targets.npy``, any other as ``targets-<name>.npy``; float32, or float16 for a half-precision
    table (``sat_table_dtype``: half the bytes of a table that may hold a billion values)."""
    stores = find_target_stores(objective)
    main = label_distribution_store(objective) or (next(iter(stores.values())) if len(stores) == 1 else None)
    for name, store in stores.items():
        half = store.values.dtype in (torch.float16, torch.bfloat16)
        save_rows(folder / ("targets.npy" if store is main else f"targets-{name}.npy"), store.values,
                  dtype=torch.float16 if half else torch.float32)


def save_rows(path: Path, table: torch.Tensor, *, order: torch.Tensor | None = None, normalise: bool = False,
              dtype: torch.dtype = torch.float32) -> None:
    """``table`` (N x C, any float dtype, any device) as a ``.npy`` of ``dtype`` (float32 or
    float16), written atomically in blocks of about 4M values (no copy of the whole table); with
    ``order``, its rows in that order; with ``normalise``, every row divided by its sum (in float32).

    >>> import tempfile; path = Path(tempfile.mkdtemp()) / "t.npy"
    >>> save_rows(path, torch.tensor([[1.0, 3.0], [2.0, 2.0]]).bfloat16(), order=torch.tensor([1, 0]), normalise=True)
    >>> np.load(path).tolist()
    [[0.5, 0.5], [0.25, 0.75]]
    """
    count = len(table) if order is None else len(order)
    rows = max(1, (1 << 22) // max(table[0].numel() if len(table) else 1, 1))
    header = {"descr": np.lib.format.dtype_to_descr(np.dtype(str(dtype).removeprefix("torch."))),
              "fortran_order": False, "shape": (count, *table.shape[1:])}

    def write(tmp):
        with open(tmp, "wb") as f:
            np.lib.format.write_array_header_1_0(f, header)
            for start in range(0, count, rows):
                block = table[start:start + rows] if order is None else table[order[start:start + rows]]
                block = block.float()
                if normalise:
                    block = block / block.sum(dim=1, keepdim=True).clamp_min(torch.finfo(torch.float32).tiny)
                f.write(block.to(dtype).cpu().contiguous().numpy().data)
    atomic_write(path, write)


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
    if key is None or summary.get(f"final_{key}") is None:  # no such metric, or no data for it (no test split)
        epochs = summary["epochs"]
        return (f"{summary['method']}: trained {epochs} epoch{'' if epochs == 1 else 's'}"
                + (f" (no {key}: nothing to measure it on)" if key else ""))
    return (f"{summary['method']}: final {key} {percent(summary[f'final_{key}'])}, best "
            f"{percent(summary[f'best_{key}'])} (epoch {summary['best_epoch']})")


def percent(value, sign: str = "%") -> str:
    """``0.1234 -> '12.34%'``; ``None -> 'n/a'``."""
    return "n/a" if value is None else f"{100 * value:.2f}{sign}"
