"""Measure, in one run, what adversarial training costs per step relative to cross-entropy.

Each method's full step (inner attack, forward, loss, backward, SGD step) runs on the same model
architecture and the same batches, in alternating timed blocks (machine-load drift hits every method
alike); printed: the median seconds per step and the ratio to CE. TRADES with 10 attack steps is
about 11 forward-backward passes plus one forward; PGD-AT about 11.

    python benchmarks/adversarial_cost.py                        # cnn on Fashion-MNIST, CPU
    python benchmarks/adversarial_cost.py --device cuda --model wrn-34-10 --dataset cifar10 --data-dir data
"""
from __future__ import annotations

import argparse
import platform
import statistics
import time

import torch

from selfadapt.batch import Batch
from selfadapt.data.registry import load_dataset
from selfadapt.models import build_model
from selfadapt.objectives.method import MethodContext
from selfadapt.objectives.registry import get_method

METHODS = ("ce", "trades", "trades-sat", "pgd-at")


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def setup(name, dataset, labels, args, device):
    """A fresh model and the method's objective (default options; SAT active from epoch 0)."""
    torch.manual_seed(0)
    model = build_model(args.model, num_classes=dataset.num_classes, in_channels=dataset.in_channels,
                        image_size=dataset.image_size, mean=dataset.mean, std=dataset.std).to(device)
    method = get_method(name)
    options = {"sat_start_epoch": 0} if "sat" in name else {}
    objective = method.build(MethodContext(labels=labels, num_classes=dataset.num_classes, epochs=1, model=model),
                             method.parse(options)).to(device)
    optimizer = torch.optim.SGD([*model.parameters(), *objective.parameters()], lr=0.01, momentum=0.9)
    return model.train(), objective, optimizer


def time_block(model, objective, optimizer, batches, device):
    """Seconds per step over ``batches``."""
    sync(device)
    start = time.perf_counter()
    for batch in batches:
        loss = objective.training_step(model, batch, 0).loss
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    sync(device)
    return (time.perf_counter() - start) / len(batches)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="fashion-mnist")
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--model", default="cnn")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--steps", type=int, default=4, help="steps per timed block")
    parser.add_argument("--repeats", type=int, default=3, help="timed blocks per method (alternating)")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    data = load_dataset(args.dataset, args.data_dir)
    n = args.batch_size * args.steps
    images, labels = data.train.images[:n].to(device), data.train.labels[:n].to(device)
    batches = [Batch((images[i:i + args.batch_size].float() / 255,), labels[i:i + args.batch_size],
                     torch.arange(i, i + args.batch_size, device=device)) for i in range(0, n, args.batch_size)]
    runs = {name: setup(name, data, labels, args, device) for name in METHODS}
    for name in METHODS:                                      # warm-up, untimed
        time_block(*runs[name], batches[:1], device)
    seconds = {name: [] for name in METHODS}
    for _ in range(args.repeats):
        for name in METHODS:
            seconds[name].append(time_block(*runs[name], batches, device))
    ce = statistics.median(seconds["ce"])
    print(f"{args.model} on {args.dataset}, batch {args.batch_size}, {args.device} "
          f"({platform.processor() or platform.machine()}, {args.threads} thread(s)), "
          f"median of {args.repeats} blocks of {args.steps} steps; default attack options (10 steps)")
    for name in METHODS:
        median = statistics.median(seconds[name])
        print(f"  {name:<11} {1000 * median:8.1f} ms/step   x{median / ce:5.2f} CE")


if __name__ == "__main__":
    main()
