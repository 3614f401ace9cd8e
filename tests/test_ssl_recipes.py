"""The self-supervised view recipes against solo-learn's CIFAR recipes: their parameters as the
yaml files give them, and the statistics of the views on real CIFAR-10 images against a plain PIL
pipeline written from solo-learn's ``build_transform_pipeline`` (torchvision on PIL images)."""
import importlib.util
import io
import itertools
import math
import random
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch

from selfadapt.data.ssl_augment import SSL_AUGMENTATIONS, ColourJitter, ViewAugment, ViewRecipe

SHARED_DATA = Path(__file__).resolve().parents[1] / ".." / "shared" / "data"
CIFAR_JPEGS = SHARED_DATA / "cifar10-jpeg.tar.gz"

needs_kornia = pytest.mark.skipif(importlib.util.find_spec("kornia") is None,
                                  reason="kornia (extra 'ssl') is not installed")

# solo-learn (github.com/vturrisi/solo-learn), scripts/pretrain/cifar/augmentations/symmetric.yaml
# (simclr.yaml's augmentations) and asymmetric.yaml (byol.yaml's), as written there.
SOLO_SYMMETRIC = dict(crop_min_scale=0.08, crop_max_scale=1.0, jitter_prob=0.8, brightness=0.8, contrast=0.8,
                      saturation=0.8, hue=0.2, grayscale_prob=0.2, gaussian_blur_prob=0.5, solarization_prob=0.0,
                      horizontal_flip_prob=0.5)
SOLO_ASYMMETRIC = [dict(SOLO_SYMMETRIC, brightness=0.4, contrast=0.4, saturation=0.2, hue=0.1, gaussian_blur_prob=0.0,
                        solarization_prob=p) for p in (0.0, 0.2)]


def as_solo(recipe: ViewRecipe) -> dict:
    return dict(crop_min_scale=recipe.crop_scale[0], crop_max_scale=recipe.crop_scale[1], jitter_prob=recipe.jitter_p,
                brightness=recipe.jitter[0], contrast=recipe.jitter[1], saturation=recipe.jitter[2],
                hue=recipe.jitter[3], grayscale_prob=recipe.greyscale_p, gaussian_blur_prob=recipe.blur_p,
                solarization_prob=recipe.solarize_p, horizontal_flip_prob=recipe.flip_p)


def test_recipes_have_solo_learns_parameters():
    simclr, byol = SSL_AUGMENTATIONS["simclr"], SSL_AUGMENTATIONS["byol"]
    assert [as_solo(r) for r in simclr] == [SOLO_SYMMETRIC] * 2
    assert [as_solo(r) for r in byol] == SOLO_ASYMMETRIC
    # solo-learn's pretrain_dataloader.py: bicubic crops, GaussianBlur sigma uniform in [0.1, 2],
    # torchvision's ColorJitter (a random order per image)
    assert {(r.crop_resample, r.blur_sigma, r.jitter_order) for r in simclr} == {("bicubic", (0.1, 2.0), "image")}


# ------------------------------------------------------------------------------------------
# the reference: solo-learn's torchvision pipeline on PIL images, step by step

def reference_view(img, rng: random.Random, recipe: dict):
    """One view of a 32x32 PIL image: RandomResizedCrop (torchvision's sampling, bicubic), RandomApply
    ColorJitter (torchvision's PIL formulas, random order), RandomGrayscale, RandomApply GaussianBlur
    (PIL, radius uniform in [0.1, 2]), RandomHorizontalFlip; float array in [0, 1]."""
    from PIL import Image, ImageEnhance, ImageFilter

    width, height = img.size
    i, j, w, h = 0, 0, width, height
    for _ in range(10):
        area = width * height * rng.uniform(recipe["crop_min_scale"], recipe["crop_max_scale"])
        ratio = math.exp(rng.uniform(math.log(3 / 4), math.log(4 / 3)))
        cw, ch = round(math.sqrt(area * ratio)), round(math.sqrt(area / ratio))
        if 0 < cw <= width and 0 < ch <= height:
            i, j, w, h = rng.randint(0, height - ch), rng.randint(0, width - cw), cw, ch
            break
    img = img.resize((width, height), Image.BICUBIC, box=(j, i, j + w, i + h))
    if rng.random() < recipe["jitter_prob"]:
        b, c, s, hue = (recipe[k] for k in ("brightness", "contrast", "saturation", "hue"))
        factors = [rng.uniform(max(0, 1 - b), 1 + b), rng.uniform(max(0, 1 - c), 1 + c),
                   rng.uniform(max(0, 1 - s), 1 + s), rng.uniform(-hue, hue)]
        order = list(range(4))
        rng.shuffle(order)
        for k in order:
            if k < 3:
                img = (ImageEnhance.Brightness, ImageEnhance.Contrast, ImageEnhance.Color)[k](img).enhance(factors[k])
            else:
                hh, ss, vv = img.convert("HSV").split()
                hh = Image.fromarray((np.asarray(hh).astype(np.int16) + int(factors[3] * 255)).astype(np.uint8), "L")
                img = Image.merge("HSV", (hh, ss, vv)).convert("RGB")
    if rng.random() < recipe["grayscale_prob"]:
        img = img.convert("L").convert("RGB")
    if rng.random() < recipe["gaussian_blur_prob"]:
        img = img.filter(ImageFilter.GaussianBlur(radius=rng.uniform(0.1, 2.0)))
    if rng.random() < recipe["horizontal_flip_prob"]:
        img = img.transpose(Image.FLIP_LEFT_RIGHT)
    return np.asarray(img, dtype=np.float32) / 255


def view_statistics(views: np.ndarray) -> dict[str, np.ndarray]:
    """Per view (N, H, W, 3): mean and std of the grey image, mean saturation (max - min over
    channels), greyscale or not, and sharpness (mean absolute Laplacian of the grey image)."""
    grey = views @ np.array([0.299, 0.587, 0.114], dtype=np.float32)
    spread = views.max(-1) - views.min(-1)
    laplacian = np.abs(4 * grey[:, 1:-1, 1:-1] - grey[:, :-2, 1:-1] - grey[:, 2:, 1:-1]
                       - grey[:, 1:-1, :-2] - grey[:, 1:-1, 2:])
    return {"brightness": grey.mean((1, 2)), "contrast": grey.std((1, 2)), "saturation": spread.mean((1, 2)),
            "greyscale": (spread.max((1, 2)) < 1.5 / 255).astype(np.float64), "sharpness": laplacian.mean((1, 2))}


@pytest.fixture(scope="module")
def cifar_images():
    if not CIFAR_JPEGS.is_file():
        pytest.skip(f"{CIFAR_JPEGS} is absent (the shared CIFAR-10 JPEGs)")
    from PIL import Image

    images = []
    with tarfile.open(CIFAR_JPEGS) as tar:
        for member in tar:
            if member.isfile() and member.name.startswith("train/") and member.name.endswith(".jpg"):
                images.append(Image.open(io.BytesIO(tar.extractfile(member).read())).convert("RGB"))
                if len(images) == 2000:
                    return images
    pytest.skip(f"{CIFAR_JPEGS} holds fewer than 2,000 training images")


def ks_statistic(a: np.ndarray, b: np.ndarray) -> float:
    """The two-sample Kolmogorov-Smirnov statistic: the largest gap between the empirical CDFs."""
    grid = np.sort(np.concatenate([a, b]))
    return float(np.abs(np.searchsorted(np.sort(a), grid, "right") / len(a)
                        - np.searchsorted(np.sort(b), grid, "right") / len(b)).max())


@needs_kornia
@pytest.mark.slow
def test_simclr_views_have_the_statistics_of_solo_learns_pipeline_on_real_cifar10(cifar_images):
    """2,000 real images, one view each: every statistic's distribution within KS 0.07 of the PIL
    reference's (1% critical value at n = 2,000: 0.052; bicubic kernels differ slightly: a = -0.75
    here, -0.5 in PIL). The former recipe (jitter 0.4/0.4/0.2/0.1, no blur) is far off: the test tells."""
    batch = torch.from_numpy(np.stack([np.asarray(img) for img in cifar_images])).permute(0, 3, 1, 2).contiguous()
    rng = random.Random(0)
    reference = view_statistics(np.stack([reference_view(img, rng, SOLO_SYMMETRIC) for img in cifar_images]))
    simclr = ViewAugment(SSL_AUGMENTATIONS["simclr"][0], channels=3, image_size=32)
    ours = view_statistics(simclr(batch, torch.Generator().manual_seed(0)).permute(0, 2, 3, 1).numpy())
    former = ViewAugment(ViewRecipe(), channels=3, image_size=32)
    before = view_statistics(former(batch, torch.Generator().manual_seed(0)).permute(0, 2, 3, 1).numpy())
    for name in reference:
        assert ks_statistic(ours[name], reference[name]) < 0.07, name
    assert abs(ours["greyscale"].mean() - reference["greyscale"].mean()) < 0.04
    for name in ("brightness", "contrast", "saturation", "sharpness"):
        assert ks_statistic(before[name], reference[name]) > 0.12, name


@needs_kornia
@pytest.mark.slow
@pytest.mark.parametrize("sigma", [0.5, 1.0, 2.0])
def test_blur_sigma_is_pils_gaussian_blur_radius(cifar_images, sigma):
    from PIL import ImageFilter

    images = cifar_images[:200]
    batch = torch.from_numpy(np.stack([np.asarray(img) for img in images])).permute(0, 3, 1, 2).float() / 255
    recipe = ViewRecipe(blur_p=1.0, blur_sigma=(sigma, sigma))
    blur = next(m for m in ViewAugment(recipe, channels=3, image_size=32).pipeline if "Blur" in type(m).__name__)
    pil = np.stack([np.asarray(img.filter(ImageFilter.GaussianBlur(radius=sigma))) for img in images]) / 255

    def gap(out):
        return float(np.abs(out.permute(0, 2, 3, 1).numpy() - pil).mean()) * 255   # in uint8 levels

    wider = next(m for m in ViewAugment(ViewRecipe(blur_p=1.0, blur_sigma=(1.25 * sigma,) * 2), channels=3,
                                        image_size=32).pipeline if "Blur" in type(m).__name__)
    assert gap(blur(batch)) < 1.0 < gap(wider(batch)) and gap(blur(batch)) < 0.5 * gap(wider(batch))


@needs_kornia
def test_colour_jitter_draws_an_order_per_image_and_applies_with_p():
    """Steps that write their position in base 5: every one of the 24 orders turns up in one batch,
    about equally often, and about 80% of images are jittered."""
    jitter = ColourJitter(0.8, 0.8, 0.8, 0.2, p=0.8)
    jitter.steps = [(1.0, lambda x, f, k=k: (x + k + 1) / 5) for k in range(4)]
    n = 4800
    out = jitter(torch.zeros(n, 1, 1, 1)).flatten().double()
    codes = {}
    for order in itertools.permutations(range(4)):
        value = 0.0
        for k in order:
            value = (value + k + 1) / 5
        codes[order] = int(((out - value).abs() < 1e-6).sum())
    applied = sum(codes.values())
    assert abs(applied - 0.8 * n) < 4 * math.sqrt(n * 0.8 * 0.2) and applied + int((out == 0).sum()) == n
    expected = applied / 24
    chi2 = sum((c - expected) ** 2 / expected for c in codes.values())
    assert min(codes.values()) > 0 and chi2 < 49.7            # 23 degrees of freedom, p = 0.001


@needs_kornia
def test_colour_jitter_factors_are_torchvisions_ranges():
    """Brightness 0.8 alone on a dark grey image: factors uniform in [0.2, 1.8]."""
    jitter = ColourJitter(0.8, 0.0, 0.0, 0.0, p=1.0)
    torch.manual_seed(0)
    out = jitter(torch.full((20000, 1, 2, 2), 0.25))[:, 0, 0, 0] / 0.25
    assert float(out.min()) >= 0.2 - 1e-6 and float(out.max()) <= 1.8 + 1e-6
    assert float(out.mean()) == pytest.approx(1.0, abs=0.01) and float(out.std()) == pytest.approx(1.6 / math.sqrt(12), abs=0.01)
