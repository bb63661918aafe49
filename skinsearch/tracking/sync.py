"""``skinsearch sync-mlflow``: re-log a search's trials into MLflow from Tune's files.

For when the tracking server was down during a search (or the driver died before it could log):
each trial gets exactly one child run under the search's parent run, with its params, every
epoch that run is missing, its best-epoch artifacts and how it ended. Running it twice logs
nothing twice.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from skinsearch.errors import SkinsearchError
from skinsearch.store.layout import SEARCH_FILE
from skinsearch.store.records import TrialRecord
from skinsearch.store.search import Search
from skinsearch.store.trials import logged_metrics, read_trial, result_rows, trial_end
from skinsearch.tracking.client import check_tracking_uri
from skinsearch.tracking.runs import SearchTracker


@dataclass
class SyncReport:
    """What a sync did."""

    trials: int = 0
    created: int = 0  # child runs that MLflow did not have
    epochs: int = 0  # epoch rows logged
    closed: int = 0  # runs ended


def sync_search(
    search: Search, tracking_uri: str | None, echo: Callable[[str], None] = print
) -> SyncReport:
    """Bring MLflow up to date with ``search``; see the module docstring."""
    saved, spec, plan, experiment_dir = search.record, search.spec, search.plan, search.folder
    uri = tracking_uri or saved.tracking_uri or ""
    check_tracking_uri(uri)
    tracker = SearchTracker(
        uri, spec.name, saved.search, plan.objective.metric, plan.objective.mode
    )
    report = SyncReport()

    def read(folder: str) -> TrialRecord | None:
        return read_trial(Path(folder), plan)

    try:
        tracker.resume_search(read)
    except SkinsearchError:  # the parent run itself never reached MLflow
        tracker.start_search(
            {"model": spec.model, "trials": saved.trials},
            tags={"skinsearch.experiment_dir": str(experiment_dir)},
        )
        tracker.log_search_file(experiment_dir / SEARCH_FILE)
    for folder in sorted(p.parent for p in experiment_dir.glob("trial_*/params.json")):
        record = read_trial(folder, plan)
        rows = result_rows(folder)
        if record is None or not rows:
            continue
        report.trials += 1
        trial_id = rows[-1]["trial_id"]
        if trial_id not in tracker.trials or not tracker.trials[trial_id].run_id:
            tracker.start_trial(trial_id, folder.name, record.config, str(folder))
            tracker.wait()
            report.created += 1
        run_id = tracker.trials[trial_id].run_id
        if not run_id:
            break  # MLflow failed: reported below
        have = tracker.logged_steps(trial_id, "train_loss")
        for row in rows:
            if int(row.get("epoch", 0)) not in have:
                tracker.log_epoch(trial_id, logged_metrics(row))
                report.epochs += 1
        tracked = tracker.trials[trial_id]
        tracked.best, tracked.epochs = record.best, record.epochs
        if tracker.is_running(trial_id):
            end, error = trial_end(folder)
            tracked.end, tracked.closed = None, False
            tracker.end_trial(trial_id, end, error)
            report.closed += 1
    tracker.finish(interrupted=False)
    if tracker.unlogged:
        raise SkinsearchError(
            f"MLflow at {uri} failed while syncing ({tracker.unlogged[0]}); "
            "check the server and run sync-mlflow again"
        )
    echo(
        f"synced {report.trials} trials to {uri}: {report.created} runs created, "
        f"{report.epochs} epochs logged, {report.closed} runs ended"
    )
    return report
