"""A search read back from its folder (``Search``): its record, its trials as Tune's files
record them, one ranking, and the typed files skinsearch writes beside them
(``confirmation.json``, a bundle's ``config.yaml``)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import yaml
from pydantic import ValidationError

from skinsearch.config.objective import Objective
from skinsearch.config.plan import ConfirmPlan
from skinsearch.errors import ResultsError
from skinsearch.store.records import (
    BundleConfig,
    ConfirmationRecord,
    ConfirmedWinner,
    HeldOutRecord,
)
from skinsearch.store.search import Search
from tests.conftest import write_search, write_trial

SPACE = (
    "model: mlp\ntrain: {metric: val_acc}\nparams:\n  lr: {grid: [0.001, 0.01]}\n  dropout: 0.2\n"
)


def search_with_trials(tmp_path: Path) -> Search:
    folder = write_search(tmp_path, "s", SPACE, ["a", "b"])
    rows = lambda *accs: [  # noqa: E731
        {"epoch": e, "val_acc": a, "val_loss": 1 - a, "train_loss": 1.0, "stop_reason": None}
        for e, a in enumerate(accs, 1)
    ]
    write_trial(folder, "trial_x_00002", {"lr": 0.01, "seed": 2}, rows(0.5, 0.8))
    write_trial(folder, "trial_x_00000", {"lr": 0.001, "seed": 0}, rows(0.6, 0.8, 0.7))
    write_trial(folder, "trial_x_00001", {"lr": 0.01, "seed": 1}, rows(math.nan))
    (folder / "trial_x_00003").mkdir()  # never started by Tune: no params.json
    return Search.load(folder)


def test_a_search_is_read_once_with_its_plan_and_trials(tmp_path: Path) -> None:
    search = search_with_trials(tmp_path)
    assert search.name == "s" and search.record.classes == ["a", "b"] and search.record.trials == 2
    assert search.plan.fixed["dropout"] == 0.2 and search.plan.searched == ("lr",)
    trials = search.trials()
    assert [t.name for t in trials] == ["trial_x_00000", "trial_x_00001", "trial_x_00002"]
    first = trials[0]
    assert first.config["dropout"] == 0.2 and first.config["lr"] == 0.001  # fixed values too
    assert first.epochs == 3 and first.best["epoch"] == 2 and first.last["epoch"] == 3


def test_one_ranking_ties_by_name_and_leaves_out_what_has_no_value(tmp_path: Path) -> None:
    search = search_with_trials(tmp_path)
    # both reach 0.8: the earlier trial wins; the NaN one is not ranked at all
    assert [t.name for t in search.ranked()] == ["trial_x_00000", "trial_x_00002"]
    by_loss = search.ranked(Objective.of("val_loss"))
    assert [t.name for t in by_loss] == ["trial_x_00000", "trial_x_00002"]
    assert by_loss[0].best["val_loss"] == pytest.approx(0.2)


def test_the_confirmation_record_round_trips_and_a_damaged_one_is_one_line(tmp_path: Path) -> None:
    search = search_with_trials(tmp_path)
    assert search.confirmation() is None
    record = ConfirmationRecord(
        **{"k": 2, "seeds": 3, "metric": "val_acc", "mode": "max", "folds": None},
        confirmed_in="s-confirm",
        winner=ConfirmedWinner(from_trial="trial_x_00000", mean=0.8, std=None),
        representative="trial_y_00001",
    )
    (search.folder / "confirmation.json").write_text(record.model_dump_json(indent=1))
    loaded = search.confirmation()
    assert loaded == record and loaded.plan == ConfirmPlan(2, 3, "val_acc", "max")
    # the file as earlier versions wrote it
    assert set(json.loads((search.folder / "confirmation.json").read_text())) == {
        "k", "seeds", "metric", "mode", "folds", "confirmed_in", "winner", "representative"
    }  # fmt: skip

    (search.folder / "confirmation.json").write_text('{"k": 2}')
    with pytest.raises(ResultsError) as error:
        search.confirmation()
    assert str(error.value).startswith(f"{search.folder / 'confirmation.json'}: Field required")
    assert "--single" in str(error.value) and "\n" not in str(error.value)


def test_held_out_figures_are_read_from_the_search_or_its_confirmation(tmp_path: Path) -> None:
    search = search_with_trials(tmp_path)
    assert search.held_out() is None
    held = HeldOutRecord(
        bundle="/b", trial_id="x_00000", epoch=2, images=30,
        metrics={"acc": 0.7, "balanced_acc": 0.6, "auc": None},
        intervals_95={"acc": [0.5, 0.85]}, decision="argmax", temperature=1.3,
    )  # fmt: skip
    (search.folder / "test_evaluation.json").write_text(held.model_dump_json())
    assert search.held_out() == held
    # a confirmed search's export came from its confirmation's folder: that one is newer
    confirmed = write_search(tmp_path, "s-confirm", SPACE, ["a", "b"])
    record = ConfirmationRecord(
        **{"k": 2, "seeds": 3, "metric": "val_acc", "mode": "max", "folds": None},
        confirmed_in="s-confirm",
        winner=ConfirmedWinner(from_trial="trial_x_00000", mean=0.8, std=None),
        representative="trial_y_00001",
    )
    (search.folder / "confirmation.json").write_text(record.model_dump_json())
    assert search.held_out() == held  # the confirmation exported nothing yet
    (confirmed / "test_evaluation.json").write_text('{"bundle": "/b"}')
    with pytest.raises(ResultsError) as error:
        search.held_out()
    assert str(error.value) == (
        f"{confirmed / 'test_evaluation.json'}: not readable (ValidationError); export the model "
        "again with `skinsearch best --export` to rewrite it"
    )


def test_a_bundle_config_is_checked_and_knows_what_it_was_trained_on() -> None:
    config = BundleConfig(
        model="mlp",
        hparams={"lr": 0.01},
        class_names=["a", "b"],
        spec={"data": {"path": "builtin:synthetic"}, "train": {"tta": True}},
    )
    assert config.tta and config.builtin_data == "builtin:synthetic"
    assert yaml.safe_load(yaml.safe_dump(config.model_dump())) == config.model_dump()
    with pytest.raises(ValidationError):
        BundleConfig(model="mlp", hparams={}, class_names=["only one"])
