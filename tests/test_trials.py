"""Reading a trial from Tune's own files, as --resume, sync-mlflow, best and report do."""

from __future__ import annotations

import json
from pathlib import Path

from skinsearch.config.objective import Objective
from skinsearch.config.plan import SearchPlan
from skinsearch.config.spec import loads_spec
from skinsearch.results.select import _scores_from_tune
from skinsearch.store.trials import read_trial, result_rows

PLAN = SearchPlan.compile(loads_spec("name: t\nmodel: mlp\ntrain: {metric: val_acc}\n"))


def test_epochs_reported_again_after_a_resume_count_once_the_later_report_kept(
    tmp_path: Path,
) -> None:
    # a trial resumed from its epoch-2 checkpoint after it had reported epochs 3 and 4
    folder = tmp_path / "search" / "trial_a"
    folder.mkdir(parents=True)
    (folder / "params.json").write_text(json.dumps({"lr": 0.001}))
    reported = [(1, 0.40), (2, 0.50), (3, 0.90), (4, 0.55), (3, 0.60), (4, 0.65), (5, 0.62)]
    (folder / "result.json").write_text(
        "".join(
            json.dumps({"trial_id": "a", "epoch": e, "val_acc": v, "train_loss": 1 / e}) + "\n"
            for e, v in reported
        )
    )

    rows = result_rows(folder)
    record = read_trial(folder, PLAN)
    (score,) = _scores_from_tune(tmp_path / "search", Objective("val_acc", "max"))

    assert [(r["epoch"], r["val_acc"]) for r in rows] == [
        (1, 0.40), (2, 0.50), (3, 0.60), (4, 0.65), (5, 0.62)
    ]  # fmt: skip
    assert record is not None and record.epochs == 5
    assert record.best["val_acc"] == 0.65 and record.last["epoch"] == 5
    assert (score.value, score.epoch) == (0.65, 4)  # not the superseded 0.90
