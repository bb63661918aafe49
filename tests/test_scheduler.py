"""ASHA's rungs judge a trial on its best epoch so far (``scheduler.compare: best``) or on the
rung epoch's own value (``last``).

The scheduler is Ray's own ASHAScheduler, built by skinsearch and given the metric that Tune gets
from ``build_tuner``; the trials are stand-ins with an id (all the scheduler reads of a trial), fed
the per-epoch values of the pretrained.yaml search on isic8_clean (docs/RESULTS.md) whose 160 px
trial a one-epoch dip sank at the epoch-8 rung."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from skinsearch.config.spec import load_spec
from skinsearch.tune.searchers import BEST_SO_FAR, compared_metric, scheduler

SPACE = """
name: rungs
model: mlp
train: {{max_epochs: 20, patience: null, metric: val_balanced_acc}}
scheduler: {{type: asha, grace_period: 4, reduction_factor: 2{compare}}}
params: {{input_size: 16}}
"""

# val_balanced_acc by epoch, 1 to 8, as measured (result.json of trials 1, 0 and 2): the two
# 128 px trials reached the epoch-8 rung first
HISTORIES = {
    "128px_lr1.0": [0.502, 0.357, 0.483, 0.564, 0.589, 0.541, 0.586, 0.578],
    "128px_lr0.3": [0.420, 0.429, 0.537, 0.627, 0.665, 0.664, 0.625, 0.674],
    "160px_lr0.3": [0.491, 0.443, 0.556, 0.624, 0.638, 0.671, 0.615, 0.622],
}


@dataclass(frozen=True)
class StandIn:
    trial_id: str


def built_asha(tmp_path: Path, compare: str) -> Any:
    """skinsearch's ASHA for ``compare`` ("" for the default), given Tune's metric and mode."""
    path = tmp_path / "rungs.yaml"
    path.write_text(SPACE.format(compare=f", compare: {compare}" if compare else ""))
    spec = load_spec(path)
    asha = scheduler(spec)
    assert asha.set_search_properties(compared_metric(spec), "max")  # as TuneConfig passes it
    return asha


def rung_decisions(tmp_path: Path, compare: str) -> dict[str, str]:
    """Each trial's action at its epoch-8 result, the trials run one after another."""
    asha = built_asha(tmp_path, compare)
    decisions = {}
    for name, values in HISTORIES.items():
        trial = StandIn(name)
        asha.on_trial_add(None, trial)
        best = -1.0
        for epoch, value in enumerate(values, start=1):
            best = max(best, value)
            row = {"training_iteration": epoch, "val_balanced_acc": value, BEST_SO_FAR: best}
            action = asha.on_trial_result(None, trial, row)
            if epoch < len(values):
                assert action == "CONTINUE", (name, epoch)  # the epoch-4 rung keeps all three
        decisions[name] = action
    return decisions


@pytest.mark.parametrize("compare", ["", "best"])
def test_a_one_epoch_dip_does_not_sink_a_trial_judged_on_its_best(
    tmp_path: Path, compare: str
) -> None:
    # cut-off at epoch 8: the median of the bests before it, 0.589 and 0.674; 160 px is at 0.671
    # (at epoch 4 all three go on, as in the search)
    decisions = rung_decisions(tmp_path, compare)
    assert decisions == {
        "128px_lr1.0": "CONTINUE",  # the first trial at a rung always goes on
        "128px_lr0.3": "CONTINUE",
        "160px_lr0.3": "CONTINUE",
    }


def test_compare_last_judges_the_rung_epoch_alone(tmp_path: Path) -> None:
    # cut-off: the median of 0.578 and 0.674, 0.626; the 160 px trial's epoch 8 is 0.622
    decisions = rung_decisions(tmp_path, "last")
    assert decisions["160px_lr0.3"] == "STOP"
    assert decisions["128px_lr0.3"] == "CONTINUE"


def test_a_weak_trial_is_still_stopped_on_its_best(tmp_path: Path) -> None:
    asha = built_asha(tmp_path, "")
    actions = []
    for name, level in (("strong", 0.7), ("weak", 0.3), ("stronger", 0.8)):
        asha.on_trial_add(None, StandIn(name))
        row = {"training_iteration": 4, "val_balanced_acc": level, BEST_SO_FAR: level}
        actions.append(asha.on_trial_result(None, StandIn(name), row))
    assert actions == ["CONTINUE", "STOP", "CONTINUE"]  # cut-offs 0.7, then 0.5
