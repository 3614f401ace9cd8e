"""Is listing a folder of many tiny images the slow part? Each phase of preparing it, timed.

Phases of a first run (empty cache): listing the folder (``os.scandir``), one ``stat`` per image
(size and modification time, which the cache keys on), reading headers, decoding into the cache;
then the second run, which lists, stats and finds everything in the cache. Also ``pathlib``'s
``rglob`` + ``is_file`` + ``suffix`` listing (what the image-folder reader did before) for comparison.

    python benchmarks/photo_data.py tiny /tmp/tiny --count 100000
    python benchmarks/folder_scan.py /tmp/tiny
"""
from __future__ import annotations

import argparse
import os
import platform
import shutil
import tempfile
import time
from pathlib import Path

from selfadapt.data.cache import decoded_images
from selfadapt.data.collection import file_source, scan_folder
from selfadapt.data.decode import IMAGE_SUFFIXES, DecodeSettings
from selfadapt.data.probes import probed_images


def timed(f):
    start = time.perf_counter()
    out = f()
    return out, time.perf_counter() - start


def pathlib_listing(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES
                  and not p.name.startswith("."))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("folder", type=Path)
    parser.add_argument("--size", type=int, default=8)
    args = parser.parse_args()
    root = args.folder.resolve()
    cache = Path(tempfile.mkdtemp(prefix="scan-bench-"))
    try:
        (keys, others), scan = timed(lambda: scan_folder(root, root))
        source, stat = timed(lambda: file_source(f"imagefolder:{root}", root, keys))
        probes, headers = timed(lambda: probed_images(source, cache_dir=cache, progress=False))
        settings = DecodeSettings(args.size, 3)
        _, decode = timed(lambda: decoded_images(source, settings, cache_dir=cache, progress=False))
        (keys2, _), scan2 = timed(lambda: scan_folder(root, root))
        source2, stat2 = timed(lambda: file_source(f"imagefolder:{root}", root, keys2))
        _, reuse = timed(lambda: (probed_images(source2, cache_dir=cache, progress=False),
                                  decoded_images(source2, settings, cache_dir=cache, progress=False).images.load()))
        _, old = timed(lambda: pathlib_listing(root))
    finally:
        shutil.rmtree(cache)
    first = scan + stat + headers + decode
    second = scan2 + stat2 + reuse
    print(f"{len(keys)} images and {len(others)} other files in {root}; {platform.machine()}, {os.cpu_count()} cores, "
          "shared with other jobs")
    print(f"first run {first:.2f} s: listing {scan:.2f} s ({scan / first:.1%}), stat {stat:.2f} s ({stat / first:.1%}), "
          f"headers {headers:.2f} s, decoding {decode:.2f} s")
    print(f"second run {second:.2f} s ({second / first:.1%} of the first): listing {scan2:.2f} s, stat {stat2:.2f} s, "
          f"cache lookup and load {reuse:.2f} s")
    print(f"pathlib rglob + is_file + suffix listing: {old:.2f} s ({old / scan:.1f}x os.scandir)")


if __name__ == "__main__":
    main()
