"""Metrics against scikit-learn."""

from __future__ import annotations

import math

import numpy as np
import pytest
from sklearn import metrics as skm

from skinsearch.training.metrics import evaluate


def random_predictions(n: int, classes: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, classes, n)
    probs = rng.dirichlet(np.ones(classes), n)
    probs[np.arange(n), labels] += rng.uniform(0, 0.6, n)
    return labels, probs / probs.sum(1, keepdims=True)


@pytest.mark.parametrize("seed", range(5))
def test_metrics_match_scikit_learn(seed: int) -> None:
    labels, probs = random_predictions(300, 6, seed)
    names = [f"c{i}" for i in range(6)]
    ev = evaluate(labels, probs, names)
    preds = probs.argmax(1)
    assert ev.acc == pytest.approx(skm.accuracy_score(labels, preds))
    assert ev.balanced_acc == pytest.approx(skm.balanced_accuracy_score(labels, preds))
    assert ev.macro_f1 == pytest.approx(skm.f1_score(labels, preds, average="macro"))
    assert ev.auc == pytest.approx(skm.roc_auc_score(labels, probs, multi_class="ovr"))
    assert ev.recall == pytest.approx(list(skm.recall_score(labels, preds, average=None)))
    assert ev.confusion == skm.confusion_matrix(labels, preds).tolist()
    report = skm.classification_report(labels, preds, target_names=names, output_dict=True)
    ours = ev.report()
    for key in [*names, "macro avg", "weighted avg"]:
        for field in ("precision", "recall", "f1-score", "support"):
            assert ours[key][field] == pytest.approx(report[key][field])
    assert ev.report_text() == skm.classification_report(
        labels, preds, target_names=names, digits=3
    )


@pytest.mark.filterwarnings("ignore:y_pred contains classes not in y_true")
def test_class_absent_from_labels_is_left_out_of_auc_and_balanced_accuracy() -> None:
    labels, probs = random_predictions(200, 4, 0)
    labels[labels == 3] = 0
    ev = evaluate(labels, probs, list("abcd"))
    preds = probs.argmax(1)
    assert ev.balanced_acc == pytest.approx(skm.balanced_accuracy_score(labels, preds))
    expected = np.mean([skm.roc_auc_score(labels == c, probs[:, c]) for c in (0, 1, 2)])
    assert ev.auc == pytest.approx(expected)
    assert ev.support[3] == 0 and ev.recall[3] == 0.0


def test_auc_is_nan_with_a_single_class() -> None:
    ev = evaluate(np.zeros(5, dtype=int), np.full((5, 2), 0.5), ["a", "b"])
    assert math.isnan(ev.auc)
    assert ev.metrics()["val_recall_a"] == 1.0
