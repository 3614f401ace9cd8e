"""A feature table with CIFAR-10N's human labels: ``selfadapt embed`` output of CIFAR-10 (clean
labels, official order) -> the same features with a CIFAR-10N label set as ``y`` and the clean
labels as ``-truth.npy``, for ``benchmarks/feature_finder.py`` (SAT vs cleanlab vs logistic
regression on the same features).

    selfadapt embed --model hf:facebook/dinov2-small --dataset cifar10 --data-dir data --out runs/c10-dinov2s.npz
    python benchmarks/cifar10n_table.py runs/c10-dinov2s.npz --human data/cifar-n/CIFAR-10_human.pt \\
        --variant worse --out runs/c10n-worse-dinov2s.npz
    python benchmarks/feature_finder.py runs/c10n-worse-dinov2s.npz --methods sat cleanlab logreg
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from selfadapt.data.human_labels import load_human_labels


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("features", type=Path, help="selfadapt embed's .npz of --dataset cifar10")
    parser.add_argument("--human", type=Path, required=True, help="CIFAR-10_human.pt")
    parser.add_argument("--variant", default="worse", help="aggre, worse, random1, random2 or random3")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    with np.load(args.features) as npz:
        arrays = {name: npz[name] for name in npz.files}
    official = arrays["ids"].astype(np.int64)  # embed writes each sample's index in the official order
    human = load_human_labels(args.human, variant=args.variant)[official]
    clean = arrays["y"]
    arrays["y"] = human.astype(np.int64)
    np.savez(args.out, **arrays)
    np.save(args.out.with_name(args.out.stem + "-truth.npy"), clean)
    print(f"{args.out}: {len(clean)} rows, CIFAR-10N {args.variant}: {np.mean(human != clean):.2%} labels wrong")


if __name__ == "__main__":
    main()
