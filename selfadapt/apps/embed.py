"""``selfadapt embed``: features of a data set's images through a pretrained backbone, as ``features:`` reads them.

::

    selfadapt embed --model hf:facebook/dinov2-small --dataset imagefolder:photos --out emb.npz
    selfadapt find-label-issues --dataset features:emb.npz --out runs/photos

The ``.npz`` holds ``X`` (training features, N x D float32), ``y``, ``ids`` (file paths, or each
sample's index in the official order), ``classes``, and for a test split ``X_test``, ``y_test`` and
``ids_test``; ``info`` is a JSON string naming the model, data set, input size and precision.
Finished chunks wait in ``OUT.parts/`` until the end, so the same command after an interruption
continues; the same command twice writes the same bytes.
"""
from __future__ import annotations

import argparse
import json
import shutil
import time
from pathlib import Path

import numpy as np
import torch

from selfadapt.apps.command import Command
from selfadapt.errors import SelfAdaptError

DESCRIPTION = ("Write the features of a data set's training and test images through a pretrained backbone to an "
               ".npz that --dataset features:OUT reads. Rerun the same command after an interruption to continue.")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", required=True, help="hf:ID_OR_FOLDER, a Hugging Face vision backbone "
                                                       "(a hub id, cached or fetched, or a save_pretrained folder)")
    parser.add_argument("--dataset", required=True, help="any image data set train takes (imagefolder:PATH, "
                                                         "csv:FILE, cifar10, ...)")
    parser.add_argument("--out", required=True, help="the .npz to write (features:OUT reads it)")
    parser.add_argument("--data-dir", default=None, help="where the data set files are (default $SELFADAPT_DATA or "
                                                         "./data)")
    parser.add_argument("--batch-size", type=int, default=64, help="images per forward pass; default 64")
    parser.add_argument("--device", default="auto", help="cpu, cuda, cuda:N or auto (bf16 on CUDA); default auto")
    parser.add_argument("--image-size", type=int, default=None,
                        help="imagefolder:, csv: and hf: data: decode to S x S px first (default: the median shorter "
                             "side, at most 256; the backbone then resizes to its own input)")
    parser.add_argument("--cache-dir", default=None, help="where decoded images are cached (default "
                                                          "$SELFADAPT_CACHE, else $XDG_CACHE_HOME/selfadapt or "
                                                          "~/.cache/selfadapt)")
    parser.add_argument("--skip-unreadable", action="store_true",
                        help="imagefolder: and csv: data: leave out images that cannot be read (listed)")
    parser.add_argument("--no-progress", dest="progress", action="store_false", help="print nothing while embedding")


def run(args: argparse.Namespace) -> int:
    """Validate everything, then embed the training and test splits into ``args.out``."""
    from selfadapt.data.registry import load_dataset
    from selfadapt.data.types import LoadOptions
    from selfadapt.embedding import write_npz
    from selfadapt.experiment import resolve_device
    from selfadapt.models.hf import is_hf_model, load_backbone

    out = _output_path(args.out)
    if not is_hf_model(args.model):
        raise SelfAdaptError(f"embed takes a pretrained backbone, --model hf:ID_OR_FOLDER, not {args.model!r}")
    if args.batch_size < 1:
        raise SelfAdaptError(f"--batch-size must be at least 1, got {args.batch_size}")
    if args.image_size is not None and args.image_size < 1:
        raise SelfAdaptError(f"--image-size must be at least 1, got {args.image_size}")
    device = resolve_device(args.device)
    loaded = load_backbone(args.model)  # before the data: a missing model is known in seconds
    extractor = loaded.extractor()
    options = LoadOptions(skip_unreadable=args.skip_unreadable, image_size=args.image_size, cache_dir=args.cache_dir,
                          model=args.model, device=device, verbose=args.progress)
    data = load_dataset(args.dataset, args.data_dir, options=options)
    if data.train.images.dtype != torch.uint8:
        raise SelfAdaptError(f"{args.dataset} holds feature vectors already; embed takes images")
    out.parent.mkdir(parents=True, exist_ok=True)  # everything is validated: the first write
    start = time.perf_counter()
    arrays = _embed_splits(extractor, data, out, args.batch_size, device, args.progress)
    height, width = loaded.input.geometry.output(*data.train.images.shape[-2:])
    info = {"model": args.model, "model_type": loaded.model_type, "dataset": args.dataset,
            "input_size": [height, width], "feature_dim": loaded.backbone.feature_dim,
            "precision": "bfloat16 autocast" if device.startswith("cuda") else "float32"}
    arrays.update(classes=np.array(data.classes), info=np.array(json.dumps(info, sort_keys=True)))
    write_npz(out, arrays)
    shutil.rmtree(f"{out}.parts", ignore_errors=True)
    count = len(data.train) + len(data.test)
    seconds = time.perf_counter() - start
    print(f"{len(data.train)} training and {len(data.test)} test images -> {out} ({loaded.backbone.feature_dim} "
          f"features each, {seconds:.1f} s, {count / max(seconds, 1e-9):.1f} images/s); "
          f"use it as --dataset features:{out}")
    return 0


def _embed_splits(extractor, data, out: Path, batch_size: int, device: str, progress: bool) -> dict:
    """``X``, ``y``, ``ids`` of the training split and ``X_test``, ... of the test split (if any),
    each embedded in chunks under ``OUT.parts/`` (so a rerun continues)."""
    from selfadapt.embedding import embed_images, images_digest, module_digest

    model_key = module_digest(extractor)
    arrays = {}
    for split, name, suffix in ((data.train, "train", ""), (data.test, "test", "_test")):
        if not len(split):
            continue
        key = json.dumps([model_key, images_digest(split.images), batch_size, device.split(":")[0]])
        features = embed_images(extractor, split.images, batch_size=batch_size, device=device,
                                parts=f"{out}.parts/{name}", key=key, progress=f"embed {name}" if progress else None)
        ids = split.files if split.files is not None else [str(i) for i in split.source_index.tolist()]
        arrays.update({f"X{suffix}": features, f"y{suffix}": split.labels.numpy(), f"ids{suffix}": np.array(ids)})
    return arrays


def _output_path(text: str) -> Path:
    out = Path(text).expanduser()
    if out.suffix != ".npz":
        raise SelfAdaptError(f"--out {out} must end in .npz (the features: format)")
    if out.is_dir():
        raise SelfAdaptError(f"--out {out} is a folder; give the .npz file to write")
    parent = out.parent
    if parent.exists() and not parent.is_dir():
        raise SelfAdaptError(f"--out {out}: {parent} is not a folder")
    return out


COMMANDS = [Command("embed", "features of a data set's images through a pretrained backbone (an .npz for features:)",
                    add_arguments, run, DESCRIPTION)]
