"""Batched augmentation on the training device: random crop with zero padding and horizontal flip.

Images stay uint8 until the model needs them; a whole batch is cropped with one gather and flipped
with one ``where``, airbench-style, instead of one PIL call per image.
"""
from __future__ import annotations

import torch

from selfadapt.errors import SelfAdaptError

AUGMENTATIONS = ("crop-flip", "flip", "crop", "none")


class Augment:
    """Random ``padding``-pixel translation (zero fill) and/or a horizontal flip with probability 1/2.

    Example
    -------
    >>> images = torch.randint(0, 256, (8, 3, 32, 32), dtype=torch.uint8)
    >>> Augment("crop-flip")(images, torch.Generator().manual_seed(0)).shape
    torch.Size([8, 3, 32, 32])
    """

    def __init__(self, kind: str = "crop-flip", padding: int = 4):
        if kind not in AUGMENTATIONS:
            raise SelfAdaptError(f"unknown augmentation {kind!r}; choose from {', '.join(AUGMENTATIONS)}")
        self.crop = kind in ("crop-flip", "crop") and padding > 0
        self.flip = kind in ("crop-flip", "flip")
        self.padding = padding

    def __call__(self, images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        if self.crop:
            images = random_crop(images, self.padding, generator)
        if self.flip:
            flip = torch.rand(images.shape[0], device=images.device, generator=generator) < 0.5
            images = torch.where(flip[:, None, None, None], images.flip(3), images)
        return images


def random_crop(images: torch.Tensor, padding: int, generator: torch.Generator) -> torch.Tensor:
    """Pad by ``padding`` zeros on every side and crop back at a random offset per image."""
    n, c, h, w = images.shape
    padded = torch.nn.functional.pad(images, (padding,) * 4)
    shift = torch.randint(0, 2 * padding + 1, (2, n), device=images.device, generator=generator)
    rows = (shift[0][:, None] + torch.arange(h, device=images.device))[:, None, :, None]
    cols = (shift[1][:, None] + torch.arange(w, device=images.device))[:, None, None, :]
    batch = torch.arange(n, device=images.device)[:, None, None, None]
    channel = torch.arange(c, device=images.device)[None, :, None, None]
    return padded[batch, channel, rows, cols]
