"""The figures of ``skinsearch evaluate``: ROC curves per class and a reliability diagram."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from skinsearch.training.plots import plt


def save_roc_png(labels: np.ndarray, probs: np.ndarray, class_names: list[str], path: Path) -> None:
    """One-vs-rest ROC curve of each class present among the labels, its AUC in the legend."""
    from sklearn.metrics import roc_auc_score, roc_curve

    fig, ax = plt.subplots(figsize=(6, 5.5))
    for c, name in enumerate(class_names):
        positive = labels == c
        if positive.all() or not positive.any():
            continue  # no curve for a class with no image, or no other class
        fpr, tpr, _ = roc_curve(positive, probs[:, c])
        auc = roc_auc_score(positive, probs[:, c])
        ax.plot(fpr, tpr, label=f"{name} (AUC {auc:.3f})", linewidth=1.4)
    ax.plot([0, 1], [0, 1], color="grey", linestyle=":", linewidth=1)
    ax.set(
        xlabel="false positive rate (1 - specificity)",
        ylabel="true positive rate (sensitivity)",
        title="ROC, one class against the rest",
        xlim=(0, 1),
        ylim=(0, 1.01),
    )
    ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def save_reliability_png(labels: np.ndarray, probs: np.ndarray, path: Path, bins: int) -> None:
    """Accuracy against the top-class probability in ``bins`` equal-width bins (the diagonal is
    perfect calibration), with how many images each bin holds."""
    confidence, correct = probs.max(1), probs.argmax(1) == labels
    which = np.minimum((confidence * bins).astype(int), bins - 1)
    centres = (np.arange(bins) + 0.5) / bins
    counts = np.bincount(which, minlength=bins)
    accuracy = np.bincount(which, weights=correct, minlength=bins) / np.maximum(counts, 1)
    fig, (top, bottom) = plt.subplots(
        2, 1, figsize=(5, 6), sharex=True, gridspec_kw={"height_ratios": [3, 1]}
    )
    shown = counts > 0
    top.bar(centres[shown], accuracy[shown], width=1 / bins, edgecolor="black", alpha=0.8)
    top.plot([0, 1], [0, 1], color="grey", linestyle=":")
    top.set(ylabel="accuracy", title="Reliability", ylim=(0, 1))
    bottom.bar(centres, counts, width=1 / bins, color="grey")
    bottom.set(xlabel="top-class probability", ylabel="images", xlim=(0, 1))
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
