"""The augmentations of self-supervised views, batched on the training device with kornia.

Each sample of a batch gets its own random parameters: a random resized crop (scale 0.08-1, back
to the image size), colour jitter with probability 0.8 (brightness 0.4, contrast 0.4, saturation
0.2, hue 0.1; torchvision's formulas, in a random order), greyscale with probability 0.2, a
horizontal flip with probability 0.5 and, on the second view of the ``byol`` recipe only,
solarisation with probability 0.2 (solo-learn's CIFAR recipes). Grey images (one channel) get
brightness and contrast only: saturation, hue and greyscale have no meaning there.

kornia draws from torch's global generator; every call here forks it, seeded from the loader's
generator, so the views depend only on the run's data seed and resume exactly.

>>> views = ssl_view_augmentations("byol", views=2, channels=3, image_size=32)  # doctest: +SKIP
>>> views[1](torch.randint(0, 256, (8, 3, 32, 32), dtype=torch.uint8), torch.Generator()).shape  # doctest: +SKIP
torch.Size([8, 3, 32, 32])
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from selfadapt.errors import MissingExtra, SelfAdaptError

KORNIA_MISSING = ("self-supervised augmentations need kornia: pip install 'selfadapt[ssl]' "
                  "(kornia 0.9 needs Python >= 3.11)")


@dataclass(frozen=True)
class ViewRecipe:
    """The random transformations of one view (probabilities and ranges)."""

    crop_scale: tuple[float, float] = (0.08, 1.0)
    jitter: tuple[float, float, float, float] = (0.4, 0.4, 0.2, 0.1)  # brightness, contrast, saturation, hue
    jitter_p: float = 0.8
    greyscale_p: float = 0.2
    flip_p: float = 0.5
    solarize_p: float = 0.0


_PLAIN = ViewRecipe()
_SOLARIZED = ViewRecipe(solarize_p=0.2)

# recipe name -> the recipe of view 1, view 2, ... (a method with more views repeats the last)
SSL_AUGMENTATIONS: dict[str, tuple[ViewRecipe, ...]] = {
    "byol": (_PLAIN, _SOLARIZED),   # solo-learn's asymmetric CIFAR recipe: solarise the second view
    "simclr": (_PLAIN, _PLAIN),     # solo-learn's symmetric CIFAR recipe
}


def ssl_augmentation_names() -> list[str]:
    return list(SSL_AUGMENTATIONS)


def import_kornia():
    """``kornia.augmentation``, or a :class:`MissingExtra` saying how to install it."""
    try:
        import kornia.augmentation
    except ImportError:
        raise MissingExtra(KORNIA_MISSING) from None
    return kornia.augmentation


class ViewAugment:
    """One view's augmentation: uint8 (or float [0, 1]) batch and generator -> float batch in [0, 1].

    Example
    -------
    >>> augment = ViewAugment(ViewRecipe(), channels=3, image_size=32)  # doctest: +SKIP
    >>> x = augment(torch.full((4, 3, 32, 32), 128, dtype=torch.uint8), torch.Generator().manual_seed(0))  # doctest: +SKIP
    >>> float(x.min()) >= 0 and float(x.max()) <= 1  # doctest: +SKIP
    True
    """

    def __init__(self, recipe: ViewRecipe, *, channels: int, image_size: int):
        K = import_kornia()
        brightness, contrast, saturation, hue = recipe.jitter
        if channels == 1:
            saturation = hue = 0.0
        steps = [K.RandomResizedCrop((image_size, image_size), scale=recipe.crop_scale)]
        if recipe.jitter_p:
            steps.append(K.ColorJitter(brightness, contrast, saturation, hue, p=recipe.jitter_p))
        if recipe.greyscale_p and channels == 3:
            steps.append(K.RandomGrayscale(p=recipe.greyscale_p))
        if recipe.flip_p:
            steps.append(K.RandomHorizontalFlip(p=recipe.flip_p))
        if recipe.solarize_p:
            steps.append(K.RandomSolarize(thresholds=0.0, additions=0.0, p=recipe.solarize_p))  # threshold 0.5
        self.recipe = recipe
        self.pipeline = torch.nn.Sequential(*steps)

    def __call__(self, images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        x = images.float().div_(255) if images.dtype == torch.uint8 else images.float()
        seed = int(torch.randint(0, 2**62, (1,), device=generator.device, generator=generator))
        devices = [x.device] if x.device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices, device_type=x.device.type):
            torch.manual_seed(seed)
            with torch.no_grad():
                out = self.pipeline(x)
        return out.clamp_(0.0, 1.0)


def ssl_view_augmentations(name: str, *, views: int, channels: int, image_size: int) -> list[ViewAugment]:
    """The augmentation of each of ``views`` views under recipe ``name`` (see :data:`SSL_AUGMENTATIONS`)."""
    if name not in SSL_AUGMENTATIONS:
        raise SelfAdaptError(f"unknown self-supervised augmentation {name!r}; choose from "
                             f"{', '.join(SSL_AUGMENTATIONS)}")
    if channels not in (1, 3):
        raise SelfAdaptError(f"self-supervised augmentations take 1- or 3-channel images, not {channels}")
    recipes = SSL_AUGMENTATIONS[name]
    return [ViewAugment(recipes[min(i, len(recipes) - 1)], channels=channels, image_size=image_size)
            for i in range(views)]
