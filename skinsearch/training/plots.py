"""Figures shared by tracking and export (matplotlib, headless)."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")  # headless: trials and CI have no display

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.figure import Figure


def confusion_figure(confusion: list[list[int]], class_names: list[str], title: str = "") -> Figure:
    """A confusion matrix: counts in each cell, shaded by the row-normalised rate."""
    cm = np.asarray(confusion)
    rates = cm / np.maximum(cm.sum(1, keepdims=True), 1)
    n = len(class_names)
    size = max(4.0, 0.6 * n + 2)
    fig, ax = plt.subplots(figsize=(size + 1, size))
    image = ax.imshow(rates, cmap="Blues", vmin=0, vmax=1)
    fig.colorbar(image, ax=ax, fraction=0.046, label="share of the true class")
    ax.set(xticks=range(n), yticks=range(n), xlabel="predicted", ylabel="true", title=title)
    ax.set_xticklabels(class_names, rotation=45, ha="right")
    ax.set_yticklabels(class_names)
    for i in range(n):
        for j in range(n):
            ax.text(
                j,
                i,
                str(cm[i, j]),
                ha="center",
                va="center",
                color="white" if rates[i, j] > 0.5 else "black",
                fontsize=8,
            )
    fig.tight_layout()
    return fig


def save_confusion_png(
    confusion: list[list[int]], class_names: list[str], path: str, title: str = ""
) -> None:
    """Write ``confusion_figure`` as a PNG file."""
    fig = confusion_figure(confusion, class_names, title)
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)


def confusion_image(confusion: list[list[int]], cell: int = 24) -> np.ndarray:
    """A confusion matrix as an ``(H, W, 3)`` uint8 heatmap of row-normalised rates (true classes
    down, predicted across, viridis): cheap enough to write at every improvement."""
    cm = np.asarray(confusion, dtype=np.float64)
    rates = cm / np.maximum(cm.sum(1, keepdims=True), 1)
    lut = (matplotlib.colormaps["viridis"](np.linspace(0, 1, 256))[:, :3] * 255).astype(np.uint8)
    pixels = lut[np.round(rates * 255).astype(int)]
    pixels = pixels.repeat(cell, 0).repeat(cell, 1)
    pixels[::cell, :] = pixels[:, ::cell] = 255  # white grid lines between cells
    return pixels
