"""``selfadapt find-label-issues``: train once with SAT and list the labels that are probably wrong.

SAT's corrected targets are a by-product of training: a sample whose target's argmax differs from
its given label is flagged, ranked by the target's confidence. No cross-validation, one training run.
Every sample also gets a score, ``1 - t[given]`` (``label_scores.csv``), to review the K most
suspicious ones (``--top K``). With no SAT flag the start epoch and momentum are chosen
automatically (:mod:`selfadapt.objectives.auto_start`).

``pred_probs.npy`` holds the targets (rows normalised to sum 1, float32) in the row order of
``label_scores.csv``, whose ``given_label`` column are the matching labels, so cleanlab can read
them: ``cleanlab.filter.find_label_issues(labels, pred_probs)`` or ``Datalab.find_issues(pred_probs=...)``.
They are SAT's in-sample corrected label distributions, not the out-of-sample predicted
probabilities cleanlab's theory assumes (each sample trained on its own target).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

from selfadapt.apps.command import Command
from selfadapt.apps.noisy_labels.listing import frequent_pairs, write_label_issues_csv
from selfadapt.apps.noisy_labels.tables import table_defaults, table_shape
from selfadapt.apps.noisy_labels.tiles import plot_label_issues
from selfadapt.config.flags import add_run_flags, flag, run_config_from
from selfadapt.config.run import RunConfig
from selfadapt.data.registry import find_format
from selfadapt.engine.loggers import Loggers
from selfadapt.engine.rundir import write_json
from selfadapt.errors import SelfAdaptError
from selfadapt.experiment import resolve_device, train_run
from selfadapt.label_errors import ranking_quality, ranking_scores, suspected_label_errors, top_suspects
from selfadapt.objectives.sat import too_few_updates
from selfadapt.summary import save_rows
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
    targets, given = label_distribution_store(result.objective).values, data.labels
    scores = ranking_scores(targets, given).cpu()
    flagged = suspected_label_errors(targets, given)
    listed = flagged if top is None else top_suspects(targets, given, top)
    count, picture = _write_lists(out, data, targets, listed, scores)
    start = getattr(result.objective.loss, "auto", None)
    bound = None if start is None or start.best_accuracy < 0 else 1.0 - start.best_accuracy
    warnings = trust_warnings(result.objective.loss, summary, given, flagged, data.dataset.classes, bound)
    summary.update(label_issues_file="label_issues.csv", label_issues_found=count,
                   label_issues_flagged=len(flagged.index), label_scores_file="label_scores.csv",
                   pred_probs_file="pred_probs.npy",
                   label_issues_warnings=warnings, label_error_share_bound=bound)
    if start is not None:
        summary["sat_start_reason"] = start.describe()
    if data.truth_known:
        summary["label_ranking"] = ranking_quality(scores, data.label_errors, top or int(data.label_errors.sum()))
    write_json(out / "summary.json", summary)
    if config.engine.logger:  # the run's tracker runs get the tiles and the list
        with Loggers(config.engine.logger, out, out.name) as log:
            log.log_images(out, "label_issues.png")
            log.log_table(out / "label_issues.csv")
    _say(out, summary, flagged, len(given), data.dataset.classes, count if top is not None else None, picture)
    return summary


def _write_lists(out: Path, data, targets, listed, scores) -> tuple[int, Path | None]:
    """``label_issues.csv`` (``listed``), ``label_scores.csv`` and ``pred_probs.npy`` (every sample, most
    suspicious first) and the tiles of images (none for feature vectors); the count listed and the tiles' path."""
    train, classes, given = data.dataset.train, data.dataset.classes, data.labels
    where = dict(source_index=train.source_index, classes=classes, files=train.files)
    count = write_label_issues_csv(out / "label_issues.csv", listed, **where, scores=scores)
    ranked = top_suspects(targets, given, len(given))
    write_label_issues_csv(out / "label_scores.csv", ranked, **where, scores=scores)
    save_rows(out / "pred_probs.npy", targets, order=ranked.index, normalise=True)  # cleanlab's input, same rows
    pictures = data.images if data.pictures is None else data.pictures  # a frozen backbone's run keeps its images
    if pictures.dtype != torch.uint8:  # feature vectors have no picture
        return count, None
    return count, plot_label_issues(pictures, listed, classes, out / "label_issues.png", files=train.files)


def _say(out: Path, summary: dict, flagged, n: int, classes: list[str], top_count: int | None, picture) -> None:
    """What the finder found, on stdout; its warnings on stderr."""
    print(f"{len(flagged.index)} suspected label errors of {n} training samples "
          f"({len(flagged.index) / n:.1%}) -> {out / 'label_issues.csv'}"
          + (f" (the {top_count} most suspicious)" if top_count is not None else ""))
    print(f"every sample's score -> {out / 'label_scores.csv'}" + (f"; tiles -> {picture}" if picture else ""))
    print(f"SAT's targets as cleanlab's pred_probs -> {out / 'pred_probs.npy'} (rows in label_scores.csv's order; "
          "in-sample targets, not out-of-sample probabilities)")
    if "sat_start_reason" in summary:
        print(summary["sat_start_reason"])
    bound = summary["label_error_share_bound"]
    if bound is not None:
        print(f"the model disagrees with {bound:.1%} of the held-out given labels, so at most about that share of "
              f"labels is wrong; flagged: {len(flagged.index) / n:.1%}")
    pairs = frequent_pairs(flagged, classes)
    if pairs:
        print("most frequent given -> suggested: " + ", ".join(f"{g} -> {s} ({k})" for g, s, k in pairs))
    if "label_issues" in summary:
        flags, ranking = summary["label_issues"], summary["label_ranking"]
        print(f"against the known true labels: precision {flags['precision']:.3f}, recall {flags['recall']:.3f}, "
              f"F1 {flags['f1']:.3f}; precision@{ranking['k']} {ranking['precision_at_k']:.3f}, ROC AUC "
              + ("n/a" if ranking["roc_auc"] is None else f"{ranking['roc_auc']:.3f}"))
    for warning in summary["label_issues_warnings"]:
        print(f"selfadapt: warning: {warning}", file=sys.stderr)


CPU_DEFAULTS = {"model": "cnn", "epochs": 30, "batch_size": 128, "lr": 0.05}  # the validation runs' CPU settings


RRC_FROM = 96  # px: from here on the finder augments collections with random-resized crops, not 4 px shifts


def finder_defaults(dataset: str | None, device: str | None, model: str | None = None,
                    image_size: int | str | None = None) -> dict:
    """The settings ``find-label-issues`` uses unless flags say otherwise (``train``'s are the paper's
    GPU protocol, ResNet-34 for 200 epochs): :data:`CPU_DEFAULTS` where training runs on the CPU;
    a linear model without augmentation for feature vectors (a large table's batches and epochs
    sized by it, :func:`~selfadapt.apps.noisy_labels.tables.table_defaults`); random-resized crops
    (``rrc-flip``) for image collections at :data:`RRC_FROM` px or more (``--image-size``, or on a
    GPU, where the automatic size may reach 224 px); and a pretrained backbone frozen, its features
    computed once (``--freeze-backbone``, no augmentation).

    >>> finder_defaults("features:emb.npz", "cpu")
    {'model': 'linear', 'augment': 'none', 'epochs': 30, 'batch_size': 128, 'lr': 0.05}
    >>> finder_defaults("imagefolder:photos", "cpu", image_size="128")["augment"]
    'rrc-flip'
    >>> finder_defaults("imagefolder:photos", "cpu", "hf:facebook/dinov2-small")["freeze_backbone"]
    True
    """
    base = RunConfig.from_flat({})
    defaults = {}
    try:
        form, path = find_format(dataset or base.data.dataset)
    except SelfAdaptError:  # said when the flags are checked
        form, path = None, None
    on_cpu = resolve_device(device or base.engine.device) == "cpu"
    if form is not None and form.feature_vectors:
        defaults.update(model="linear", augment="none")
        defaults.update(table_defaults(*table_shape(path)))
    elif form is not None and form.collection and (_at_least(image_size, RRC_FROM) if image_size else not on_cpu):
        defaults.update(augment="rrc-flip")
    if (model or "").startswith("hf:"):
        defaults.update(freeze_backbone=True, augment="none")
    if on_cpu:
        for key, value in CPU_DEFAULTS.items():
            defaults.setdefault(key, value)
    return defaults


def _at_least(value, bound: int) -> bool:
    """Whether a flag's value is a number >= ``bound`` (a bad value is reported when the flags are checked)."""
    try:
        return int(value) >= bound
    except (TypeError, ValueError):
        return False


def trust_warnings(sat, summary: dict, labels, flagged, classes: list[str], bound: float | None) -> list[str]:
    """Why the flags may be junk: the model never beat predicting the most common label; the targets
    had too few updates to move (``objectives.sat.too_few_updates``); the model disagrees with most
    held-out labels, or more is flagged than the held-out disagreement ``bound`` allows; most of a
    class is flagged."""
    warnings = []
    labelled = labels[labels >= 0]
    accuracy = summary.get("final_train_accuracy_given")
    majority = float(labelled.bincount().max()) / max(len(labelled), 1)
    if accuracy is not None and accuracy < majority + 0.05:
        warnings.append(f"the model never fitted the data (training accuracy {accuracy:.3f}, predicting the most "
                        f"common label gives {majority:.3f}): the flags are not trustworthy; {HELP}")
    problem = too_few_updates(sat.start_epoch, sat.updates, sat.momentum)
    if problem:
        warnings.append(problem)
    share = len(flagged.index) / max(len(labelled), 1)
    if bound is not None and bound > 0.5:
        warnings.append(f"the model agrees with only {1 - bound:.1%} of the held-out given labels: either most labels "
                        f"are wrong or the model has not learnt the task, and its {share:.1%} flags mostly reflect "
                        f"its own errors; {HELP}")
    elif bound is not None and share > bound + 0.05:
        warnings.append(f"{share:.1%} of the labels are flagged, but the model disagrees with only {bound:.1%} of the "
                        f"held-out given labels: more is flagged than the evidence allows; {HELP}")
    warnings += _classes_mostly_flagged(labelled, flagged, classes)
    return warnings


HELP = ("a pretrained backbone (--model hf:...), more epochs or a larger model would help; review the top of "
        "label_scores.csv rather than every flag")


def _classes_mostly_flagged(labels, flagged, classes: list[str]) -> list[str]:
    """A warning naming the classes of which more than half the samples are flagged."""
    counts = labels.bincount(minlength=len(classes)).cpu()
    hit = flagged.given_label.cpu().bincount(minlength=len(classes))
    mostly = [(classes[c], int(hit[c]), int(counts[c])) for c in range(len(classes)) if counts[c] and hit[c] > counts[c] / 2]
    if not mostly:
        return []
    listed = ", ".join(f"{name} ({k} of {n})" for name, k, n in mostly[:5])
    return [f"most samples of class(es) {listed} are flagged: the model may not have learnt those classes; {HELP}"]


DESCRIPTION = ("Train once with SAT and list the labels that are probably wrong. Without --preset, the "
               "defaults differ from train's: on a CPU (--device cpu, or auto without a GPU) --model cnn "
               "--epochs 30 --batch-size 128 --lr 0.05; for features: data --model linear --augment none (a table of "
               "50,000 rows or more: larger batches, Adam, fewer epochs); for image collections (imagefolder:, csv:, "
               "hf:) at --image-size 96 or more, or on a GPU, --augment rrc-flip; with --model hf:ID_OR_FOLDER "
               "--freeze-backbone --augment none. "
               "Flags given override them. SAT's start epoch and momentum are automatic unless given.")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", required=True, help="run directory (required; gets label_issues.csv)")
    parser.add_argument("--top", type=int, default=None, metavar="K",
                        help="list the K most suspicious samples in label_issues.csv (a review budget) instead of "
                             "every flagged one; label_scores.csv always scores every sample")
    add_run_flags(parser)


def run(args: argparse.Namespace) -> int:
    defaults = {} if args.preset else finder_defaults(args.dataset, args.device, args.model, args.image_size)
    used = {k: v for k, v in defaults.items() if getattr(args, k, None) is None}
    if used:
        print("find-label-issues defaults: " + " ".join(flag(k) if v is True else f"{flag(k)} {v}"
                                                            for k, v in used.items()))
    find_label_issues(run_config_from(args, defaults), args.out, top=args.top)
    return 0


COMMANDS = [Command("find-label-issues", "train once with SAT; write label_issues.csv", add_arguments, run,
                    DESCRIPTION)]
