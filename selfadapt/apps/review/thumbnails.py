"""PNG thumbnails of a run's decoded training images, made on demand and kept in an LRU cache.

Small images (digits, MNIST, CIFAR) are enlarged by a whole factor with nearest-neighbour
sampling, so every pixel stays visible; large ones are shrunk to fit ``size``.

>>> import torch
>>> thumbs = Thumbnails(torch.zeros(2, 1, 8, 8, dtype=torch.uint8), size=64)
>>> thumbs.png(1)[:4], thumbs.size_of(1)
(b'\\x89PNG', (64, 64))
"""
from __future__ import annotations

import base64
import functools
import io

import numpy as np
import torch
from PIL import Image


class Thumbnails:
    """Thumbnails of ``images`` (uint8, N x C x H x W, C in 1 or 3) at most ``size`` pixels a side."""

    def __init__(self, images: torch.Tensor, size: int = 112, cache: int = 4096):
        self.images, self.size = images, size
        self.png = functools.lru_cache(maxsize=cache)(self._render)

    def size_of(self, row: int) -> tuple[int, int]:
        """The thumbnail's (width, height)."""
        return self._image(row).size

    def data_uri(self, row: int) -> str:
        """The thumbnail as a ``data:`` URI (for a self-contained page)."""
        return "data:image/png;base64," + base64.b64encode(self.png(row)).decode("ascii")

    def _render(self, row: int) -> bytes:
        out = io.BytesIO()
        self._image(row).save(out, format="PNG", compress_level=6)
        return out.getvalue()

    def _image(self, row: int) -> Image.Image:
        pixels = self.images[row].numpy()
        image = Image.fromarray(pixels[0] if pixels.shape[0] == 1 else np.ascontiguousarray(pixels.transpose(1, 2, 0)))
        longest = max(image.size)
        if longest * 2 <= self.size:
            factor = self.size // longest
            return image.resize((image.width * factor, image.height * factor), Image.NEAREST)
        if longest > self.size:
            image.thumbnail((self.size, self.size), Image.LANCZOS)
        return image
