"""``selfadapt embed`` against the loop the transformers docs write, on the same model, batch and device.

Both embed the same decoded images (real CIFAR-10 JPEGs decoded once into uint8 arrays in memory:
the state an on-disk decoded-image cache hands over) with the same model:

- **transformers loop** (its docs' feature-extraction recipe): per batch,
  ``inputs = processor(images=batch, return_tensors="pt")``, ``outputs = model(**inputs)`` under
  ``torch.no_grad()``, keep ``outputs.pooler_output``; the batch is the list of HWC uint8 arrays;
- **selfadapt**: :func:`selfadapt.embedding.embed_images` (what ``selfadapt embed`` runs: resize,
  crop and normalisation batched inside the model, chunks written to disk as they finish).

The model is DINOv2-small's architecture (``Dinov2Config()`` defaults: 384 wide, 12 layers, patch 14)
with its processor's recipe (short side 256 bicubic, centre crop 224, ImageNet mean and std),
randomly initialised and written with ``save_pretrained`` (no pretrained weights can be reached
here; the cost of a forward pass does not depend on the weights). ``--model tiny`` is a 2-layer
version for a quick check. The two are timed alternately, ``--repeats`` times each; the ratio of
the medians is printed with the peak resident memory each added (VmHWM, reset before each).

    python benchmarks/embed_throughput.py --images 256 --batch-size 32 --repeats 3
"""
from __future__ import annotations

import argparse
import os
import platform
import re
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

_ROOT = Path(__file__).resolve().parents[1]
ARCHIVE = next((p for p in (_ROOT.parent / "shared", _ROOT.parents[1] / "shared") if p.is_dir()),
               _ROOT.parent / "shared") / "data" / "cifar10-jpeg.tar.gz"


def save_model(folder: Path, size: str) -> Path:
    import transformers as t

    torch.manual_seed(0)
    config = t.Dinov2Config() if size == "small" else t.Dinov2Config(num_hidden_layers=2)
    t.Dinov2Model(config).save_pretrained(folder)
    t.BitImageProcessor(size={"shortest_edge": 256}, crop_size={"height": 224, "width": 224}, resample=3,
                        image_mean=[0.485, 0.456, 0.406], image_std=[0.229, 0.224, 0.225]).save_pretrained(folder)
    return folder


def decoded_images(count: int) -> torch.Tensor:
    """The first ``count`` CIFAR-10 training JPEGs of the archive, decoded to uint8 (N, 3, 32, 32)."""
    import io
    import tarfile

    from PIL import Image

    out = []
    with tarfile.open(ARCHIVE) as tar:
        for member in tar:
            if member.isfile() and member.name.startswith("train/"):
                image = Image.open(io.BytesIO(tar.extractfile(member).read())).convert("RGB")
                out.append(torch.from_numpy(np.array(image)).permute(2, 0, 1))
                if len(out) == count:
                    break
    return torch.stack(out)


def peak_added(run) -> tuple[object, float]:
    """``run()``'s result and the resident memory it added at its peak (GB)."""
    def kib(field):
        return int(re.search(rf"{field}:\s+(\d+) kB", Path("/proc/self/status").read_text()).group(1)) * 1024
    Path("/proc/self/clear_refs").write_text("5")
    before = kib("VmRSS")
    result = run()
    return result, (kib("VmHWM") - before) / 1e9


def transformers_loop(folder: Path, images: torch.Tensor, batch_size: int) -> np.ndarray:
    from transformers import AutoImageProcessor, AutoModel

    processor = AutoImageProcessor.from_pretrained(folder)
    model = AutoModel.from_pretrained(folder).eval()
    arrays = [image.permute(1, 2, 0).numpy() for image in images]
    features = []
    for start in range(0, len(arrays), batch_size):
        inputs = processor(images=arrays[start:start + batch_size], return_tensors="pt")
        with torch.no_grad():
            outputs = model(**inputs)
        features.append(outputs.pooler_output)
    return torch.cat(features).numpy()


def selfadapt_embed(folder: Path, images: torch.Tensor, batch_size: int) -> np.ndarray:
    from selfadapt.embedding import embed_images
    from selfadapt.models.hf import load_backbone

    extractor = load_backbone(f"hf:{folder}").extractor()
    with tempfile.TemporaryDirectory() as parts:
        return embed_images(extractor, images, batch_size=batch_size, device="cpu", parts=parts, key="bench")


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=256)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--model", choices=["small", "tiny"], default="small")
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's)")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    import transformers

    transformers.utils.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    images = decoded_images(args.images)
    with tempfile.TemporaryDirectory() as tmp:
        folder = save_model(Path(tmp) / "dinov2", args.model)
        times = {"transformers": [], "selfadapt": []}
        peaks, features = {}, {}
        for _ in range(args.repeats):
            for name, run in (("transformers", transformers_loop), ("selfadapt", selfadapt_embed)):
                start = time.perf_counter()
                features[name], peak = peak_added(lambda: run(folder, images, args.batch_size))
                times[name].append(time.perf_counter() - start)
                peaks[name] = max(peaks.get(name, 0.0), peak)
    rate = {name: args.images / statistics.median(t) for name, t in times.items()}
    difference = np.abs(features["selfadapt"] - features["transformers"]).max()
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, torch threads "
          f"{torch.get_num_threads()}, load average {os.getloadavg()[0]:.1f} at the end (shared machine)")
    print(f"model: DINOv2-{args.model} architecture (random weights), {args.images} CIFAR-10 images 32 px -> 224 px, "
          f"batch {args.batch_size}, CPU, {args.repeats} alternating repeats")
    for name in times:
        print(f"{name}: {rate[name]:.2f} images/s (median of {', '.join(f'{t:.1f}' for t in times[name])} s), "
              f"peak memory added {peaks[name]:.2f} GB")
    print(f"selfadapt / transformers images per second = {rate['selfadapt'] / rate['transformers']:.3f}; "
          f"largest feature difference {difference:.2e} (PIL resizes uint8, selfadapt resizes float)")


if __name__ == "__main__":
    main()
