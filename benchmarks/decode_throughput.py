"""Images per second per core of the cache build against the loop users write, on the same large JPEGs.

The plain loop is what ``torchvision.datasets.ImageFolder`` + ``Resize(S)`` + ``CenterCrop(S)`` do
with PIL: open, ``convert("RGB")``, resize the shorter side to S (bilinear, antialiased), centre crop.
The cache build is :func:`selfadapt.data.cache.decoded_images` from an empty cache (headers read,
every image decoded in draft mode and written to disk) with one worker process, so both use one
core; a two-worker build is printed beside it. Each side runs ``--repeats`` times, alternating, and
the medians are compared, in wall-clock time and in CPU time (this process's and its workers':
images per CPU-second is the per-core rate). On a machine shared with other jobs both drift; the
image-by-image comparison (plain loop, then header read + decode, for each image in turn, in CPU
time) is the steadiest of the three.

    python benchmarks/photo_data.py large /tmp/photos200 --count 200
    python benchmarks/decode_throughput.py /tmp/photos200 --sizes 64,224
"""
from __future__ import annotations

import argparse
import os
import platform
import resource
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

from selfadapt.data.cache import decoded_images
from selfadapt.data.collection import file_source, scan_folder
from selfadapt.data.decode import DecodeSettings, decode, probe
from selfadapt.data.probes import probed_images


def plain_loop(paths: list[Path], size: int) -> np.ndarray:
    """What users write (torchvision's ImageFolder + Resize + CenterCrop, with PIL)."""
    out = np.empty((len(paths), 3, size, size), np.uint8)
    for k, path in enumerate(paths):
        with open(path, "rb") as f:
            image = Image.open(f).convert("RGB")
        w, h = image.size
        scale = size / min(w, h)
        image = image.resize((max(size, round(w * scale)), max(size, round(h * scale))), Image.Resampling.BILINEAR)
        left, top = (image.width - size) // 2, (image.height - size) // 2
        out[k] = np.asarray(image.crop((left, top, left + size, top + size))).transpose(2, 0, 1)
    return out


def interleaved(paths: list[Path], size: int) -> tuple[float, float]:
    """CPU seconds of the plain loop and of our decode (header read + decode), image by image in turn,
    so that drift in the machine's state hits both alike."""
    plain = ours = 0.0
    settings = DecodeSettings(size, 3)
    for path in paths:
        start = time.process_time()
        plain_loop([path], size)
        middle = time.process_time()
        probe(str(path))
        decode(str(path), settings)
        plain, ours = plain + middle - start, ours + time.process_time() - middle
    return plain, ours


def cpu_seconds() -> float:
    """CPU time of this process and of its finished children (the pool's workers)."""
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return time.process_time() + children.ru_utime + children.ru_stime


def timed(f) -> tuple[float, float]:
    """(wall seconds, CPU seconds) of ``f()``."""
    wall, cpu = time.perf_counter(), cpu_seconds()
    f()
    return time.perf_counter() - wall, cpu_seconds() - cpu


def cache_build(root: Path, keys: list[str], size: int, workers: int) -> None:
    """Build the cache from nothing (headers and decode) in a fresh folder."""
    cache = Path(tempfile.mkdtemp(prefix="decode-bench-"))
    try:
        source = file_source(f"imagefolder:{root}", root, keys)
        probed_images(source, cache_dir=cache, workers=workers, progress=False)
        out = decoded_images(source, DecodeSettings(size, 3), cache_dir=cache, workers=workers, progress=False)
        assert out.decoded == len(keys) and not out.errors
    finally:
        shutil.rmtree(cache)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("folder", type=Path)
    parser.add_argument("--sizes", default="64,224")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    root = args.folder.resolve()
    keys, _ = scan_folder(root, root)
    paths = [root / k for k in keys]
    with Image.open(paths[0]) as first:
        shape = first.size
    print(f"{len(keys)} images like {keys[0]} ({shape[0]} x {shape[1]}, {paths[0].stat().st_size // 1024} KB); "
          f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, shared with other jobs")
    for size in (int(s) for s in args.sizes.split(",")):
        plain, ours, two = [], [], []
        for _ in range(args.repeats):
            plain.append(timed(lambda: plain_loop(paths, size)))
            ours.append(timed(lambda: cache_build(root, keys, size, workers=1)))
            two.append(timed(lambda: cache_build(root, keys, size, workers=2)))
        (p, pc), (o, oc), (t, tc) = ((len(keys) / statistics.median(w for w, _ in x),
                                      len(keys) / statistics.median(c for _, c in x)) for x in (plain, ours, two))
        plain_cpu, ours_cpu = interleaved(paths, size)
        print(f"S={size}, image by image in turn: plain loop {1000 * plain_cpu / len(paths):.1f} CPU-ms an image, "
              f"our decode {1000 * ours_cpu / len(paths):.1f} ({plain_cpu / ours_cpu:.2f}x)")
        print(f"S={size}, images/s (per wall-clock second | per CPU-second): plain PIL loop {p:.1f} | {pc:.1f}; "
              f"cache build, 1 worker {o:.1f} | {oc:.1f}; 2 workers {t:.1f} | {tc:.1f}. Cache build per core: "
              f"{o / p:.2f}x the plain loop by the clock, {oc / pc:.2f}x by CPU time")


if __name__ == "__main__":
    main()
