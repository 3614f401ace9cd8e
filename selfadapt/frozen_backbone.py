"""``--freeze-backbone``: a pretrained backbone's features computed once, and a head trained on them.

Every image of the run (training, validation and test splits, after any input corruption) goes
through the backbone once; the features are cached on disk, keyed by the backbone's weights and
processor, the images' bytes, the batch size and the precision, so a second run (another method,
seed or noise rate on the same images) costs no pass over the images. The run then trains the
``--head`` (``linear`` or ``mlp``) on the features exactly as on a ``features:`` table: SAT, the
noisy-label baselines, anything that does not need the pixels.

The cache lives in ``features/`` of ``--cache-dir`` (default: the image cache's folder,
:func:`~selfadapt.data.cache_io.default_cache_dir`); an
interrupted embedding continues from its last finished chunk (``selfadapt.embedding``).

>>> from types import SimpleNamespace as NS
>>> head_model(NS(model=NS(model="hf:facebook/dinov2-small", freeze_backbone=True, head="mlp")))
'mlp'
"""
from __future__ import annotations

import contextlib
import fcntl
import hashlib
import shutil
from pathlib import Path

import numpy as np
import torch

from selfadapt import distributed
from selfadapt.data.cache_io import default_cache_dir
from selfadapt.errors import SelfAdaptError

EMBED_BATCH_SIZE = 64  # images per backbone forward pass while features are computed


def head_model(config) -> str:
    """The model a run builds: the ``--head`` on a frozen backbone's features, else ``--model``."""
    return config.model.head if config.model.freeze_backbone else config.model.model


def feature_cache_dir(cache_dir: str | None) -> Path:
    """``features/`` in ``cache_dir`` (``--cache-dir``), else in the default cache folder."""
    return (Path(cache_dir).expanduser() if cache_dir else default_cache_dir()) / "features"


def cached_features(extractor, model_key: str, images, *, device: str, what: str, verbose: bool,
                    cache_dir: str | None = None) -> torch.Tensor:
    """``extractor``'s features of ``images`` (N x D float32), from the cache or computed into it."""
    from selfadapt.embedding import embed_images, images_digest, npy_bytes
    from selfadapt.engine.rundir import atomic_write_bytes

    precision = "bf16" if str(device).startswith("cuda") else "fp32"
    key = hashlib.blake2b(f"{model_key}|{images_digest(images)}|{EMBED_BATCH_SIZE}|{precision}".encode(),
                          digest_size=20).hexdigest()
    folder = feature_cache_dir(cache_dir)
    file = folder / f"{key}.npy"
    folder.mkdir(parents=True, exist_ok=True)
    with _one_at_a_time(folder / f"{key}.lock", what, verbose):  # runs of a grid share one computation
        if file.is_file():
            if verbose:
                print(f"{what}: {len(images)} images' features from the cache ({file})")
            return torch.from_numpy(np.load(file, allow_pickle=False))
        features = embed_images(extractor, images, batch_size=EMBED_BATCH_SIZE, device=device,
                                parts=folder / f"{key}.parts", key=key, progress=what if verbose else None)
        atomic_write_bytes(file, npy_bytes(features))
        shutil.rmtree(folder / f"{key}.parts", ignore_errors=True)
        return torch.from_numpy(features)


@contextlib.contextmanager
def _one_at_a_time(path: Path, what: str, verbose: bool):
    """An exclusive lock on file ``path``, waited for: one process computes the features, the others
    then read them from the cache."""
    with open(path, "a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            if verbose:
                print(f"{what}: another process is computing the same features; waiting for it")
            fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def freeze_backbone(config, data, device: str, *, verbose: bool = True):
    """``data`` (a :class:`~selfadapt.experiment.PreparedData`) with every image replaced by its
    backbone features (``D x 1 x 1`` float "images", as ``features:`` data) and the data set's
    statistics by the features'; the training images stay in ``data.pictures`` for tiles."""
    from selfadapt.data.formats.features import feature_stats
    from selfadapt.data.types import ImageSet
    from selfadapt.embedding import module_digest
    from selfadapt.models.hf import load_backbone

    if distributed.active():
        raise SelfAdaptError("--freeze-backbone trains a head on cached features, which one process does in seconds: "
                             "run it without torchrun (or train the whole network, without --freeze-backbone)")
    loaded = load_backbone(config.model.model)
    extractor = loaded.extractor()
    model_key = module_digest(extractor)
    if verbose:
        print(f"frozen backbone hf:{loaded.source} ({loaded.model_type}, {loaded.backbone.feature_dim} features); "
              f"a {config.model.head} head trains on them")

    def features(images, what):
        return cached_features(extractor, model_key, images, device=device, what=what, verbose=verbose,
                               cache_dir=config.data.cache_dir)[:, :, None, None]

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
