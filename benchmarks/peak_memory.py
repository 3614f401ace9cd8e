"""Peak memory of a command: the largest process's peak resident size (what ``/usr/bin/time -v``
reports), and the peak of the whole process tree's proportional set size (PSS: each shared page
counted once across the tree), sampled every 50 ms from ``/proc``, which counts forked workers too.

    python benchmarks/peak_memory.py -- selfadapt find-label-issues --dataset imagefolder:/tmp/photos \\
        --epochs 2 --image-size 64 --out /tmp/run
"""
from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import time


def tree_pss(root: int) -> int:
    """Bytes of PSS summed over ``root`` and its descendants (0 for processes that vanished)."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    parent = int(f.read().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(parent, []).append(int(entry))
    total, stack = 0, [root]
    while stack:
        pid = stack.pop()
        stack += children.get(pid, [])
        try:
            with open(f"/proc/{pid}/smaps_rollup") as f:
                total += sum(int(line.split()[1]) * 1024 for line in f if line.startswith("Pss:"))
        except OSError:
            pass
    return total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("command", nargs=argparse.REMAINDER)
    args = parser.parse_args()
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    start = time.perf_counter()
    process = subprocess.Popen(command)
    peak = 0
    while process.poll() is None:
        peak = max(peak, tree_pss(process.pid))
        time.sleep(0.05)
    seconds = time.perf_counter() - start
    largest = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024
    print(f"exit {process.returncode}; {seconds:.1f} s; peak resident size of the largest process "
          f"{largest / 2**30:.3f} GB; peak PSS of the process tree {peak / 2**30:.3f} GB", file=sys.stderr)
    sys.exit(process.returncode)


if __name__ == "__main__":
    main()
