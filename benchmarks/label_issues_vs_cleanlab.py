"""SAT's label-error finder against cleanlab's confident learning, on the same data, model and epochs.

One invocation does both, on one noisy training set (``prepare_data``: same subset, same corruption):

1. **SAT**: one self-adaptive training run on all N training samples. A sample is flagged when the
   argmax of its corrected target differs from its given label (SPEC section 1), ranked by the
   target's max (``SelfAdaptiveTraining.suspected_label_errors``). Compute: ``epochs`` passes. The
   SAT start epoch and momentum default to ``auto`` (``selfadapt.objectives.auto_start``: chosen from the noisy
   training data alone); ``--sat-momentum auto 0.9 0.7`` trains one SAT run per value, each its own
   row and its own ``epochs`` passes.
2. **cleanlab**: K-fold cross-validation (stratified on the given labels, seeded). For each fold a
   fresh model of the same architecture is trained with cross-entropy on the other K-1 folds, with
   the same epochs, optimiser, schedule, batch size and augmentation, and predicts softmax
   probabilities on its held-out fold. These out-of-sample ``pred_probs`` for every sample go to
   ``cleanlab.filter.find_label_issues(labels, pred_probs)`` with its defaults
   (``filter_by="prune_by_noise_rate"``). Compute: ``K x epochs x (K-1)/K`` passes.
   The same ``pred_probs`` are also scored with other cleanlab filters (no extra training).

Flags are scored against the truly corrupted labels (given != clean): flagged, precision, recall,
F1; plus the ROC AUC of each method's per-sample score (SAT: ``1 - t_i[given_i]``; cleanlab: ``1 -``
its default label quality score), which judges the ranking independently of the threshold.

Example (8-9 minutes on a shared 2-core CPU with ``--threads 1``; see docs/results/label-issues.md)::

    python benchmarks/label_issues_vs_cleanlab.py --dataset fashion-mnist --subset 10000 \\
        --noise symmetric --noise-rate 0.4 --model cnn --epochs 15 --threads 1 --out runs/li-fmnist-sym
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch

from selfadapt.config.run import RunConfig
from selfadapt.data.augment import Augment
from selfadapt.data.loader import DeviceLoader
from selfadapt.engine.trainer import Trainer
from selfadapt.evaluators.accuracy import TestAccuracy
from selfadapt.evaluators.base import EvalData, predict_logits
from selfadapt.experiment import PreparedData, configure_determinism, model_factory, prepare_data, resolve_device
from selfadapt.label_errors import label_issue_scores, suspected_label_errors
from selfadapt.objectives import MethodContext, build_objective, get_method
from selfadapt.objectives.base import Objective
from selfadapt.targets import label_distribution_store

CLEANLAB_FILTERS = ("prune_by_noise_rate", "prune_by_class", "both", "confident_learning", "predicted_neq_given")


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--dataset", default="fashion-mnist")
    p.add_argument("--data-dir", default=None)
    p.add_argument("--subset", type=int, default=10000, help="seeded class-balanced subset of the training set")
    p.add_argument("--test-subset", type=int, default=None, help="class-balanced subset of the test set")
    p.add_argument("--data-seed", type=int, default=None, help="seed of the subset (default: --seed)")
    p.add_argument("--noise", default="symmetric")
    p.add_argument("--noise-rate", type=float, default=0.4, help="ignored for --noise human")
    p.add_argument("--noise-variant", default=None, help="CIFAR-N label set for --noise human (default worse)")
    p.add_argument("--noise-seed", type=int, default=0)
    p.add_argument("--model", default="cnn")
    p.add_argument("--width", type=int, default=None)
    p.add_argument("--epochs", type=int, default=15)
    p.add_argument("--folds", type=int, default=5)
    p.add_argument("--seed", type=int, default=0, help="initialisation, data order and fold split")
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--optimizer", default="sgd")
    p.add_argument("--lr", type=float, default=0.05)
    p.add_argument("--weight-decay", type=float, default=5e-4)
    p.add_argument("--schedule", default="cosine")
    p.add_argument("--augment", default="crop-flip")
    p.add_argument("--sat-momentum", type=auto_or(float), nargs="+", default=["auto"],
                   help="auto or a float; one SAT run per value, each a row (and epochs passes) of its own")
    p.add_argument("--sat-start-epoch", type=auto_or(int), default="auto",
                   help="auto (selfadapt.objectives.auto_start) or an epoch; the paper's is 60 of 200")
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=None,
                   help="torch.set_num_threads (default: torch's choice); on a shared 2-core machine 1 thread "
                        "ran about 10x faster than 2")
    p.add_argument("--out", default="runs/label_issues_vs_cleanlab", help="directory for results.json")
    args = p.parse_args(argv)
    if args.folds < 2:
        p.error("--folds must be at least 2")
    return args


def auto_or(kind):
    """An argparse type: the word ``auto`` or a value of ``kind``."""
    return lambda text: text if text == "auto" else kind(text)


def run_config(args, method: str = "sat", momentum: float | str | None = None) -> RunConfig:
    sat = {"sat_momentum": momentum or args.sat_momentum[0], "sat_start_epoch": args.sat_start_epoch}
    return RunConfig.from_flat(dict(
        dataset=args.dataset, data_dir=args.data_dir, subset=args.subset, test_subset=args.test_subset,
        data_seed=args.data_seed, model=args.model, width=args.width, method=method, noise=args.noise,
        noise_rate=0.0 if args.noise == "human" else args.noise_rate, noise_variant=args.noise_variant,
        noise_seed=args.noise_seed, seed=args.seed,
        epochs=args.epochs, batch_size=args.batch_size, optimizer=args.optimizer, lr=args.lr,
        weight_decay=args.weight_decay, schedule=args.schedule, augment=args.augment, device=args.device,
        progress=False, **(sat if method == "sat" else {})))


def test_accuracy(model, data: PreparedData, device: str) -> float:
    test = data.dataset.test
    loader = DeviceLoader(test.images, test.labels, batch_size=1024, device=device)
    return TestAccuracy()(model, Objective(), EvalData(loader, loader, None, data.dataset.num_classes), 0)["test_accuracy"]


def train(config: RunConfig, data: PreparedData, rows: torch.Tensor, *, seed: int, device: str):
    """Train a fresh model with ``config``'s method on the training rows ``rows``; return (model, objective, history).

    Mirrors ``run_experiment`` (same model factory, objective options, engine and loader), except
    that no evaluator runs during training, so the wall time is training time.
    """
    configure_determinism(config, device)
    torch.manual_seed(seed)
    method = get_method(config.method.method)
    model = model_factory(config, data.dataset, method)()
    labels = data.labels[rows]
    objective = build_objective(method.name, MethodContext(labels=labels, num_classes=data.dataset.num_classes,
                                                           epochs=config.engine.epochs, seed=seed),
                                config.method.options)
    engine = dataclasses.replace(config.engine, device=device, channels_last=False, progress=False)
    train_loader = DeviceLoader(data.images[rows], labels, batch_size=config.data.batch_size, shuffle=True,
                                seed=seed, augment=Augment(config.data.augment), device=device)
    trainer = Trainer(model, objective, train_loader, engine)
    history = trainer.fit()
    return trainer.model, objective, history


def roc_auc(score: np.ndarray, is_error: np.ndarray) -> float:
    from sklearn.metrics import roc_auc_score
    return float(roc_auc_score(is_error, score))


def row(method: str, flagged: np.ndarray, is_error: torch.Tensor, passes: float, seconds: float, auc, **extra):
    scores = label_issue_scores(torch.as_tensor(flagged, dtype=torch.long), is_error)
    return {"method": method, **scores, "roc_auc": auc, "passes": passes, "seconds": seconds, **extra}


def fmt_table(rows: list[dict]) -> str:
    head = "| method | flagged | precision | recall | F1 | ROC AUC of score | training passes | wall s |"
    lines = [head, "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        auc = "-" if r["roc_auc"] is None else f"{r['roc_auc']:.4f}"
        lines.append(f"| {r['method']} | {r['flagged']} | {r['precision']:.4f} | {r['recall']:.4f} | {r['f1']:.4f} "
                     f"| {auc} | {r['passes']:g} | {r['seconds']:.1f} |")
    return "\n".join(lines)


def main(argv=None) -> dict:
    args = parse_args(argv)
    try:
        import cleanlab
        from cleanlab.filter import find_label_issues
        from cleanlab.rank import get_label_quality_scores
    except ImportError:
        sys.exit("this benchmark needs cleanlab: pip install cleanlab (or pip install -e '.[bench]')")
    from sklearn.model_selection import StratifiedKFold

    if args.threads is not None:
        torch.set_num_threads(args.threads)
    config = run_config(args)
    device = resolve_device(config.engine.device)
    hardware = {"platform": platform.platform(), "processor": platform.processor() or platform.machine(),
                "cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads(), "device": device,
                "python": platform.python_version(), "torch": torch.__version__, "cleanlab": cleanlab.__version__,
                "load_average_at_start": [round(x, 2) for x in os.getloadavg()]}
    print(f"hardware: {hardware}")
    print(f"command: python {' '.join(sys.argv)}")

    data = prepare_data(config)
    n, num_classes = len(data.labels), data.dataset.num_classes
    is_error = data.label_errors.cpu()
    given = data.labels.cpu().numpy()
    print(f"{args.dataset}: {n} training samples, {num_classes} classes, {int(is_error.sum())} labels wrong; "
          f"model {args.model}, {args.epochs} epochs, batch {args.batch_size}, {args.optimizer} lr {args.lr} "
          f"{args.schedule}, wd {args.weight_decay}, augment {args.augment}; SAT momentum {args.sat_momentum}, "
          f"start epoch {args.sat_start_epoch}")
    all_rows = torch.arange(n)
    results = []

    # 1. SAT: one run on everything per momentum asked for (the first is the headline row).
    sat_test, sat_history = {}, {}
    for momentum in args.sat_momentum:
        start = time.perf_counter()
        model, objective, history = train(run_config(args, "sat", momentum), data, all_rows, seed=args.seed,
                                          device=device)
        sat_seconds = time.perf_counter() - start
        targets = label_distribution_store(objective).values.detach().cpu()
        issues = suspected_label_errors(targets, data.labels.cpu())
        sat_score = 1.0 - targets[torch.arange(n), data.labels.cpu()].numpy()
        sat = objective.loss
        key = str(momentum)
        sat_test[key], sat_history[key] = test_accuracy(model, data, device), history
        print(f"SAT momentum {key} ({sat.momentum:.3f}), start epoch {sat.start_epoch}: {sat_seconds:.1f} s, final train acc (given labels, augmented "
              f"view) {history[-1]['train_accuracy_given']:.4f}, test acc {sat_test[key]:.4f}, "
              f"{len(issues.index)} flagged")
        results.append(row(f"SAT, argmax target != label (momentum {key}: {sat.momentum:.3f}, start epoch "
                           f"{args.sat_start_epoch}: {sat.start_epoch})",
                           issues.index.cpu().numpy(), is_error, float(args.epochs), sat_seconds,
                           roc_auc(sat_score, is_error.numpy()), test_accuracy=sat_test[key],
                           sat_start_epoch=sat.start_epoch, sat_momentum=sat.momentum))

    # 2. cleanlab: K-fold out-of-sample probabilities, then find_label_issues.
    start = time.perf_counter()
    pred_probs = np.zeros((n, num_classes), dtype=np.float32)
    folds = StratifiedKFold(n_splits=args.folds, shuffle=True, random_state=args.seed)
    fold_test = []
    for k, (train_idx, held_idx) in enumerate(folds.split(np.zeros(n), given)):
        t0 = time.perf_counter()
        train_rows, held_rows = torch.as_tensor(train_idx), torch.as_tensor(held_idx)
        model, objective, history = train(run_config(args, "ce"), data, train_rows, seed=args.seed + k, device=device)
        held = DeviceLoader(data.images[held_rows], data.labels[held_rows], batch_size=1024, device=device)
        pred_probs[held_idx] = torch.softmax(predict_logits(model, objective, held), 1).cpu().numpy()
        fold_test.append(test_accuracy(model, data, device))
        held_acc = float((pred_probs[held_idx].argmax(1) == given[held_idx]).mean())
        print(f"cleanlab fold {k + 1}/{args.folds}: trained on {len(train_idx)}, {time.perf_counter() - t0:.1f} s, "
              f"final train acc (given) {history[-1]['train_accuracy_given']:.4f}, held-out acc vs given "
              f"{held_acc:.4f}, test acc {fold_test[-1]:.4f}")
    cv_seconds = time.perf_counter() - start
    cv_passes = args.folds * args.epochs * (args.folds - 1) / args.folds
    quality = get_label_quality_scores(given, pred_probs)
    cl_auc = roc_auc(1.0 - quality, is_error.numpy())
    for filter_by in CLEANLAB_FILTERS:
        t0 = time.perf_counter()
        mask = find_label_issues(given, pred_probs, filter_by=filter_by, n_jobs=1)
        seconds = cv_seconds + time.perf_counter() - t0
        name = "cleanlab find_label_issues (default: prune_by_noise_rate)" if filter_by == "prune_by_noise_rate" \
            else f"cleanlab filter_by={filter_by}"
        results.append(row(name, np.flatnonzero(mask), is_error, cv_passes, seconds, cl_auc,
                           filter_by=filter_by, test_accuracy_fold_mean=float(np.mean(fold_test))))

    hardware["load_average_at_end"] = [round(x, 2) for x in os.getloadavg()]

    table = fmt_table(results)
    print()
    print(table)
    print(f"\ntrue errors: {int(is_error.sum())} of {n}; training passes = epochs over the {n} training samples "
          f"(held-out prediction, one forward pass over {n} samples, not counted); cleanlab rows share the same "
          f"cross-validation (their wall time is the CV time plus their own filtering); ROC AUC is of the "
          f"per-sample score, not of the flags (all cleanlab rows share the default label quality score)")
    print(f"load average (1/5/15 min) at start {hardware['load_average_at_start']}, "
          f"at end {hardware['load_average_at_end']} on {hardware['cpu_count']} cores")
    print(f"test accuracy: SAT model(s) {sat_test}; cleanlab fold models mean {np.mean(fold_test):.4f}")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    summary = {"command": "python " + " ".join(sys.argv), "settings": vars(args), "hardware": hardware,
               "noise": data.noise.summary(), "num_samples": n, "true_errors": int(is_error.sum()),
               "rows": results, "sat_test_accuracy": sat_test, "sat_history": sat_history,
               "fold_test_accuracies": fold_test}
    (out / "results.json").write_text(json.dumps(summary, indent=2) + "\n")
    (out / "table.md").write_text(table + "\n")
    print(f"wrote {out / 'results.json'}")
    return summary


if __name__ == "__main__":
    main()
