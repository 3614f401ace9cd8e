"""PGD's random start clipped to [0, 1] before the first step (ours) against left unclipped (the SAT
authors' ``pgd_attack.py``, from TRADES' evaluation code): robust accuracy of one adversarially
trained model, the same random starts for both, several start seeds.

The two differ only where a pixel lies within eps of 0 or 1: there the authors' first gradient is
taken at an image outside [0, 1], one that the threat model never contains. Trains a model first
(``train_run``, the settings below), then attacks the first ``--test`` test images.

    python benchmarks/pgd_random_start.py                                  # digits, MLP, TRADES, eps 0.1
    python benchmarks/pgd_random_start.py --dataset fashion-mnist --model cnn --subset 2000 --epochs 15
"""
from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn.functional as F

from selfadapt.attacks import frozen, pgd
from selfadapt.config.run import RunConfig
from selfadapt.experiment import train_run


def pgd_unclipped_start(model, x, y, *, eps: float, steps: int, step_size: float) -> torch.Tensor:
    """The authors' ``_pgd_whitebox``: start at ``x + U(-eps, eps)`` as is, then signed steps on the
    cross-entropy, each followed by the eps-ball projection and the clip to [0, 1]."""
    x_adv = x + torch.empty_like(x).uniform_(-eps, eps)
    with frozen(model):
        for _ in range(steps):
            x_adv = x_adv.detach().requires_grad_(True)
            with torch.enable_grad():
                grad, = torch.autograd.grad(F.cross_entropy(model(x_adv), y), [x_adv])
            x_adv = x_adv.detach() + step_size * grad.sign()
            x_adv = torch.min(torch.max(x_adv, x - eps), x + eps).clamp(0.0, 1.0)
    return x_adv.detach()


def accuracy(model, x, y) -> float:
    with torch.no_grad():
        return (model(x).argmax(1) == y).float().mean().item()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="digits")
    parser.add_argument("--model", default="mlp")
    parser.add_argument("--method", default="trades")
    parser.add_argument("--subset", type=int)
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--eps", type=float, default=0.1)
    parser.add_argument("--test", type=int, default=500, help="test images attacked")
    parser.add_argument("--seeds", type=int, default=5, help="random starts per variant")
    args = parser.parse_args()
    step, start = args.eps / 10, time.perf_counter()      # PGD-20 at the paper's ratio (0.003 for eps 0.031)
    config = RunConfig.from_flat({"dataset": args.dataset, "model": args.model, "method": args.method,
                                  "subset": args.subset, "epochs": args.epochs, "augment": "none", "device": "cpu",
                                  "lr": 0.05, "attack_eps": args.eps, "attack_step_size": args.eps / 4,
                                  "attack_steps": 10, "evaluators": ["accuracy"], "seed": 0})
    result = train_run(config, verbose=False)
    model = result.model.eval()
    test = result.data.dataset.test
    x, y = test.images[:args.test].float() / 255, test.labels[:args.test]
    near = ((x < args.eps) | (x > 1 - args.eps)).float().mean().item()
    ours, theirs = [], []
    for seed in range(args.seeds):
        torch.manual_seed(seed)
        ours.append(accuracy(model, pgd(model, x, y, eps=args.eps, steps=20, step_size=step), y))
        torch.manual_seed(seed)
        theirs.append(accuracy(model, pgd_unclipped_start(model, x, y, eps=args.eps, steps=20, step_size=step), y))
    gaps = [a - b for a, b in zip(ours, theirs)]
    print(f"{args.dataset}, {args.model}, {args.method}, {args.epochs} epochs, eps {args.eps}; {len(y)} test images, "
          f"{100 * near:.1f}% of their pixels within eps of 0 or 1; {time.perf_counter() - start:.0f} s")
    print(f"clean accuracy {100 * accuracy(model, x, y):.2f}%")
    for name, values in (("PGD-20, start clipped to [0, 1] (ours)", ours),
                         ("PGD-20, start unclipped (the authors')", theirs),
                         ("ours - authors' (paired by start seed)", gaps)):
        print(f"{name}: {100 * statistics.fmean(values):.2f} ± {100 * statistics.stdev(values):.2f} "
              f"({', '.join(f'{100 * v:.2f}' for v in values)})")


if __name__ == "__main__":
    main()
