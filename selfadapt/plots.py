"""Line plots of per-epoch curves (matplotlib, headless)."""
from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (the backend must be chosen first)


def plot_curves(curves: dict[str, list[float]], path: str | Path, *, ylabel: str, title: str = "",
                xlabel: str = "epoch") -> Path:
    """One line per named curve against the epoch; ``None`` values are skipped.

    Example: ``plot_curves({"ce": [0.5, 0.6], "sat": [0.5, 0.7]}, "acc.png", ylabel="test accuracy")``.
    """
    fig, ax = plt.subplots(figsize=(6, 4), dpi=120)
    for name, values in curves.items():
        points = [(i, v) for i, v in enumerate(values) if v is not None]
        if points:
            ax.plot(*zip(*points), label=name)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return Path(path)
