"""Measure, in one run, what SAT and the engine cost over plain cross-entropy in a bare loop.

Prints three figures, each a ratio of medians over alternating timed blocks (so drift in machine
load hits both sides alike):

* SAT step / CE step: same model, same batches, forward + loss + backward + SGD step
  (the paper promises no extra cost; we aim at <= 1.03);
* engine epoch / bare-loop epoch: ``Trainer.train_epoch`` against the shortest loop a user would
  write over the same uint8 tensors (aim <= 1.05);
* images per second of the engine epoch (on CUDA: bf16 autocast + channels_last).

    python benchmarks/step_overhead.py                         # cnn on Fashion-MNIST, CPU
    python benchmarks/step_overhead.py --device cuda --model resnet34 --dataset cifar10 --data-dir data
"""
from __future__ import annotations

import argparse
import platform
import statistics
import time

import torch
import torch.nn.functional as F

from selfadapt.config.sections import EngineSettings
from selfadapt.data.loader import DeviceLoader
from selfadapt.data.registry import load_dataset
from selfadapt.engine.trainer import Trainer
from selfadapt.models import build_model
from selfadapt.objectives import CrossEntropy, LogitLoss, SelfAdaptiveTraining


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def build(args, dataset, device):
    torch.manual_seed(0)
    model = build_model(args.model, num_classes=dataset.num_classes, in_channels=dataset.in_channels,
                        image_size=dataset.image_size, mean=dataset.mean, std=dataset.std)
    memory_format = torch.channels_last if device.type == "cuda" else torch.preserve_format
    return model.to(device, memory_format=memory_format)


def time_steps(model, loss_fn, batches, device, amp):
    """Seconds for one pass of forward + loss + backward + step over ``batches``."""
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    sync(device)
    start = time.perf_counter()
    for (x,), y, index in batches:
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
            loss = loss_fn(model(x), y, index, 100)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    sync(device)
    return time.perf_counter() - start


def alternate_ce_and_sat(model, ce, sat, batches, device, amp, repeats, warmup=3):
    """Seconds per pass over ``batches`` of CE and of SAT, in alternating blocks after a warm-up."""
    time_steps(model, ce, batches[:warmup], device, amp)
    time_steps(model, sat, batches[:warmup], device, amp)
    ce_times, sat_times = [], []
    for _ in range(repeats):
        ce_times.append(time_steps(model, ce, batches, device, amp))
        sat_times.append(time_steps(model, sat, batches, device, amp))
    return ce_times, sat_times


def bare_epoch(model, images, labels, batch_size, device, amp, memory_format):
    """The loop a user writes by hand: shuffle, slice, scale, forward, CE, backward, step."""
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4)
    model.train()
    sync(device)
    start = time.perf_counter()
    order = torch.randperm(len(labels)).to(device)
    for i in range(0, len(labels), batch_size):
        index = order[i:i + batch_size]
        x = images[index].to(memory_format=memory_format).float().div_(255)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
            loss = F.cross_entropy(model(x).float(), labels[index])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    sync(device)
    return time.perf_counter() - start


def engine_epoch(trainer, epoch):
    sync(trainer.device)
    start = time.perf_counter()
    trainer.train_epoch(epoch)
    sync(trainer.device)
    return time.perf_counter() - start


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="fashion-mnist")
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--model", default="cnn")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--samples", type=int, default=6400, help="training samples per timed epoch")
    parser.add_argument("--repeats", type=int, default=5, help="alternating timed blocks per side")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads (CPU)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    amp = device.type == "cuda"
    memory_format = torch.channels_last if device.type == "cuda" else torch.contiguous_format
    dataset = load_dataset(args.dataset, args.data_dir)
    images = dataset.train.images[:args.samples].to(device)
    labels = dataset.train.labels[:args.samples].to(device)
    n = len(labels)

    # 1. SAT step vs CE step on identical batches.
    loader = DeviceLoader(images, labels, batch_size=args.batch_size, shuffle=True, seed=0, device=device,
                          channels_last=device.type == "cuda")
    batches = list(loader)
    model = build(args, dataset, device)
    ce = CrossEntropy()
    sat = SelfAdaptiveTraining(labels, dataset.num_classes, momentum=0.9, start_epoch=0).to(device)
    ce_times, sat_times = alternate_ce_and_sat(model, ce, sat, batches, device, amp, args.repeats)

    # 2. Engine epoch vs bare loop over the same tensors (CE, no augmentation, no test set).
    engine_model = build(args, dataset, device)
    trainer = Trainer(engine_model, LogitLoss(CrossEntropy()), DeviceLoader(
        images, labels, batch_size=args.batch_size, shuffle=True, seed=0, device=device,
        channels_last=device.type == "cuda"), EngineSettings(epochs=1, lr=0.01, device=str(device), progress=False))
    bare_model = build(args, dataset, device)
    engine_epoch(trainer, 0)  # warm-up
    bare_epoch(bare_model, images, labels, args.batch_size, device, amp, memory_format)
    engine_times, bare_times = [], []
    for _ in range(args.repeats):
        engine_times.append(engine_epoch(trainer, 0))
        bare_times.append(bare_epoch(bare_model, images, labels, args.batch_size, device, amp, memory_format))

    med = statistics.median
    hardware = torch.cuda.get_device_name(device) if device.type == "cuda" else \
        f"{platform.processor() or platform.machine()} CPU, {torch.get_num_threads()} torch threads"
    print(f"{args.model} on {args.dataset}: {n} samples, batch {args.batch_size}, {args.repeats} alternating "
          f"blocks per side; {hardware}; torch {torch.__version__}" + ("; bf16 autocast, channels_last" if amp else ""))
    print(f"CE  step: {1e3 * med(ce_times) / len(batches):8.2f} ms   SAT step: {1e3 * med(sat_times) / len(batches):8.2f} ms"
          f"   SAT/CE = {med(sat_times) / med(ce_times):.3f}")
    print(f"bare epoch: {med(bare_times):7.3f} s   engine epoch: {med(engine_times):7.3f} s"
          f"   engine/bare = {med(engine_times) / med(bare_times):.3f}")
    print(f"engine throughput: {n / med(engine_times):,.0f} images/s")


if __name__ == "__main__":
    main()
