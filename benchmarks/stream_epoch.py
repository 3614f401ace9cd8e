"""Epoch time when batches stream from the image cache on disk, against the same epoch in memory.

Both runs are built by the engine from one configuration that differs only in ``--stream``: same
model, data, order, augmentation and batches (tests check they are identical). Their epochs are
timed alternately (``Trainer.train_epoch``, training only), so drift in the machine's load hits
both alike; the ratios of the medians are printed, by the clock and by CPU time (every thread of
the process, the reading thread included). The cache is built (or reused) first.

    python benchmarks/photo_data.py small /tmp/small --count 200000
    python benchmarks/stream_epoch.py --dataset imagefolder:/tmp/small --subset 20000 --image-size 64
"""
from __future__ import annotations

import argparse
import os
import platform
import statistics
import time

import torch

from selfadapt.config.run import RunConfig
from selfadapt.engine.trainer import Trainer
from selfadapt.experiment import build_run


def trainer_for(args, stream: bool) -> Trainer:
    config = RunConfig.from_flat({
        "dataset": args.dataset, "subset": args.subset, "image_size": args.image_size, "stream": stream,
        "cache_dir": args.cache_dir, "model": args.model, "method": "ce", "epochs": args.rounds,
        "batch_size": args.batch_size, "lr": 0.05, "device": "cpu", "progress": False, "evaluators": []})
    parts = build_run(config, device="cpu", verbose=not stream)
    return Trainer(parts.model, parts.objective, parts.train_loader, config.engine)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", required=True)
    parser.add_argument("--subset", type=int, default=None)
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument("--cache-dir", default=None)
    parser.add_argument("--model", default="cnn")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    in_memory, streamed = trainer_for(args, stream=False), trainer_for(args, stream=True)
    print(f"{type(in_memory.train_loader).__name__} vs {type(streamed.train_loader).__name__}: "
          f"{len(in_memory.train_loader.labels)} images, {args.model}, batch {args.batch_size}, {args.threads} "
          f"torch thread(s); {platform.machine()}, {os.cpu_count()} cores, shared with other jobs")
    times = {"memory": [], "stream": []}
    for epoch in range(args.rounds):
        for name, trainer in (("memory", in_memory), ("stream", streamed)) if epoch % 2 == 0 else \
                (("stream", streamed), ("memory", in_memory)):
            cpu = time.process_time()  # every thread of this process: training and the reading thread
            wall = trainer.train_epoch(epoch)["train_seconds"]
            times[name].append((wall, time.process_time() - cpu))
            print(f"epoch {epoch} {name}: {wall:.1f} s, {times[name][-1][1]:.1f} CPU-s", flush=True)
    (memory, memory_cpu), (stream, stream_cpu) = ((statistics.median(w for w, _ in times[k]),
                                                   statistics.median(c for _, c in times[k])) for k in times)
    print(f"median epoch: in memory {memory:.1f} s ({memory_cpu:.1f} CPU-s), streamed from the cache {stream:.1f} s "
          f"({stream_cpu:.1f} CPU-s); ratio {stream / memory:.3f} by the clock, {stream_cpu / memory_cpu:.3f} by CPU time")


if __name__ == "__main__":
    main()
