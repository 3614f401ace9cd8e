"""Reading image files for the ``imagefolder:`` and ``csv:`` formats: every file decoded into one
uint8 array (grey if every image is), and which files cannot be decoded."""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

from selfadapt.errors import SelfAdaptError

IMAGE_SUFFIXES = (".bmp", ".gif", ".jpeg", ".jpg", ".pbm", ".pgm", ".png", ".ppm", ".tif", ".tiff", ".webp")
_GRAY_MODES = ("1", "L", "LA", "I", "I;16", "F")


def read_images(paths: list[Path], root: Path) -> np.ndarray:
    """All images as ``uint8 (N, C, H, W)``: grey if every one is, resized to the first one's size."""
    from PIL import Image

    def fail(p, e):
        return SelfAdaptError(f"cannot read image {shown(p, root)} in {root}: {e}")

    modes = []
    size = None
    for p in paths:  # headers only: cheap
        try:
            with Image.open(p) as im:
                modes.append(im.mode)
                size = size or im.size
        except Exception as e:
            raise fail(p, e) from None
    mode = "L" if all(m in _GRAY_MODES for m in modes) else "RGB"
    out = np.empty((len(paths), size[1], size[0], 1 if mode == "L" else 3), np.uint8)
    for k, p in enumerate(paths):
        try:
            with Image.open(p) as im:
                im = im.convert(mode)
                if im.size != size:
                    im = im.resize(size, Image.BILINEAR)
                out[k] = np.asarray(im).reshape(out.shape[1:])
        except Exception as e:
            raise fail(p, e) from None
    return out.transpose(0, 3, 1, 2)


def shown(path: Path, root: Path) -> str:
    """``path`` relative to ``root`` where it lies inside it, else as given."""
    return path.relative_to(root).as_posix() if path.is_relative_to(root) else str(path)


def readable_images(paths: list[Path], root: Path) -> list[bool]:
    """Whether each image decodes completely; the others are listed on stderr (``--skip-unreadable``)."""
    from PIL import Image

    def readable(p):
        try:
            with Image.open(p) as im:
                im.load()
            return True
        except Exception:
            return False

    kept = [readable(p) for p in paths]
    skipped = [shown(p, root) for p, ok in zip(paths, kept) if not ok]
    if skipped:
        print(f"skipped {len(skipped)} unreadable image(s) in {root}: {', '.join(skipped)}", file=sys.stderr)
    return kept
