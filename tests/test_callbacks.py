"""The progress table printed during a search (its input stands in for Tune's Trial objects:
the table reads only their status, name, metric analysis and last result)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from skinsearch.callbacks import progress_table


@dataclass
class Trial:
    name: str
    status: str
    last_result: dict[str, Any] = field(default_factory=dict)
    metric_analysis: dict[str, dict[str, float]] = field(default_factory=dict)

    def __str__(self) -> str:
        return self.name


def test_running_trials_show_their_latest_epoch_and_starting_ones_are_left_out() -> None:
    trials = [
        Trial("t0", "RUNNING", {"epoch": 3, "val_acc": 0.5}, {"val_acc": {"max": 0.6}}),
        Trial("t1", "RUNNING", {"trial_id": "t1"}),  # started, no epoch reported yet
        Trial("t2", "TERMINATED", {"epoch": 5, "val_acc": 0.7}, {"val_acc": {"max": 0.7}}),
        Trial("t3", "PENDING"),
    ]
    table = progress_table(trials, "val_acc", "max", 42.0).splitlines()
    assert table[0] == "[   42s] 4 trials: 1 pending, 2 running, 1 terminated"
    assert table[1] == "  best so far: t2 val_acc=0.7000"
    assert table[2:] == ["  t0  epoch   3  val_acc=0.5000"]
