"""The MLflow client and the names skinsearch gives MLflow: the tags, the run status for each
way a trial ends, and the read-only queries that ``best`` makes (``SearchTracker`` in ``runs.py``
does the writing)."""

from __future__ import annotations

import fcntl
import json
import math
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from skinsearch._files import write_failure
from skinsearch.config.objective import Objective
from skinsearch.errors import SkinsearchError
from skinsearch.store.records import TrialEnd

#: How a trial ended -> MLflow run status.
END_STATUS: dict[str, str] = {
    TrialEnd.COMPLETED: "FINISHED",
    TrialEnd.EARLY_STOPPED: "FINISHED",
    TrialEnd.STOPPED_BY_ASHA: "FINISHED",
    TrialEnd.ERRORED: "FAILED",
    TrialEnd.INTERRUPTED: "KILLED",
    TrialEnd.STORAGE_FAILED: "FAILED",
}
SEARCH_TAG = "skinsearch.search"
TRIAL_TAG = "skinsearch.trial_id"
END_TAG = "skinsearch.end"
TRIAL_DIR_TAG = "skinsearch.trial_dir"


def check_tracking_uri(uri: str) -> None:
    """Fail fast when an MLflow server does not answer (its client retries for minutes).

    Raises:
        SkinsearchError: naming the URI and what went wrong.
    """
    if not uri.startswith(("http://", "https://")):
        return
    try:
        with urllib.request.urlopen(uri.rstrip("/") + "/health", timeout=5) as response:
            response.read()
    except (OSError, ValueError) as exc:
        reason = getattr(exc, "reason", None) or exc
        raise SkinsearchError(
            f"MLflow server {uri} does not answer ({reason}); start it or pass another --mlflow-uri"
        ) from None


def mlflow_client(uri: str) -> Any:
    """An ``MlflowClient`` for ``uri``. A SQLite store is created (or migrated) by the client's
    constructor; two processes doing that at once break the file for good (MLflow's schema
    migration is not safe to race), so here it happens under a lock file beside the database,
    and searches started at the same moment on a new storage take turns."""
    from mlflow.tracking import MlflowClient

    path = sqlite_path(uri)
    if path is None:
        return MlflowClient(tracking_uri=uri)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.with_name(path.name + ".lock").open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            return MlflowClient(tracking_uri=uri)
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def experiment_id(client: Any, name: str, artifact_root: Path | None) -> str:
    """The id of MLflow experiment ``name``: made (artifacts under ``artifact_root``, if given)
    or restored from MLflow's trash when needed."""
    existing = client.get_experiment_by_name(name)
    if existing is not None:
        if existing.lifecycle_stage == "deleted":
            client.restore_experiment(existing.experiment_id)
        return str(existing.experiment_id)
    location = (artifact_root / name).resolve().as_uri() if artifact_root else None
    return str(client.create_experiment(name, artifact_location=location))


def sqlite_path(uri: str) -> Path | None:
    """The database file of a ``sqlite:///`` tracking URI; None for any other URI."""
    prefix = "sqlite:///"
    return Path(uri[len(prefix) :]) if uri.startswith(prefix) else None


def default_tracking_uri(storage: Path) -> str:
    """The SQLite store under the storage folder (absolute, so trials and tools agree)."""
    return f"sqlite:///{(storage / 'mlflow.db').resolve()}"


@dataclass(frozen=True)
class RunBest:
    """A trial's best epoch on a metric, as its MLflow run holds it."""

    trial_id: str
    trial_dir: str  # as tagged: a path or a URI
    value: float
    epoch: int


def best_epochs(uri: str, experiment: str, search: str, objective: Objective) -> list[RunBest]:
    """Each trial run of ``search`` that logged ``objective.metric``: its best epoch (the earliest
    of equals). Empty when MLflow has no such experiment."""
    client = mlflow_client(uri)
    exp = client.get_experiment_by_name(experiment)
    if exp is None:
        return []
    runs = client.search_runs(
        [exp.experiment_id],
        filter_string=f"tags.`{SEARCH_TAG}` = '{search}' and tags.`{TRIAL_TAG}` != ''",
        max_results=10_000,
    )
    found = []
    for run in runs:
        history = [
            m
            for m in client.get_metric_history(run.info.run_id, objective.metric)
            if math.isfinite(m.value)
        ]
        top = objective.best(history, lambda m: m.value, lambda m: m.step)
        if top is not None:
            tags = run.data.tags
            found.append(RunBest(tags[TRIAL_TAG], tags[TRIAL_DIR_TAG], top.value, top.step))
    return found


def log_test_metrics(
    uri: str, experiment: str, search: str, trial_id: str, metrics: dict[str, float | None]
) -> bool:
    """Put held-out test figures on a trial's run as ``test_<name>`` metrics (step 0); False
    when MLflow has no run of that trial."""
    from mlflow.entities import Metric

    client = mlflow_client(uri)
    exp = client.get_experiment_by_name(experiment)
    runs = (
        client.search_runs(
            [exp.experiment_id],
            filter_string=f"tags.`{SEARCH_TAG}` = '{search}' and tags.`{TRIAL_TAG}` = '{trial_id}'",
            max_results=1,
        )
        if exp is not None
        else []
    )
    if not runs:
        return False
    stamp = now_ms()
    figures = [
        Metric(f"test_{k}", float(v), stamp, 0)
        for k, v in metrics.items()
        if v is not None and finite(v)
    ]
    client.log_batch(runs[0].info.run_id, metrics=figures)
    return True


# -- values as MLflow takes them ------------------------------------------------------------


def now_ms() -> int:
    """Now, in MLflow's milliseconds."""
    return int(time.time() * 1000)


def first_line(exc: BaseException) -> str:
    """An exception in one line (a failed write: the storage's own words)."""
    text = str(exc).strip()
    if failed := write_failure(exc):  # SQLite's own line comes after SQLAlchemy's preamble
        return f"{failed} ({exc.__class__.__name__})"
    return (text.splitlines()[0] if text else exc.__class__.__name__)[:300]


def finite(value: Any) -> bool:
    """Whether ``value`` is a number MLflow can store as a metric."""
    return isinstance(value, int | float) and math.isfinite(value)


def param_text(value: Any) -> str:
    """A hyperparameter as an MLflow param: lists as JSON."""
    return json.dumps(value) if isinstance(value, list | tuple | dict) else str(value)
