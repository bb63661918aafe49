"""Which interrupted confirmation `run --resume` carries on (the runs themselves are tested on a
real Ray in test_search.py and test_search_modes.py)."""

from __future__ import annotations

from pathlib import Path

from skinsearch.config.plan import ConfirmPlan
from skinsearch.config.spec import loads_spec
from skinsearch.results.confirm import _started_for
from skinsearch.store.searches import save_search_file, unfinished_confirmation
from skinsearch.store.storage import Storage

SPEC = loads_spec("name: s\nmodel: mlp\nparams:\n  lr: {grid: [0.001, 0.01]}\n")


def started(storage: Storage, name: str, trials: int, folds: int | None, confirms: str) -> None:
    folder = storage.folder / name
    folder.mkdir(parents=True)
    save_search_file(folder, SPEC, name, ["a", "b"], trials, storage, "sqlite://", folds, confirms)


def test_the_latest_confirmation_of_the_search_is_carried_on_only_for_the_same_runs(
    tmp_path: Path,
) -> None:
    storage = Storage(tmp_path)
    started(storage, "s-confirm", 4, None, confirms="s")
    started(storage, "s-confirm-2", 6, None, confirms="s")
    started(storage, "other-confirm", 6, None, confirms="other")
    plan = ConfirmPlan(2, 3, "val_acc", "max", None)  # top 2 x 3 seeds: 6 runs

    assert unfinished_confirmation(storage, "s") == "s-confirm-2"
    assert unfinished_confirmation(storage, "t") is None
    runs = [{"lr": 0.001, "seed": s} for s in range(6)]
    assert _started_for(storage.folder / "s-confirm-2", runs, plan)
    assert not _started_for(storage.folder / "s-confirm", runs, plan)  # another plan's 4 runs
    folds = ConfirmPlan(2, 1, "val_acc", "max", 3)  # as many runs, but over folds
    assert not _started_for(storage.folder / "s-confirm-2", runs, folds)
