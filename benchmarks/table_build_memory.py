"""The peak resident memory of building SAT's N x C target table, before and after, as a multiple of the table.

- **before** (the code this replaced): ``TargetStore(F.one_hot(labels, C), ..., dtype)`` whose body did
  ``initial.detach().to(dtype).clone()``: the caller's int64 one-hot, a converted copy and a clone;
- **after**: ``TargetStore.one_hot(labels, C, ..., dtype)``: zeros in the table's dtype, ones set in
  blocks of rows, and nothing of the table's size besides.

The peak is the kernel's high-water mark (VmHWM, reset through /proc/self/clear_refs) minus the
resident memory before the build; ImageNet's 1,281,167 x 1,000 is scaled to ``--rows``.

    python benchmarks/table_build_memory.py --rows 200000 --classes 1000
"""
from __future__ import annotations

import argparse
import gc
import re
from pathlib import Path

import torch
import torch.nn.functional as F

from selfadapt.targets import TargetStore


def resident(field: str) -> int:
    return int(re.search(rf"{field}:\s+(\d+) kB", Path("/proc/self/status").read_text()).group(1)) * 1024


def peak(build) -> int:
    gc.collect()
    Path("/proc/self/clear_refs").write_text("5")
    before = resident("VmRSS")
    built = build()
    used = resident("VmHWM") - before
    del built
    return used


def before(labels: torch.Tensor, classes: int, dtype: torch.dtype) -> torch.Tensor:
    initial = F.one_hot(labels, classes)           # what SAT passed in
    return initial.detach().to(dtype).clone()      # what TargetStore.__init__ kept


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--classes", type=int, default=1000)
    args = parser.parse_args(argv)
    labels = torch.randint(0, args.classes, (args.rows,), generator=torch.Generator().manual_seed(0))
    print(f"{args.rows} x {args.classes} table; peak resident memory of the build / the table's size")
    print("| dtype | table | before | after |")
    print("|---|---|---|---|")
    for dtype in (torch.float32, torch.bfloat16, torch.float16):
        size = args.rows * args.classes * torch.finfo(dtype).bits // 8
        old = peak(lambda: before(labels, args.classes, dtype))
        new = peak(lambda: TargetStore.one_hot(labels, args.classes, 0.9, dtype=dtype))
        print(f"| {str(dtype).removeprefix('torch.')} | {size / 1e9:.2f} GB | {old / size:.2f}x | {new / size:.2f}x |")


if __name__ == "__main__":
    main()
