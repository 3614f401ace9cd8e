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


def plot_styled_curves(curves: dict[str, dict[str, list]], styles: dict[str, str], labels: dict[str, str],
                      path: str | Path, *, title: str = "", ylabel: str = "share of label-corrupted samples") -> Path:
    """Per run label (a colour), one line per metric (a line style: memorisation shares, or clean and
    robust accuracy) against the epoch, on a [0, 1] axis."""
    from matplotlib.lines import Line2D

    fig, ax = plt.subplots(figsize=(7, 4.5), dpi=120)
    handles = []
    for colour, (name, metrics) in enumerate(curves.items()):
        handles.append(Line2D([], [], color=f"C{colour % 10}", label=name))
        for key, style in styles.items():
            points = [(i, v) for i, v in enumerate(metrics.get(key, [])) if v is not None]
            if points:
                ax.plot(*zip(*points), linestyle=style, marker=".", color=f"C{colour % 10}")
    handles += [Line2D([], [], color="black", linestyle=style, label=labels[key]) for key, style in styles.items()]
    ax.set_xlabel("epoch")
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.set_ylim(0, 1)
    ax.grid(alpha=0.3)
    ax.legend(handles=handles, fontsize=7, loc="center left", bbox_to_anchor=(1.01, 0.5))
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return Path(path)


def plot_metric_against(series: dict[str, list[tuple[float, float, float | None]]], path: str | Path, *,
                        xlabel: str, ylabel: str, title: str = "") -> Path:
    """One line per label through ``(x, mean, std)`` points, with a ±std band; a log x axis when the
    x values span a factor of 8 or more (widths, epochs).

    Example: ``plot_metric_against({"ce": [(1, 0.3, 0.01), (4, 0.2, None)]}, "w.png", xlabel="width", ylabel="error")``.
    """
    return plot_panels([(ylabel, series)], path, xlabel=xlabel, title=title)


def plot_panels(panels: list[tuple[str, dict[str, list[tuple[float, float, float | None]]]]], path: str | Path, *,
                xlabel: str, title: str = "", marks: dict[str, float] | None = None) -> Path:
    """Side by side, one panel per ``(ylabel, series)``: each series a line through its ``(x, mean, std)``
    points with a ±std band (where every point has a std); a log x axis when x spans a factor of 8
    or more; ``marks`` draws a labelled vertical line at each x on every panel.

    Example: ``plot_panels([("test error", {"ce": [(4, 0.3, None), (64, 0.2, None)]})], "dd.png",
    xlabel="width", marks={"interpolation threshold": 32})``.
    """
    fig, axes = plt.subplots(1, len(panels), figsize=(6 * len(panels), 4), dpi=120, squeeze=False)
    xs = [x for _, series in panels for points in series.values() for x, _, _ in points]
    for ax, (ylabel, series) in zip(axes[0], panels):
        for name, points in series.items():
            points = sorted(points)
            x = [p[0] for p in points]
            mean = [p[1] for p in points]
            line, = ax.plot(x, mean, marker="o" if len(points) <= 30 else None, ms=3, label=name)
            if all(p[2] is not None for p in points):
                ax.fill_between(x, [m - p[2] for m, p in zip(mean, points)], [m + p[2] for m, p in zip(mean, points)],
                                color=line.get_color(), alpha=0.2)
        for i, (label, x) in enumerate((marks or {}).items()):
            ax.axvline(x, color="black", linestyle=("--", ":", "-.")[i % 3], linewidth=1, label=label)
        if xs and min(xs) > 0 and max(xs) / min(xs) >= 8:
            ax.set_xscale("log", base=2 if max(xs) / min(xs) < 2 ** 12 else 10)
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return Path(path)
