"""Which interrupted confirmation `run --resume` carries on, and how its runs share the CPUs (the
runs themselves are tested on a real Ray in test_search.py and test_search_modes.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from skinsearch.config.plan import ConfirmPlan
from skinsearch.config.spec import loads_spec
from skinsearch.results.confirm import _started_for
from skinsearch.store.searches import save_search_file, unfinished_confirmation
from skinsearch.store.storage import Storage
from skinsearch.tune.cluster import cpus_per_run, spread_line

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


@pytest.mark.parametrize(
    ("runs", "cpus", "asked", "share", "rounds"),
    [
        (3, 2, 1, 0.6666, 1),  # all 3 at once, not 2 and then 1 alone on one of the 2 cores
        (5, 2, 1, 0.6666, 2),  # 3 then 2: both cores busy to the end, not 2, 2 and 1
        (9, 2, 1, 0.6666, 3),  # cnn_plus.yaml's top 3 x 3 seeds: 3 rounds of 3, not 5
        (4, 2, 1, 1.0, 2),  # whole rounds already: as the file asks
        (3, 1, 1, 1.0, 3),  # one CPU: one run at a time
        (1, 2, 1, 2.0, 1),  # one run gets both CPUs' threads
        (3, 16, 1, 5.0, 1),  # more CPUs than runs: more threads each, whole CPUs for Ray
        (2, 3, 2, 3.0, 2),  # one run at a time either way, with all 3 CPUs
    ],
)
def test_equally_long_runs_share_the_cpus_without_an_idle_last_round(
    runs: int, cpus: int, asked: float, share: float, rounds: int
) -> None:
    got = cpus_per_run(runs, cpus, asked)
    at_once = min(runs, int(cpus // got))
    assert (got, -(-runs // at_once)) == (share, rounds)
    assert at_once * got <= cpus  # Ray can place every run of a round


def test_the_spread_says_what_it_did_in_plain_words() -> None:
    tail = "(resources.cpus_per_trial 1), so that no core waits idle"
    assert spread_line(3, 3, 0.6666, 1) == f"all 3 runs at once, 0.6666 CPU each {tail}"
    assert spread_line(9, 3, 0.6666, 1) == f"3 of the 9 runs at once, 0.6666 CPU each {tail}"
    assert spread_line(1, 1, 2.0, 1) == f"its one run on 2 CPUs {tail}"
