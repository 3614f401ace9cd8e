"""``--freeze-backbone``: a pretrained backbone's features computed once, and a head trained on them.

Every image of the run (training, validation and test splits, after any input corruption) goes
through the backbone once; the features are cached on disk, keyed by the backbone's weights and
processor, the images' bytes, the batch size and the precision, so a second run (another method,
seed or noise rate on the same images) costs no pass over the images. The run then trains the
``--head`` (``linear`` or ``mlp``) on the features exactly as on a ``features:`` table: SAT, the
noisy-label baselines, anything that does not need the pixels.

The cache lives in ``$SELFADAPT_CACHE/features`` (default ``~/.cache/selfadapt/features``); an
interrupted embedding continues from its last finished chunk (``selfadapt.embedding``).

>>> from types import SimpleNamespace as NS
>>> check_backbone_settings(NS(model=NS(model="resnet18", freeze_backbone=True, head="linear", width=None),
...                            data=NS(dataset="cifar10", augment="none"), method=NS(method="sat")))
Traceback (most recent call last):
selfadapt.errors.SelfAdaptError: --freeze-backbone needs a pretrained backbone: --model hf:ID_OR_FOLDER
"""
from __future__ import annotations

import hashlib
import os
import shutil
from pathlib import Path

import numpy as np
import torch

from selfadapt.errors import SelfAdaptError
from selfadapt.models.hf import is_hf_model

EMBED_BATCH_SIZE = 64  # images per backbone forward pass while features are computed


def head_model(config) -> str:
    """The model a run builds: the ``--head`` on a frozen backbone's features, else ``--model``."""
    return config.model.head if config.model.freeze_backbone else config.model.model


def check_backbone_settings(config, prefix: str = "") -> None:
    """Refuse combinations a pretrained backbone or its frozen features cannot serve (one line)."""
    model, data = config.model, config.data
    hf = is_hf_model(model.model)
    problem = None
    if model.freeze_backbone and not hf:
        problem = "--freeze-backbone needs a pretrained backbone: --model hf:ID_OR_FOLDER"
    elif model.head != "linear" and not model.freeze_backbone:
        problem = "--head chooses the head on a frozen backbone's features: add --freeze-backbone"
    elif hf and data.dataset.lower().startswith("features:"):
        problem = "features: data are vectors already: train --model linear or mlp on them, not a backbone"
    elif hf and model.width is not None and model.head != "mlp":
        problem = "a pretrained backbone has its own width: --width sets the hidden units of --head mlp only"
    elif model.freeze_backbone and data.augment != "none":
        problem = "--freeze-backbone computes each image's features once, unaugmented: add --augment none"
    vectors = model.freeze_backbone or data.dataset.lower().startswith("features:")
    if problem is None and vectors:
        from selfadapt.objectives.registry import get_method

        method = get_method(config.method.method)
        if method.needs_images:
            problem = (f"method {method.name} works on the images themselves, not on feature vectors"
                       + (": drop --freeze-backbone to train the whole network" if model.freeze_backbone else ""))
    if problem:
        raise SelfAdaptError(f"{prefix}{problem}")


def feature_cache_dir() -> Path:
    """``$SELFADAPT_CACHE/features``, else ``$XDG_CACHE_HOME/selfadapt/features``, else ``~/.cache/selfadapt/features``."""
    root = os.environ.get("SELFADAPT_CACHE")
    if root:
        return Path(root).expanduser() / "features"
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base).expanduser() / "selfadapt" / "features"


def cached_features(extractor, model_key: str, images, *, device: str, what: str, verbose: bool) -> torch.Tensor:
    """``extractor``'s features of ``images`` (N x D float32), from the cache or computed into it."""
    from selfadapt.embedding import embed_images, images_digest, npy_bytes
    from selfadapt.rundir import atomic_write_bytes

    precision = "bf16" if str(device).startswith("cuda") else "fp32"
    key = hashlib.blake2b(f"{model_key}|{images_digest(images)}|{EMBED_BATCH_SIZE}|{precision}".encode(),
                          digest_size=20).hexdigest()
    folder = feature_cache_dir()
    file = folder / f"{key}.npy"
    if file.is_file():
        if verbose:
            print(f"{what}: {len(images)} images' features from the cache ({file})")
        return torch.from_numpy(np.load(file, allow_pickle=False))
    folder.mkdir(parents=True, exist_ok=True)
    features = embed_images(extractor, images, batch_size=EMBED_BATCH_SIZE, device=device,
                            parts=folder / f"{key}.parts", key=key, progress=what if verbose else None)
    atomic_write_bytes(file, npy_bytes(features))
    shutil.rmtree(folder / f"{key}.parts", ignore_errors=True)
    return torch.from_numpy(features)


def freeze_backbone(config, data, device: str, *, verbose: bool = True):
    """``data`` (a :class:`~selfadapt.experiment.PreparedData`) with every image replaced by its
    backbone features (``D x 1 x 1`` float "images", as ``features:`` data) and the data set's
    statistics by the features'; the training images stay in ``data.pictures`` for tiles."""
    from selfadapt.data.datasets import ImageSet
    from selfadapt.data.features import feature_stats
    from selfadapt.embedding import module_digest
    from selfadapt.models.hf import load_backbone

    loaded = load_backbone(config.model.model)
    extractor = loaded.extractor()
    model_key = module_digest(extractor)
    if verbose:
        print(f"frozen backbone hf:{loaded.source} ({loaded.model_type}, {loaded.backbone.feature_dim} features); "
              f"a {config.model.head} head trains on them")

    def features(images, what):
        return cached_features(extractor, model_key, images, device=device, what=what, verbose=verbose)[:, :, None, None]

    data.pictures = data.images
    data.images = features(data.images, "training images")
    test = data.dataset.test
    data.dataset.test = ImageSet(features(test.images, "test images") if len(test) else
                                 torch.zeros(0, loaded.backbone.feature_dim, 1, 1), test.labels, test.source_index,
                                 test.files)
    if data.val is not None:
        data.val.images = features(data.val.images, "validation images")
    data.dataset.train = ImageSet(data.images, data.dataset.train.labels, data.dataset.train.source_index,
                                  data.dataset.train.files)
    data.dataset.mean, data.dataset.std = feature_stats(data.images[:, :, 0, 0])
    return data
