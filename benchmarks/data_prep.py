"""A second run's data preparation against the first's, for an image collection.

The first run starts from an empty cache folder (listing, headers, decoding every image into the
cache, then reading the decoded set); the second is what every later run, ``find-label-issues``
and ``eval`` pay (listing, one ``stat`` per image, the cache's index, reading the decoded set).
Both are :func:`selfadapt.experiment.prepare_data` as ``selfadapt train`` calls it.

    python benchmarks/data_prep.py --dataset imagefolder:/tmp/mixed
    python benchmarks/data_prep.py --dataset imagefolder:/tmp/small --image-size 64 --stream
"""
from __future__ import annotations

import argparse
import os
import platform
import shutil
import tempfile
import time

from selfadapt.config.run import RunConfig
from selfadapt.experiment import prepare_data


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", required=True)
    parser.add_argument("--image-size", type=int, default=None)
    parser.add_argument("--stream", action="store_true")
    parser.add_argument("--model", default="cnn")
    args = parser.parse_args()
    cache = tempfile.mkdtemp(prefix="prep-bench-")
    config = RunConfig.from_flat({"dataset": args.dataset, "image_size": args.image_size, "stream": args.stream,
                                  "cache_dir": cache, "model": args.model, "device": "cpu"})
    try:
        seconds = []
        for run in ("first", "second"):
            start = time.perf_counter()
            data = prepare_data(config, verbose=run == "first")
            seconds.append(time.perf_counter() - start)
            print(f"{run} run: {seconds[-1]:.2f} s", flush=True)
    finally:
        shutil.rmtree(cache)
    print(f"{len(data.labels)} training images ({type(data.images).__name__}); {platform.machine()}, "
          f"{os.cpu_count()} cores, shared with other jobs")
    print(f"second run's data preparation: {seconds[1]:.2f} s = {seconds[1] / seconds[0]:.1%} of the first's "
          f"({seconds[0]:.1f} s)")


if __name__ == "__main__":
    main()
