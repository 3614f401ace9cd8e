"""Features of many images through a backbone: batched, chunked, resumable and deterministic.

:func:`embed_images` runs ``extractor`` (a module mapping [0, 1] float images to N x D features)
over uint8 images in fixed batches and writes every finished chunk of rows to ``parts/`` as its own
``.npy`` (atomically), so an interrupted run continues from the last finished chunk. The batches
never depend on where a run was interrupted, so a resumed run gives the same bytes as an
uninterrupted one. On CUDA the forward runs under bf16 autocast (features are stored as float32).

``images`` is a uint8 tensor ``(N, C, H, W)`` or anything with ``len()`` whose ``images[a:b]`` is
one (an on-disk decoded-image cache, for instance): nothing here decodes files.

>>> extractor = torch.nn.Flatten()
>>> embed_images(extractor, torch.zeros(5, 1, 2, 2, dtype=torch.uint8), batch_size=2).shape
(5, 4)
"""
from __future__ import annotations

import hashlib
import io
import json
import sys
import time
import zipfile
from pathlib import Path

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from selfadapt.engine.lock import DirectoryLock
from selfadapt.engine.rundir import atomic_write, atomic_write_bytes, write_json

BATCHES_PER_CHUNK = 16  # rows per chunk file = batch size x this


def images_digest(images, rows: int = 4096) -> str:
    """A content hash of uint8 images (read ``rows`` at a time): the data part of a cache key.

    >>> images_digest(torch.zeros(3, 1, 2, 2, dtype=torch.uint8)) == images_digest(torch.zeros(3, 1, 2, 2, dtype=torch.uint8))
    True
    """
    digest = hashlib.blake2b(digest_size=16)
    digest.update(repr((len(images), tuple(images[:1].shape[1:]))).encode())
    for start in range(0, len(images), rows):
        digest.update(np.ascontiguousarray(images[start:start + rows].numpy()).data)
    return digest.hexdigest()


def module_digest(module: nn.Module) -> str:
    """A content hash of a module's parameters and buffers (names, dtypes, shapes, values)."""
    digest = hashlib.blake2b(digest_size=16)
    for name, tensor in module.state_dict().items():
        tensor = tensor.detach().cpu().contiguous().reshape(-1)
        digest.update(f"{name}:{tensor.dtype}:{tuple(tensor.shape)}".encode())
        digest.update(tensor.view(torch.uint8).numpy().data if tensor.numel() else b"")
    return digest.hexdigest()


def embed_images(extractor: nn.Module, images, *, batch_size: int = 64, device: str | torch.device = "cpu",
                 parts: str | Path | None = None, key: str = "", progress: str | None = None) -> np.ndarray:
    """``extractor``'s features of every image, N x D float32, in order.

    With ``parts`` (a folder), each finished chunk of ``batch_size x BATCHES_PER_CHUNK`` rows is
    kept there, so a second call after an interruption continues where the first stopped; a
    folder left by a different ``key`` (another model, data or batch size) is started afresh.
    The caller removes ``parts`` once it has stored the result. ``progress`` names a progress bar
    (a terminal) or the lines printed elsewhere; ``None``: silent.
    """
    total = len(images)
    chunk_rows = batch_size * BATCHES_PER_CHUNK
    lock = _prepare(Path(parts), {"key": key, "rows": total, "chunk_rows": chunk_rows}) if parts else None
    try:
        return _embed_chunks(extractor, images, batch_size, torch.device(device), lock and lock.path, progress)
    finally:
        if lock is not None:
            lock.release()


def _embed_chunks(extractor, images, batch_size: int, device, folder: Path | None, progress) -> np.ndarray:
    total, chunk_rows = len(images), batch_size * BATCHES_PER_CHUNK
    extractor = extractor.to(device).eval()
    chunks = [None] * -(-total // chunk_rows)
    done = 0
    if folder is not None:
        for index in range(len(chunks)):
            file = folder / f"chunk-{index:06d}.npy"
            if file.is_file():
                chunks[index] = np.load(file, allow_pickle=False)
                done += len(chunks[index])
    meter = _Progress(progress, total, done)
    for index, chunk in enumerate(chunks):
        if chunk is not None:
            continue
        start = index * chunk_rows
        chunks[index] = _embed_rows(extractor, images, start, min(total, start + chunk_rows), batch_size, device, meter)
        if folder is not None:
            atomic_write_bytes(folder / f"chunk-{index:06d}.npy", npy_bytes(chunks[index]))
    meter.close()
    if not chunks:
        return np.zeros((0, 0), np.float32)
    return np.concatenate(chunks) if len(chunks) > 1 else chunks[0]


def _prepare(folder: Path, manifest: dict) -> DirectoryLock:
    """``folder`` locked for this process, holding only chunks made for ``manifest`` (those of
    another key and half-written temporary files are removed); another process embedding into it
    is one error naming that process."""
    folder.mkdir(parents=True, exist_ok=True)
    lock = DirectoryLock(folder, "the folder of finished chunks").acquire()
    file = folder / "manifest.json"
    try:
        kept = json.loads(file.read_text()) == manifest
    except (OSError, ValueError):
        kept = False
    for stale in [*folder.glob(".chunk-*"), *([] if kept else folder.glob("chunk-*.npy"))]:
        stale.unlink()
    if not kept:
        write_json(file, manifest)
    lock.announce()
    return lock


def npy_bytes(array: np.ndarray) -> bytes:
    """``array`` as the bytes of an ``.npy`` file (no pickles)."""
    buffer = io.BytesIO()
    np.lib.format.write_array(buffer, np.asarray(array), allow_pickle=False)
    return buffer.getvalue()


@torch.inference_mode()
def _embed_rows(extractor, images, start: int, stop: int, batch_size: int, device, meter) -> np.ndarray:
    out = []
    on_cuda = device.type == "cuda"
    for a in range(start, stop, batch_size):
        batch = torch.as_tensor(images[a:min(stop, a + batch_size)]).to(device, non_blocking=True)
        x = batch.float().div_(255) if batch.dtype == torch.uint8 else batch.float()
        with torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=on_cuda):
            features = extractor(x)
        out.append(features.float().cpu().numpy())
        meter.advance(len(batch))
    return np.concatenate(out)


class _Progress:
    """A tqdm bar on a terminal; elsewhere a line at every tenth of the images (``name=None``: silent)."""

    def __init__(self, name: str | None, total: int, done: int):
        self.name, self.total, self.done, self.start = name, total, done, time.perf_counter()
        self.first, self.next_line = done, done + max(total // 10, 1)
        interactive = name is not None and sys.stderr.isatty()
        self.bar = tqdm(total=total, initial=done, desc=name, unit="img", disable=not interactive)
        if name is not None and done and not interactive:
            print(f"{name}: {done}/{total} images already embedded, resuming", flush=True)

    def advance(self, n: int) -> None:
        self.done += n
        self.bar.update(n)
        if self.name is not None and self.bar.disable and (self.done >= self.next_line or self.done == self.total):
            self.next_line += max(self.total // 10, 1)
            rate = (self.done - self.first) / max(time.perf_counter() - self.start, 1e-9)
            print(f"{self.name}: {self.done}/{self.total} images ({rate:.1f} images/s)", flush=True)

    def close(self) -> None:
        self.bar.close()


def write_npz(path: str | Path, arrays: dict[str, np.ndarray]) -> None:
    """An uncompressed ``.npz`` (what ``np.load`` reads) written atomically and byte-for-byte
    reproducibly: fixed member timestamps, arrays streamed (no second copy in memory)."""
    def write(tmp):
        with zipfile.ZipFile(tmp, "w", zipfile.ZIP_STORED, allowZip64=True) as archive:
            for name, array in arrays.items():
                info = zipfile.ZipInfo(f"{name}.npy", date_time=(1980, 1, 1, 0, 0, 0))
                with archive.open(info, "w", force_zip64=True) as member:
                    np.lib.format.write_array(member, np.asarray(array), allow_pickle=False)
    atomic_write(Path(path), write)
