"""Random-resized crop + flip, batched on the device, against a plain per-pixel reference."""
import math

import numpy as np
import torch

from selfadapt.data.augment import RRC_RATIO, RRC_SCALE, Augment, random_resized_crop


def reference(images: torch.Tensor, seed: int) -> np.ndarray:
    """Each image's box from the same five draws, sampled pixel by pixel (bilinear, edges clamped)."""
    n, c, h, w = images.shape
    draws = torch.rand(5, n, generator=torch.Generator().manual_seed(seed)).double().numpy()
    out = np.zeros((n, c, h, w))
    pixels = images.double().numpy()
    for k in range(n):
        area = RRC_SCALE[0] + (RRC_SCALE[1] - RRC_SCALE[0]) * draws[0, k]
        aspect = math.exp(math.log(RRC_RATIO[0]) + (math.log(RRC_RATIO[1]) - math.log(RRC_RATIO[0])) * draws[1, k])
        bw, bh = min(math.sqrt(area * aspect), 1.0), min(math.sqrt(area / aspect), 1.0)
        left, top = draws[2, k] * (1 - bw) * w, draws[3, k] * (1 - bh) * h  # box corner in pixels
        flip = draws[4, k] < 0.5
        for i in range(h):
            for j in range(w):
                jj = w - 1 - j if flip else j
                x = left + (jj + 0.5) * bw - 0.5          # source pixel coordinates of this output pixel
                y = top + (i + 0.5) * bh - 0.5
                x0, y0 = math.floor(x), math.floor(y)
                fx, fy = x - x0, y - y0
                def at(yy, xx):
                    return pixels[k, :, min(max(yy, 0), h - 1), min(max(xx, 0), w - 1)]
                out[k, :, i, j] = ((1 - fy) * ((1 - fx) * at(y0, x0) + fx * at(y0, x0 + 1))
                                   + fy * ((1 - fx) * at(y0 + 1, x0) + fx * at(y0 + 1, x0 + 1)))
    return out / 255


def test_matches_the_per_pixel_reference():
    images = torch.randint(0, 256, (6, 3, 10, 10), dtype=torch.uint8, generator=torch.Generator().manual_seed(1))
    out = random_resized_crop(images, torch.Generator().manual_seed(5))
    np.testing.assert_allclose(out.numpy(), reference(images, 5), atol=2e-4)


def test_full_box_without_flip_is_the_identity_and_with_flip_the_mirror():
    images = torch.randint(0, 256, (4, 1, 9, 7), dtype=torch.uint8)
    same = random_resized_crop(images, torch.Generator().manual_seed(0), scale=(1, 1), ratio=(1, 1), flip=False)
    torch.testing.assert_close(same, images.float() / 255, atol=1e-5, rtol=0)
    square = images[:, :, :7]
    mirrored = random_resized_crop(square, torch.Generator().manual_seed(0), scale=(1, 1), ratio=(1, 1))
    for k in range(4):
        assert torch.allclose(mirrored[k], square[k].float() / 255, atol=1e-5) or \
            torch.allclose(mirrored[k], square[k].flip(-1).float() / 255, atol=1e-5)


def test_crops_vary_and_cover_the_scale_range():
    """Mean brightness of a horizontal ramp tells where each box lies: boxes differ across the batch."""
    ramp = torch.arange(64, dtype=torch.uint8).repeat(256, 3, 64, 1) * 4
    out = Augment("rrc-flip")(ramp, torch.Generator().manual_seed(0))
    assert out.dtype == torch.float32 and out.shape == ramp.shape
    spread = (out.amax(dim=(1, 2, 3)) - out.amin(dim=(1, 2, 3)))  # a box spanning share s of the width
    assert spread.min() > 0.45 and spread.max() > 0.95 and spread.std() > 0.05
