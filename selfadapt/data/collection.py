"""Users' image collections (``imagefolder:``, ``csv:``, ``hf:``) as a :class:`Dataset`, whatever their
sizes and count: headers read, a size chosen, every image decoded once into the cache, and the
decoded set held in memory when it fits the memory budget, else streamed from the cache.

``load_collection(source, labels, n_train, classes, options, name=..., root=...)`` is what each
reader calls once it has listed its images; :func:`scan_folder` lists a folder quickly
(``os.scandir``, one ``stat`` per image: the cache needs its size and modification time).

>>> choose_image_size([1500, 1400, 3000], model="cnn", device="cpu")
(64, 'median shorter side 1500 px, capped at 64 px for cnn on cpu')
"""
from __future__ import annotations

import os
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch

from selfadapt.data.cache import Source, decoded_images
from selfadapt.data.cache_io import default_cache_dir
from selfadapt.data.decode import IMAGE_SUFFIXES, DecodeSettings
from selfadapt.data.probes import probed_images
from selfadapt.data.types import Dataset, ImageSet, LoadOptions
from selfadapt.errors import SelfAdaptError

__all__ = ["cache_root", "choose_image_size", "file_source", "load_collection", "memory_budget", "note_ignored",
           "scan_folder"]

CPU_SIZE_CAP = 64          # px: what a CPU trains on in minutes, not hours
GPU_SIZE_CAP = {"resnet18": 224, "resnet34": 224, "resnet50": 224}  # ImageNet-sized ResNets (ImageNet stem)
SMALL_GPU_SIZE_CAP = 96    # the other models were designed for 32-96 px images
PRETRAINED_SIZE_CAP = 256  # px: an hf: backbone resizes inside to its own input (224 for most); less loses detail


def cache_root(options: LoadOptions) -> Path:
    """``--cache-dir``, or the per-user cache folder."""
    return Path(options.cache_dir).expanduser() if options.cache_dir else default_cache_dir()


def choose_image_size(short_sides, *, model: str, device: str) -> tuple[int, str]:
    """The median shorter side, capped by what ``model`` trains well on ``device`` (a pretrained
    ``hf:`` backbone: its input size, on any device, as it costs the same whatever the decoded size); and why."""
    median = int(np.median(short_sides)) if len(short_sides) else 32
    if str(model).startswith("hf:"):
        cap = PRETRAINED_SIZE_CAP
    else:
        cap = CPU_SIZE_CAP if not str(device).startswith("cuda") else GPU_SIZE_CAP.get(model, SMALL_GPU_SIZE_CAP)
    why = f"median shorter side {median} px"
    if median > cap:
        return cap, f"{why}, capped at {cap} px for {model} on {str(device).split(':')[0]}"
    return max(median, 1), why


def memory_budget(device: str) -> int:
    """Bytes the decoded images may take in memory: half the available RAM, and on CUDA (where the
    in-memory loader keeps them on the GPU) a quarter of the GPU's memory."""
    available = _mem_available()
    budget = available // 2
    if str(device).startswith("cuda") and torch.cuda.is_available():
        budget = min(budget, torch.cuda.get_device_properties(torch.device(device)).total_memory // 4)
    return budget


def _mem_available() -> int:
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")


def scan_folder(folder: Path, root: Path) -> tuple[list[str], list[str]]:
    """Image files under ``folder`` (paths relative to ``root``, sorted) and the other files (ignored
    by extension); hidden files and folders are skipped. No ``stat`` beyond what ``os.scandir`` gives."""
    images, others, stack = [], [], [folder]
    prefix = len(str(root)) + 1
    while stack:
        with os.scandir(stack.pop()) as entries:
            for entry in entries:
                if entry.name.startswith("."):
                    continue
                if entry.is_dir():
                    stack.append(entry.path)
                elif os.path.splitext(entry.name)[1].lower() in IMAGE_SUFFIXES:
                    images.append(entry.path[prefix:].replace(os.sep, "/"))
                else:
                    others.append(entry.path[prefix:].replace(os.sep, "/"))
    return sorted(images), sorted(others)


def file_source(source_id: str, root: Path, keys: list[str]) -> Source:
    """A :class:`Source` of files ``root/key``, stamped with their size and modification time (the
    ``stat`` calls run in threads: on a network or overlay file system they wait more than they work)."""
    base = str(root)

    def stamp(chunk: list[str]) -> list[tuple[int, int]]:
        out = []
        for key in chunk:
            try:
                st = os.stat(os.path.join(base, key))
            except OSError as e:
                raise SelfAdaptError(f"cannot read image {key} in {root}: {e.strerror}") from None
            out.append((st.st_size, st.st_mtime_ns))
        return out

    chunks = [keys[i:i + 2048] for i in range(0, len(keys), 2048)]
    with ThreadPoolExecutor(8) as pool:
        stamps = [s for part in pool.map(stamp, chunks) for s in part]
    stamps = np.array(stamps, dtype=np.int64).reshape(len(keys), 2)
    return Source(source_id, keys, stamps, lambda start, stop: [os.path.join(base, k) for k in keys[start:stop]])


def note_ignored(others: list[str], root: Path) -> None:
    """Say once how many files were not images (by their extension)."""
    if others:
        kinds = sorted({os.path.splitext(o)[1].lower() or "(no extension)" for o in others})
        print(f"ignored {len(others)} file(s) in {root} that are not images by their extension "
              f"({', '.join(kinds[:6])}), e.g. {others[0]}", file=sys.stderr)


def load_collection(source: Source, labels, n_train: int, classes: list[str], options: LoadOptions, *,
                    name: str, root) -> Dataset:
    """The :class:`Dataset` of ``source`` (rows ``:n_train`` train, the rest test) at the chosen size."""
    labels = np.asarray(labels, dtype=np.int64)
    probes = probed_images(source, cache_dir=cache_root(options), workers=options.workers, progress=options.verbose)
    bad = probes.errors()
    _refuse_or_list(bad, source.keys, root, options.skip_unreadable, final=False)
    readable = probes.error == ""
    channels = 1 if readable.any() and probes.grey[readable].all() else 3
    size, why = options.image_size, "--image-size"
    if size is None:
        size, why = choose_image_size(probes.short_side[:n_train][readable[:n_train]], model=options.model,
                                      device=options.device)
    decoded = decoded_images(source, DecodeSettings(size, channels), cache_dir=cache_root(options), labels=labels,
                             workers=options.workers, progress=options.verbose)
    bad.update(decoded.errors)
    _refuse_or_list(bad, source.keys, root, options.skip_unreadable, final=True)
    unreadable = np.zeros(len(source.keys), bool)
    unreadable[list(bad)] = True
    kept = np.flatnonzero(~unreadable)
    train_rows, test_rows = kept[kept < n_train], kept[kept >= n_train]
    if not len(train_rows):
        raise SelfAdaptError(f"{root}: no training image could be read")
    mean, std = _stats(decoded.sums[train_rows], size)
    images = decoded.images.subset(kept)
    in_memory = not options.stream and images.nbytes <= memory_budget(options.device)
    if options.verbose:
        counts = f"{len(train_rows)} training and {len(test_rows)} test images"
        _describe(decoded, source.keys, counts, images.nbytes, (size, channels, why), in_memory, options)
    held = images.load() if in_memory else images

    def split(rows, part):
        keys = [source.keys[i] for i in rows]
        return ImageSet(part, torch.from_numpy(labels[rows]), torch.arange(len(rows)), keys)

    n = len(train_rows)
    train_images = held[:n] if in_memory else held.subset(np.arange(n))
    test_images = held[n:].clone() if in_memory else held.subset(np.arange(n, len(kept)))  # frees with train
    return Dataset(name, split(train_rows, train_images), split(test_rows, test_images), classes, mean, std)


def _refuse_or_list(bad: dict[int, str], keys: list[str], root, skip: bool, *, final: bool) -> None:
    """Unreadable images: one error naming the first (``skip``: listed on stderr, left out)."""
    if not bad:
        return
    rows = sorted(bad)
    if not skip:
        more = f" (and {len(rows) - 1} more)" if len(rows) > 1 else ""
        raise SelfAdaptError(f"cannot read image {keys[rows[0]]} in {root}: {bad[rows[0]]}{more}; "
                             "--skip-unreadable leaves unreadable images out")
    if final:
        listed = ", ".join(f"{keys[i]} ({bad[i]})" for i in rows[:20]) + (" ..." if len(rows) > 20 else "")
        print(f"skipped {len(rows)} unreadable image(s) in {root}: {listed}", file=sys.stderr)


def _stats(sums: np.ndarray, size: int) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and std on [0, 1] from per-image sums and sums of squares (exact integers)."""
    pixels = max(len(sums) * size * size, 1)
    total, squares = sums[..., 0].sum(0).astype(np.float64), sums[..., 1].sum(0).astype(np.float64)
    mean = total / pixels
    var = np.maximum(squares / pixels - mean ** 2, 0.0)
    return tuple(round(float(m) / 255, 6) for m in mean), tuple(round(float(v) ** 0.5 / 255, 6) for v in var)


def _describe(decoded, keys: list[str], counts: str, nbytes: int, chosen: tuple, in_memory: bool, options) -> None:
    """Say where the cache is, what it did, the size chosen and why, and where the images are kept."""
    size, channels, why = chosen
    if decoded.decoded or decoded.copied:
        done = f"decoded {decoded.decoded} image(s)" + (f", {decoded.copied} reused" if decoded.copied else "")
    else:
        done = "reused"
    print(f"image cache: {decoded.folder} ({done})")
    if decoded.animated.any():
        first = int(np.flatnonzero(decoded.animated)[0])
        print(f"{int(decoded.animated.sum())} animated image(s), e.g. {keys[first]}: the first frame is used",
              file=sys.stderr)
    where = "held in memory" if in_memory else (
        "streamed from the cache (--stream)" if options.stream else
        f"streamed from the cache (more than the memory budget, {memory_budget(options.device) / 2**30:.1f} GB)")
    print(f"{counts} at {size} x {size} px, {'grey' if channels == 1 else 'RGB'} ({why}): "
          f"{nbytes / 2**20:.1f} MB decoded, {where}")
