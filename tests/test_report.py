"""The report's importance: a random forest's permutation importance finds the hyperparameter that
the metric really depends on (the rest of the report is checked on a real search in
test_search.py)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from skinsearch.results.report import _importance, importance
from skinsearch.store.records import TrialRecord


def test_importance_ranks_the_hyperparameter_that_matters_first(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    trials = []
    for i in range(40):
        lr, dropout = 10 ** rng.uniform(-4, -2), rng.uniform(0, 0.5)
        acc = 0.3 + 0.1 * (np.log10(lr) + 4) + rng.normal(0, 0.005)  # only lr matters
        config = {"lr": lr, "dropout": dropout, "optimizer": ["adam", "sgd"][i % 2]}
        row = {"epoch": 1, "val_acc": acc}
        trials.append(TrialRecord("", f"t{i}", config, str(tmp_path), epochs=1, best=row))
    html = _importance(tmp_path, trials, "val_acc", ["lr", "dropout", "optimizer"])
    assert "Permutation importance of a random forest" in html
    assert (tmp_path / "importance.png").is_file()

    scores = importance(trials, "val_acc", ["lr", "dropout", "optimizer"])
    assert max(scores, key=lambda name: scores[name][0]) == "lr"
    assert scores["lr"][0] > 10 * max(scores["dropout"][0], scores["optimizer"][0], 0.01)
