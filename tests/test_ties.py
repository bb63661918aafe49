"""Two trials that tie on the search's metric are ranked the same way by every reader: the
progress table, the end table, ``best``, ``report`` and confirmation all put the earlier trial
first. A real search on images easy enough that both trials reach val_acc 1.0."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from click.testing import CliRunner

from skinsearch.config.objective import Objective
from skinsearch.config.plan import ConfirmPlan
from skinsearch.results.confirm import top_configs
from skinsearch.store.search import Search
from tests.conftest import cli

pytestmark = pytest.mark.slow

SPACE = """
name: ties
model: mlp
data: {{path: {data}}}
train: {{max_epochs: 25, patience: null, metric: val_acc}}
search: {{sampler: grid, num_samples: 2, seed: 0}}  # two seeds of one configuration
scheduler: none
params:
  input_size: 16
  hidden_sizes: [64]
  lr: 0.01
"""


def test_tied_trials_rank_the_same_everywhere(tiny_images: Path, tmp_path: Path) -> None:
    space = tmp_path / "ties.yaml"
    space.write_text(SPACE.format(data=tiny_images))
    storage = tmp_path / "results"
    CliRunner()
    run = cli(["run", str(space), "--storage", str(storage), "--cpus", "2"])
    assert "Configuration for experiment" not in run.output  # Tune's banner: skinsearch says it
    assert "View detailed results here" not in run.output
    search = Search.load(storage / "ties")
    folders = sorted(search.folder.glob("trial_*/"))
    best = [r.best["val_acc"] for r in search.trials()]
    assert len(best) == 2 and best[0] == best[1], f"the fixture must tie: {best}"
    first, second = (f.name for f in folders)  # ..._00000 and ..._00001
    first_id = first.removeprefix("trial_")

    # the progress table's last "best so far", and the end table's first row
    so_far = re.findall(r"best so far: (\S+) val_acc", run.output)
    assert so_far and so_far[-1].endswith(first_id.split("_")[-1]), run.output
    table = [line.split()[0] for line in run.output.splitlines() if line.startswith("trial_")]
    assert table[:2] == [first, second], run.output

    shown = cli(["best", "--storage", str(storage), "--metric", "val_acc"])
    assert f"trial {first_id}, epoch" in shown.output, shown.output

    cli(["report", "--storage", str(storage)])
    page = (storage / "ties" / "report" / "index.html").read_text()
    leaderboard = re.findall(r"<tr><td>\d+</td><td>(trial_[^<]+)</td>", page)
    assert leaderboard[:2] == [first, second]

    top = top_configs(search, ConfirmPlan(2, 3, "val_acc", "max"))
    assert [t.name for t in top] == [t.name for t in search.ranked()] == [first, second]


def test_objective_breaks_ties_by_name_and_puts_missing_values_last() -> None:
    scores = {"t2": 0.5, "t0": 0.7, "t1": 0.7, "t3": float("nan"), "t4": None}
    ranked = Objective.of("val_acc").rank(scores, scores.get, lambda name: name)
    assert ranked[:3] == ["t0", "t1", "t2"] and set(ranked[3:]) == {"t3", "t4"}
    losses = Objective.of("val_loss")
    assert losses.mode == "min"
    assert losses.rank(scores, scores.get, lambda name: name)[:3] == ["t2", "t0", "t1"]
    rows = [
        {"epoch": 1, "val_loss": 0.3},
        {"epoch": 2, "val_loss": 0.2},
        {"epoch": 3, "val_loss": 0.2},
    ]
    assert losses.best_epoch(rows)["epoch"] == 2  # the earlier of equal epochs
