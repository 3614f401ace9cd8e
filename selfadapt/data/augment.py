"""Batched augmentation on the training device: random crop with zero padding and horizontal flip,
or (for larger images) random-resized crop and flip.

Images stay uint8 until the model needs them; a whole batch is cropped with one gather and flipped
with one ``where``, airbench-style, instead of one PIL call per image. ``rrc-flip`` resamples a
random box of every image (its own scale, aspect ratio, position and flip) with one
``affine_grid`` + ``grid_sample`` over the batch, and returns floats in [0, 1].
"""
from __future__ import annotations

import torch

from selfadapt.errors import SelfAdaptError

AUGMENTATIONS = ("crop-flip", "flip", "crop", "none", "rrc-flip")
RRC_SCALE = (0.35, 1.0)      # share of the image's area kept (torchvision's 0.08 suits ImageNet-sized data sets;
RRC_RATIO = (3 / 4, 4 / 3)   # small collections train better on milder crops); aspect ratio range


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
        self.resized = kind == "rrc-flip"
        self.padding = padding

    def __call__(self, images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        if self.resized:
            return random_resized_crop(images, generator)
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


def random_resized_crop(images: torch.Tensor, generator: torch.Generator, *, scale=RRC_SCALE, ratio=RRC_RATIO,
                        flip: bool = True) -> torch.Tensor:
    """Each image's random box (area share in ``scale``, aspect ratio in ``ratio``, clipped to the
    image) resampled bilinearly to the full size, flipped with probability 1/2; floats in [0, 1].

    >>> images = torch.randint(0, 256, (4, 3, 64, 64), dtype=torch.uint8)
    >>> out = random_resized_crop(images, torch.Generator().manual_seed(0))
    >>> out.shape, out.dtype, bool(out.min() >= 0 and out.max() <= 1)
    (torch.Size([4, 3, 64, 64]), torch.float32, True)
    """
    n, _, h, w = images.shape
    draws = torch.rand(5, n, device=images.device, generator=generator)
    area = scale[0] + (scale[1] - scale[0]) * draws[0]
    log_ratio = torch.log(torch.tensor(ratio, device=images.device))
    aspect = torch.exp(log_ratio[0] + (log_ratio[1] - log_ratio[0]) * draws[1])
    box_w = torch.sqrt(area * aspect).clamp(max=1.0)   # box sides as shares of the image's sides
    box_h = torch.sqrt(area / aspect).clamp(max=1.0)
    centre_x = (draws[2] * (1 - box_w) + box_w / 2) * 2 - 1  # in affine_grid's [-1, 1] coordinates
    centre_y = (draws[3] * (1 - box_h) + box_h / 2) * 2 - 1
    sign = torch.where(draws[4] < 0.5, -1.0, 1.0) if flip else torch.ones(n, device=images.device)
    theta = torch.zeros(n, 2, 3, device=images.device)
    theta[:, 0, 0], theta[:, 0, 2] = box_w * sign, centre_x
    theta[:, 1, 1], theta[:, 1, 2] = box_h, centre_y
    grid = torch.nn.functional.affine_grid(theta, [n, 1, h, w], align_corners=False)
    pixels = images.float() if images.dtype == torch.uint8 else images * 255
    out = torch.nn.functional.grid_sample(pixels, grid, mode="bilinear", padding_mode="border", align_corners=False)
    return out.div_(255).clamp_(0, 1)
