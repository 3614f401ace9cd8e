"""The augmentations of self-supervised views, batched on the training device with kornia.

Each sample of a batch gets its own random parameters. Two recipes (:data:`SSL_AUGMENTATIONS`):

- ``simclr``: solo-learn's symmetric CIFAR recipe (``scripts/pretrain/cifar/augmentations/
  symmetric.yaml`` through ``solo/data/pretrain_dataloader.py``), both views alike: a random resized
  crop (scale 0.08-1, aspect 3/4-4/3) resampled bicubically at pixel centres as PIL does; colour
  jitter with probability 0.8 (brightness 0.8, contrast 0.8, saturation 0.8, hue 0.2; torchvision's
  formulas, each image in its own random order of the four); greyscale with probability 0.2; a
  Gaussian blur with probability 0.5 (sigma uniform in 0.1-2, as PIL's ``GaussianBlur(radius=sigma)``:
  13 taps, edges replicated); a horizontal flip with probability 0.5.
- ``byol``: solo-learn's asymmetric CIFAR recipe (``asymmetric.yaml``) in its parameters: crop as
  above, jitter with probability 0.8 (0.4, 0.4, 0.2, 0.1), greyscale 0.2, no blur, flip 0.5, and
  solarisation with probability 0.2 on the second view only. Two differences from solo-learn, kept
  so that the measured CPU results (docs/results/self-supervised) stay reproducible: the crop is
  resampled bilinearly (solo-learn: bicubic), and kornia draws one order of the four jitter steps
  per batch (torchvision: per image; each image's own distribution is the same).

Grey images (one channel) get brightness and contrast only: saturation, hue and greyscale have no
meaning there. solo-learn rounds to uint8 after every step (PIL images); here the values stay float.

kornia draws from torch's global generator; every call here forks it, seeded from the loader's
generator, so the views depend only on the run's data seed and resume exactly.

>>> views = ssl_view_augmentations("simclr", views=2, channels=3, image_size=32)  # doctest: +SKIP
>>> views[1](torch.randint(0, 256, (8, 3, 32, 32), dtype=torch.uint8), torch.Generator()).shape  # doctest: +SKIP
torch.Size([8, 3, 32, 32])
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from selfadapt.errors import SelfAdaptError

KORNIA_MISSING = ("self-supervised augmentations need kornia: pip install 'selfadapt[ssl]' "
                  "(kornia 0.9 needs Python >= 3.11)")


@dataclass(frozen=True)
class ViewRecipe:
    """The random transformations of one view (probabilities and ranges).

    ``crop_resample``: ``"bilinear"`` (kornia's default, corners aligned) or ``"bicubic"`` (at pixel
    centres, as PIL's resize). ``jitter_order``: ``"batch"`` (kornia: one random order of the four
    jitter steps per batch) or ``"image"`` (torchvision: one per image).
    """

    crop_scale: tuple[float, float] = (0.08, 1.0)
    crop_resample: str = "bilinear"
    jitter: tuple[float, float, float, float] = (0.4, 0.4, 0.2, 0.1)  # brightness, contrast, saturation, hue
    jitter_p: float = 0.8
    jitter_order: str = "batch"
    greyscale_p: float = 0.2
    blur_p: float = 0.0
    blur_sigma: tuple[float, float] = (0.1, 2.0)
    flip_p: float = 0.5
    solarize_p: float = 0.0


_ASYMMETRIC = ViewRecipe()
_ASYMMETRIC_SOLARIZED = ViewRecipe(solarize_p=0.2)
_SYMMETRIC = ViewRecipe(crop_resample="bicubic", jitter=(0.8, 0.8, 0.8, 0.2), jitter_order="image", blur_p=0.5)

# recipe name -> the recipe of view 1, view 2, ... (a method with more views repeats the last)
SSL_AUGMENTATIONS: dict[str, tuple[ViewRecipe, ...]] = {
    "byol": (_ASYMMETRIC, _ASYMMETRIC_SOLARIZED),   # solo-learn's asymmetric CIFAR recipe (see above)
    "simclr": (_SYMMETRIC, _SYMMETRIC),             # solo-learn's symmetric CIFAR recipe
}


def ssl_augmentation_names() -> list[str]:
    return list(SSL_AUGMENTATIONS)


def import_kornia():
    """``kornia.augmentation``, or a :class:`SelfAdaptError` saying how to install it."""
    try:
        import kornia.augmentation
    except ImportError:
        raise SelfAdaptError(KORNIA_MISSING) from None
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
        if recipe.crop_resample not in ("bilinear", "bicubic") or recipe.jitter_order not in ("batch", "image"):
            raise ValueError(f"crop_resample must be bilinear or bicubic and jitter_order batch or image: {recipe}")
        K = import_kornia()
        brightness, contrast, saturation, hue = recipe.jitter
        if channels == 1:
            saturation = hue = 0.0
        bicubic = recipe.crop_resample == "bicubic"
        steps = [K.RandomResizedCrop((image_size, image_size), scale=recipe.crop_scale,
                                     resample="bicubic" if bicubic else "bilinear", align_corners=not bicubic)]
        if bicubic:
            steps.append(torch.nn.Hardtanh(0.0, 1.0))   # bicubic overshoots; PIL's uint8 result is clipped
        if recipe.jitter_p and recipe.jitter_order == "image":
            steps.append(ColourJitter(brightness, contrast, saturation, hue, p=recipe.jitter_p))
        elif recipe.jitter_p:
            steps.append(K.ColorJitter(brightness, contrast, saturation, hue, p=recipe.jitter_p))
        if recipe.greyscale_p and channels == 3:
            steps.append(K.RandomGrayscale(p=recipe.greyscale_p))
        if recipe.blur_p:
            taps = 2 * math.ceil(3 * recipe.blur_sigma[1]) + 1          # +-3 sigma of the widest blur
            steps.append(K.RandomGaussianBlur(taps, recipe.blur_sigma, border_type="replicate", p=recipe.blur_p))
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


class ColourJitter(torch.nn.Module):
    """torchvision's ``RandomApply([ColorJitter(b, c, s, h)], p)`` on a float batch in [0, 1]: factors
    uniform in ``[max(0, 1 - b), 1 + b]`` (likewise c, s) and ``[-h, h]``, the four steps in a random
    order drawn per image (kornia's ``ColorJitter`` draws one per batch). Uses torch's global generator.

    Example
    -------
    >>> out = ColourJitter(0.8, 0.8, 0.8, 0.2, p=0.8)(torch.rand(4, 3, 8, 8))  # doctest: +SKIP
    """

    def __init__(self, brightness: float, contrast: float, saturation: float, hue: float, p: float):
        super().__init__()
        from kornia import enhance

        def shift_hue(x, factor):
            return enhance.adjust_hue(x, factor * 2 * math.pi)

        self.steps = [(brightness, enhance.adjust_brightness_accumulative),
                      (contrast, enhance.adjust_contrast_with_mean_subtraction),
                      (saturation, enhance.adjust_saturation_with_gray_subtraction), (hue, shift_hue)]
        self.p = p

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, device = x.shape[0], x.device
        x = x.clamp(0.0, 1.0)
        applied = torch.rand(n, device=device) < self.p
        factors = []
        for k, (strength, _) in enumerate(self.steps):
            low, high = (-strength, strength) if k == 3 else (max(0.0, 1.0 - strength), 1.0 + strength)
            factors.append(low + (high - low) * torch.rand(n, device=device))
        order = torch.rand(n, 4, device=device).argsort(dim=1)       # a uniform random permutation per image
        for position in range(4):
            for k, (strength, step) in enumerate(self.steps):
                chosen = (applied & (order[:, position] == k)).nonzero().squeeze(1)
                if strength and len(chosen):
                    x[chosen] = step(x[chosen], factors[k][chosen]).clamp(0.0, 1.0)
        return x


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
