"""``best`` without MLflow: the winner comes from Tune's own files, by the same ranking."""

from __future__ import annotations

from pathlib import Path

import pytest

from skinsearch.errors import ResultsError
from skinsearch.results.select import epoch_metrics, find_best
from skinsearch.store.search import Search
from tests.conftest import write_search, write_trial


def test_best_falls_back_to_tunes_files_and_breaks_ties_by_name(tmp_path: Path) -> None:
    folder = write_search(
        tmp_path, "s", "model: mlp\nparams:\n  lr: {grid: [0.1, 0.2]}\n", ["a", "b"]
    )
    search = Search.load(folder)
    with pytest.raises(ResultsError, match="no trial of search 's' has reported val_acc yet"):
        find_best(search, "val_acc", "max", tracking_uri=f"sqlite:///{tmp_path / 'empty.db'}")

    for name, accs in (("trial_s_00001", [0.7, 0.9]), ("trial_s_00000", [0.9, 0.8])):
        rows = [{"epoch": e, "val_acc": a, "train_acc": a} for e, a in enumerate(accs, 1)]
        write_trial(folder, name, {"lr": 0.1}, rows)
    best = find_best(search, "val_acc", "max", tracking_uri=f"sqlite:///{tmp_path / 'empty.db'}")
    assert best.source == "tune" and best.trials_scored == 2
    assert (best.score.trial_id, best.score.epoch, best.score.value) == ("s_00000", 1, 0.9)
    assert epoch_metrics(best.score) == {"val_acc": 0.9, "train_acc": 0.9}
    assert (
        find_best(search, "val_acc", "min", f"sqlite:///{tmp_path / 'empty.db'}").score.value == 0.7
    )
