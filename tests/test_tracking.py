"""The MLflow tracker's retries, against a real SQLite store: a write that the server took but
whose answer was lost (a server going down mid-request) must not be stored twice when retried."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from skinsearch.tracking import runs as tracking
from skinsearch.tracking.runs import SearchTracker


def lose_first_answer(client: Any, method: str) -> list[int]:
    """Make ``client.method`` do its work and then fail, once; returns the count of calls."""
    real, calls = getattr(client, method), []

    def flaky(*args: Any, **kwargs: Any) -> Any:
        calls.append(1)
        result = real(*args, **kwargs)
        if len(calls) == 1:
            raise ConnectionError("connection reset by peer")
        return result

    setattr(client, method, flaky)
    return calls


@pytest.fixture
def tracker(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> SearchTracker:
    monkeypatch.setattr(tracking, "RETRY_DELAYS_S", (0.0,))
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    t = SearchTracker(uri, "exp", "s", "val_acc", "max", tmp_path / "artifacts")
    t.start_search({"trials": 1}, tags={})
    return t


def test_a_retried_create_run_adopts_the_run_the_server_made(tracker: SearchTracker) -> None:
    calls = lose_first_answer(tracker.client, "create_run")
    tracker.start_trial("t1", "trial_t1", {"lr": 0.1}, "/nowhere/trial_t1")
    tracker.wait()
    assert len(calls) == 1  # the retry found the run instead of creating a second
    children = tracker.client.search_runs(
        [tracker.experiment_id], filter_string="tags.`skinsearch.trial_id` = 't1'"
    )
    assert len(children) == 1 and tracker.trials["t1"].run_id == children[0].info.run_id
    assert children[0].data.params == {"lr": "0.1"}
    assert not tracker.unlogged


def test_a_retried_epoch_is_one_point(tracker: SearchTracker) -> None:
    tracker.start_trial("t1", "trial_t1", {"lr": 0.1}, "/nowhere/trial_t1")
    tracker.wait()
    calls = lose_first_answer(tracker.client, "log_batch")
    tracker.log_epoch("t1", {"epoch": 1.0, "val_acc": 0.5})
    tracker.wait()
    assert len(calls) == 2  # tried, and retried
    history = tracker.client.get_metric_history(tracker.trials["t1"].run_id, "val_acc")
    assert [(m.step, m.value) for m in history] == [(1, 0.5)]


def test_a_run_whose_trial_files_never_reached_the_storage_is_still_ended(
    tracker: SearchTracker, tmp_path: Path
) -> None:
    # a full disk: MLflow has the child run, the trial folder holds no params.json
    tracker.start_trial("t1", "trial_t1", {"lr": 0.1}, str(tmp_path / "trial_t1"))
    tracker.wait()
    run_id = tracker.trials["t1"].run_id
    uri = tracker.tracking_uri
    later = SearchTracker(uri, "exp", "s", "val_acc", "max", tmp_path / "artifacts")
    later.resume_search(lambda location: None)  # nothing on disk to rebuild it from
    assert later.trials["t1"].run_id == run_id
    later.finish(interrupted=False)
    run = later.client.get_run(run_id)
    assert run.info.status == "KILLED" and run.data.tags["skinsearch.end"] == "interrupted"
    assert later.client.get_run(later.parent_id).info.status == "FINISHED"
    assert not later.unlogged
