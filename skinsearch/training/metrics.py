"""Classification metrics from predicted probabilities: accuracy, balanced accuracy, macro-F1,
one-vs-rest AUC, per-class precision/recall/F1 and the confusion matrix.

Computed from the confusion matrix and ranks in NumPy (fast enough to run every epoch); the tests
check every figure against scikit-learn.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy.stats import rankdata


def class_key(name: str) -> str:
    """How a class is named in metric keys (``val_recall_<key>``), which MLflow restricts:
    letters, digits, '_', '-' and '.' are kept, each run of anything else (spaces, brackets,
    '+', '&', quotes, a newline) becomes one '_', and '_' at either end is dropped. So
    "nevus (benign)" is ``val_recall_nevus_benign``."""
    return re.sub(r"[^\w.-]+", "_", name).strip("_") or "_"


def class_keys(class_names: list[str]) -> dict[str, str]:
    """``class_key`` of every class, checked to be distinct.

    Raises:
        ValueError: naming two classes whose keys would be the same.
    """
    keys: dict[str, str] = {}
    for name in class_names:
        key = class_key(name)
        if key in keys.values():
            other = next(n for n, k in keys.items() if k == key)
            raise ValueError(
                f"classes {other!r} and {name!r} would both be reported as val_recall_{key}; "
                "rename one of the two folders"
            )
        keys[name] = key
    return keys


@dataclass(frozen=True)
class Evaluation:
    """The metrics of one model on one labelled set."""

    class_names: list[str]
    confusion: list[list[int]]  # rows: true class, columns: predicted class
    acc: float
    balanced_acc: float
    macro_f1: float
    auc: float  # macro one-vs-rest over classes present in the labels; NaN if fewer than two
    precision: list[float]
    recall: list[float]
    f1: list[float]
    support: list[int]

    def metrics(self, prefix: str = "val_") -> dict[str, float]:
        """Flat metrics for reporting: ``val_acc`` ... and ``val_recall_<class_key(class)>``."""
        out = {
            f"{prefix}acc": self.acc,
            f"{prefix}balanced_acc": self.balanced_acc,
            f"{prefix}macro_f1": self.macro_f1,
            f"{prefix}auc": self.auc,
        }
        out.update(
            {
                f"{prefix}recall_{class_key(n)}": r
                for n, r in zip(self.class_names, self.recall, strict=True)
            }
        )
        return out

    def report(self) -> dict[str, Any]:
        """A classification report in scikit-learn's ``output_dict`` layout."""
        rows: dict[str, Any] = {
            name: {"precision": p, "recall": r, "f1-score": f, "support": s}
            for name, p, r, f, s in zip(
                self.class_names, self.precision, self.recall, self.f1, self.support, strict=True
            )
        }
        total = int(sum(self.support))
        weights = np.array(self.support) / max(total, 1)
        rows["accuracy"] = self.acc
        rows["macro avg"] = _avg(self, np.full(len(self.support), 1 / len(self.support)), total)
        rows["weighted avg"] = _avg(self, weights, total)
        return rows

    def report_text(self) -> str:
        """The report as a fixed-width table, like ``sklearn.metrics.classification_report``."""
        report = self.report()
        width = max(len(n) for n in [*self.class_names, "weighted avg"])
        lines = [f"{'':>{width}}  precision    recall  f1-score   support", ""]
        for name in self.class_names:
            r = report[name]
            lines.append(
                f"{name:>{width}}  {r['precision']:9.3f} {r['recall']:9.3f} {r['f1-score']:9.3f} {r['support']:9d}"
            )
        lines += [
            "",
            f"{'accuracy':>{width}}  {'':9} {'':9} {self.acc:9.3f} {sum(self.support):9d}",
        ]
        for name in ("macro avg", "weighted avg"):
            r = report[name]
            lines.append(
                f"{name:>{width}}  {r['precision']:9.3f} {r['recall']:9.3f} {r['f1-score']:9.3f} {r['support']:9d}"
            )
        return "\n".join(lines) + "\n"


def evaluate(labels: np.ndarray, probs: np.ndarray, class_names: list[str]) -> Evaluation:
    """Evaluate predicted class probabilities ``(N, C)`` against integer labels ``(N,)``."""
    n_classes = len(class_names)
    preds = probs.argmax(1)
    cm = np.bincount(labels * n_classes + preds, minlength=n_classes**2).reshape(
        n_classes, n_classes
    )
    tp = np.diag(cm).astype(np.float64)
    support = cm.sum(1)
    predicted = cm.sum(0)
    recall = _div(tp, support)
    precision = _div(tp, predicted)
    f1 = _div(2 * precision * recall, precision + recall)
    present = support > 0
    return Evaluation(
        class_names=list(class_names),
        confusion=cm.tolist(),
        acc=float(tp.sum() / max(len(labels), 1)),
        balanced_acc=float(recall[present].mean()) if present.any() else 0.0,
        macro_f1=float(f1.mean()),
        auc=_ovr_auc(labels, probs, present),
        precision=precision.tolist(),
        recall=recall.tolist(),
        f1=f1.tolist(),
        support=support.astype(int).tolist(),
    )


def _ovr_auc(labels: np.ndarray, probs: np.ndarray, present: np.ndarray) -> float:
    # Mann-Whitney U per class against the rest; classes absent from the labels have no AUC
    aucs = []
    for c in np.flatnonzero(present):
        positive = labels == c
        n_pos, n_neg = int(positive.sum()), int((~positive).sum())
        if n_neg == 0:
            continue
        ranks = rankdata(probs[:, c])
        aucs.append((ranks[positive].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))
    return float(np.mean(aucs)) if len(aucs) >= 2 else math.nan


def _div(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    return np.divide(num, den, out=np.zeros_like(num, dtype=np.float64), where=den > 0)


def _avg(ev: Evaluation, weights: np.ndarray, total: int) -> dict[str, float | int]:
    return {
        "precision": float(weights @ np.array(ev.precision)),
        "recall": float(weights @ np.array(ev.recall)),
        "f1-score": float(weights @ np.array(ev.f1)),
        "support": total,
    }
