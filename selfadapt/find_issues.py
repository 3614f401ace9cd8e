"""``selfadapt find-label-issues``: train once with SAT and list the labels that are probably wrong.

SAT's corrected targets are a by-product of training: a sample whose target's argmax differs from
its given label is flagged, ranked by the target's confidence. No cross-validation, one training run.
Every sample also gets a score, ``1 - t[given]`` (``label_scores.csv``), to review the K most
suspicious ones (``--top K``). With no SAT flag the start epoch and momentum are chosen
automatically (``selfadapt.auto_start``).

``pred_probs.npy`` holds the targets (rows normalised to sum 1, float32) in the row order of
``label_scores.csv``, whose ``given_label`` column are the matching labels, so cleanlab can read
them: ``cleanlab.filter.find_label_issues(labels, pred_probs)`` or ``Datalab.find_issues(pred_probs=...)``.
They are SAT's in-sample corrected label distributions, not the out-of-sample predicted
probabilities cleanlab's theory assumes (each sample trained on its own target).
"""
from __future__ import annotations

import math
import sys
from pathlib import Path

import numpy as np

import torch

from selfadapt.errors import SelfAdaptError
from selfadapt.experiment import train_run
from selfadapt.label_issue_grid import plot_label_issues
from selfadapt.label_issues import (frequent_pairs, ranking_quality, ranking_scores, suspected_label_errors,
                                    top_suspects, write_label_issues_csv)
from selfadapt.objectives.sat import too_few_updates
from selfadapt.report import save_rows
from selfadapt.rundir import write_json
from selfadapt.settings import RunConfig
from selfadapt.targets import label_distribution_store

FINDER_METHODS = ("sat", "sat-sce")


def find_label_issues(config: RunConfig, out: str | Path, *, top: int | None = None) -> dict:
    """Train ``config`` (a SAT method) into ``out``; write ``label_issues.csv`` (the flagged samples,
    or with ``top`` the ``top`` most suspicious), ``label_scores.csv`` (every sample, most suspicious
    first) and ``label_issues.png`` (images, not feature vectors). Warns on stderr when the flags
    cannot be trusted.

    When the true labels are known (injected noise, CIFAR-N) ``out/summary.json`` also holds the
    precision, recall and F1 of the flags, and precision@K and ROC AUC of the scores. Returns the summary.
    Example: ``find_label_issues(RunConfig.from_flat({"dataset": "digits", "model": "mlp", "epochs": 20}), "runs/x")``.
    """
    if config.method.method not in FINDER_METHODS:
        raise SelfAdaptError(f"find-label-issues trains with SAT; --method must be one of {', '.join(FINDER_METHODS)}")
    if top is not None and top < 1:
        raise SelfAdaptError(f"--top must be at least 1, got {top}")
    out = Path(out)
    result = train_run(config, out)
    data, summary = result.data, result.summary
    train, classes = data.dataset.train, data.dataset.classes
    targets, given = label_distribution_store(result.objective).values, data.labels
    scores = ranking_scores(targets, given).cpu()
    flagged = suspected_label_errors(targets, given)
    listed = flagged if top is None else top_suspects(targets, given, top)
    where = dict(source_index=train.source_index, classes=classes, files=train.files)
    count = write_label_issues_csv(out / "label_issues.csv", listed, **where, scores=scores)
    ranked = top_suspects(targets, given, len(given))
    write_label_issues_csv(out / "label_scores.csv", ranked, **where, scores=scores)
    save_rows(out / "pred_probs.npy", targets, order=ranked.index, normalise=True)  # cleanlab's input, same rows
    pictures = data.images if data.pictures is None else data.pictures  # a frozen backbone's run keeps its images
    images = pictures.dtype == torch.uint8  # feature vectors have no picture
    picture = plot_label_issues(pictures, listed, classes, out / "label_issues.png") if images else None

    warnings = trust_warnings(result.objective.loss, summary, data.labels)
    summary.update(label_issues_file="label_issues.csv", label_issues_found=count,
                   label_issues_flagged=len(flagged.index), label_scores_file="label_scores.csv",
                   pred_probs_file="pred_probs.npy",
                   label_issues_warnings=warnings)
    start = getattr(result.objective.loss, "auto", None)
    if start is not None:
        summary["sat_start_reason"] = start.describe()
    if data.truth_known:
        summary["label_ranking"] = ranking_quality(scores, data.label_errors, top or int(data.label_errors.sum()))
    write_json(out / "summary.json", summary)

    print(f"{len(flagged.index)} suspected label errors of {len(given)} training samples "
          f"({len(flagged.index) / len(given):.1%}) -> {out / 'label_issues.csv'}"
          + (f" (the {count} most suspicious)" if top is not None else ""))
    print(f"every sample's score -> {out / 'label_scores.csv'}" + (f"; tiles -> {picture}" if picture else ""))
    print(f"SAT's targets as cleanlab's pred_probs -> {out / 'pred_probs.npy'} (rows in label_scores.csv's order; "
          "in-sample targets, not out-of-sample probabilities)")
    if start is not None:
        print(summary["sat_start_reason"])
    pairs = frequent_pairs(flagged, classes)
    if pairs:
        print("most frequent given -> suggested: " + ", ".join(f"{g} -> {s} ({n})" for g, s, n in pairs))
    if "label_issues" in summary:
        flags, ranking = summary["label_issues"], summary["label_ranking"]
        print(f"against the known true labels: precision {flags['precision']:.3f}, recall {flags['recall']:.3f}, "
              f"F1 {flags['f1']:.3f}; precision@{ranking['k']} {ranking['precision_at_k']:.3f}, ROC AUC "
              + ("n/a" if ranking["roc_auc"] is None else f"{ranking['roc_auc']:.3f}"))
    for warning in warnings:
        print(f"selfadapt: warning: {warning}", file=sys.stderr)
    return summary


CPU_DEFAULTS = {"model": "cnn", "epochs": 30, "batch_size": 128, "lr": 0.05}  # the validation runs' CPU settings


def finder_defaults(dataset: str | None, device: str | None, model: str | None = None) -> dict:
    """The settings ``find-label-issues`` uses unless flags say otherwise (``train``'s are the paper's
    GPU protocol, ResNet-34 for 200 epochs): :data:`CPU_DEFAULTS` where training runs on the CPU,
    a linear model without augmentation for feature vectors, and a pretrained backbone frozen, its
    features computed once (``--freeze-backbone``, no augmentation).

    >>> finder_defaults("features:emb.npz", "cpu")
    {'model': 'linear', 'augment': 'none', 'epochs': 30, 'batch_size': 128, 'lr': 0.05}
    >>> finder_defaults("imagefolder:photos", "cpu", "hf:facebook/dinov2-small")["freeze_backbone"]
    True
    """
    from selfadapt.experiment import resolve_device
    from selfadapt.settings import RunConfig

    base = RunConfig.from_flat({})
    defaults = {}
    if (dataset or base.data.dataset).lower().startswith("features:"):
        defaults.update(model="linear", augment="none")
        defaults.update(table_defaults(*table_shape(dataset.split(":", 1)[1])))
    if (model or "").startswith("hf:"):
        defaults.update(freeze_backbone=True, augment="none")
    if resolve_device(device or base.engine.device) == "cpu":
        for key, value in CPU_DEFAULTS.items():
            defaults.setdefault(key, value)
    return defaults


LARGE_TABLE_ROWS = 50_000  # from here on the finder sizes its batches and epochs by the table


def table_defaults(rows: int, classes: int) -> dict:
    """Settings for a large feature table (on any device): batches of about 1% of the rows (a power
    of two, 1024 at 100,000 rows, at most 8192) with Adam at ``1e-3 x sqrt(batch / 1024)``, epochs
    for about 3 million sample visits (30 at 100,000 rows, 4 at a million), and a bfloat16 target
    table where a float32 one would pass 1 GiB. Smaller tables: none (the CPU defaults apply).

    >>> table_defaults(1_000_000, 1000)
    {'batch_size': 8192, 'epochs': 4, 'optimizer': 'adam', 'lr': 0.002828, 'sat_table_dtype': 'bfloat16'}
    >>> table_defaults(20_000, 10)
    {}
    """
    if rows < LARGE_TABLE_ROWS:
        return {}
    batch = min(8192, 1 << round(math.log2(rows / 100)))
    defaults = {"batch_size": batch, "epochs": min(30, max(4, math.ceil(3_000_000 / rows))), "optimizer": "adam",
                "lr": round(1e-3 * math.sqrt(batch / 1024), 6)}
    if rows * classes * 4 > 1 << 30:
        defaults["sat_table_dtype"] = "bfloat16"
    return defaults


def table_shape(path: str) -> tuple[int, int]:
    """``(rows, classes)`` of a ``features:`` table from its headers and labels (``(0, 0)`` when it
    cannot be read: loading it reports why)."""
    try:
        with np.load(Path(path).expanduser(), allow_pickle=False) as npz:
            with npz.zip.open("X.npy") as member:
                major, _ = np.lib.format.read_magic(member)
                header = np.lib.format.read_array_header_1_0 if major == 1 else np.lib.format.read_array_header_2_0
                rows = header(member)[0][0]
            classes = len(npz["classes"]) if "classes" in npz.files else int(npz["y"].max()) + 1
        return int(rows), int(classes)
    except Exception:  # noqa: BLE001  (any unreadable table: the loader gives the one-line error)
        return 0, 0


def trust_warnings(sat, summary: dict, labels) -> list[str]:
    """Why the flags may be junk: the model never beat predicting the most common label, or the
    targets had too few updates to move (``objectives.sat.too_few_updates``)."""
    warnings = []
    accuracy = summary.get("final_train_accuracy_given")
    labelled = labels[labels >= 0]
    majority = float(labelled.bincount().max()) / max(len(labelled), 1)
    if accuracy is not None and accuracy < majority + 0.05:
        warnings.append(f"the model never fitted the data (training accuracy {accuracy:.3f}, predicting the most "
                        f"common label gives {majority:.3f}): the flags are not trustworthy; train longer, use a "
                        "smaller model or a larger learning rate")
    problem = too_few_updates(sat.start_epoch, sat.updates, sat.momentum)
    if problem:
        warnings.append(problem)
    return warnings
