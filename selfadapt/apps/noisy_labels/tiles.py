"""``label_issues.png``: the top suspected label errors as tiles a person can review.

Example: ``plot_label_issues(images, issues, classes, "label_issues.png", top=25)`` (``images``: the
training images as ``N x C x H x W`` uint8 or float in [0, 1]).
"""
from __future__ import annotations

import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (the backend must be chosen first)
import torch  # noqa: E402

from selfadapt.label_errors import LabelIssues  # noqa: E402


def plot_label_issues(images: torch.Tensor, issues: LabelIssues, classes: list[str], path: str | Path, *,
                      top: int = 25, columns: int = 5, files: list[str] | None = None) -> Path | None:
    """Save the first ``top`` of ``issues`` as tiles titled ``given -> suggested (confidence)`` and,
    with ``files`` (one per training row), the file's path relative to the data root; nothing is
    written (``None``) when there are no issues."""
    count = min(top, len(issues.index))
    if count == 0:
        return None
    columns = min(columns, count)
    rows = math.ceil(count / columns)
    fig, axes = plt.subplots(rows, columns, figsize=(2.2 * columns, 2.4 * rows), dpi=100, squeeze=False)
    for tile, ax in enumerate(axes.flat):
        ax.axis("off")
        if tile >= count:
            continue
        image = images[int(issues.index[tile])].detach().cpu()
        image = image.float() / 255 if image.dtype == torch.uint8 else image.float()
        picture = image[0] if image.shape[0] == 1 else image[:3].permute(1, 2, 0)
        ax.imshow(picture.clamp(0, 1).numpy(), cmap="gray" if image.shape[0] == 1 else None, vmin=0, vmax=1)
        given, suggested = classes[int(issues.given_label[tile])], classes[int(issues.suggested_label[tile])]
        name = f"\n{_short(files[int(issues.index[tile])])}" if files else ""
        ax.set_title(f"{given} -> {suggested}\n({float(issues.confidence[tile]):.2f}){name}", fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return Path(path)


def _short(file: str, most: int = 28) -> str:
    """A path that fits under a tile: its end, with ``...`` in front when cut.

    >>> _short("holidays/2019/beach/IMG_20190713_101112.jpg")
    '...h/IMG_20190713_101112.jpg'
    """
    return file if len(file) <= most else "..." + file[-(most - 3):]
