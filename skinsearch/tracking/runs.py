"""Tracking: MLflow runs for a search and its trials (TensorBoard is ``board.py``'s).

``SearchTracker`` runs on the driver: one parent run per search, one child run per trial
(nested through ``mlflow.parentRunId``), every epoch's metrics, and at the end of a trial the
artifacts of its best epoch. ``finish`` ends every run it opened, however the search ended.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from skinsearch.config.objective import Objective
from skinsearch.errors import SkinsearchError
from skinsearch.store.layout import STATE_FILE
from skinsearch.store.records import UNFINISHED_ENDS, TrialRecord
from skinsearch.store.storage import fetch, is_uri
from skinsearch.tracking.client import (
    END_STATUS,
    END_TAG,
    SEARCH_TAG,
    TRIAL_DIR_TAG,
    TRIAL_TAG,
    experiment_id,
    finite,
    first_line,
    mlflow_client,
    now_ms,
    param_text,
)
from skinsearch.training.checkpoints import best_checkpoint, write_evaluation

log = logging.getLogger(__name__)

RETRY_DELAYS_S = (2.0, 5.0, 10.0)  # between attempts of a failed tracking call
PROBE_EVERY_S = 5.0  # while MLflow is unreachable, calls in between are recorded, not tried


class SearchTracker:
    """MLflow tracking of one search, driven from the Tune driver.

    Args:
        tracking_uri: An MLflow tracking URI (``sqlite:///...``, ``http://...``).
        experiment: The MLflow experiment (the spec's name).
        search: This search's name (the parent run's name).
        metric, mode: What "best epoch" means.
        artifact_root: Where a new experiment stores artifacts; None lets a server decide.
    """

    def __init__(
        self,
        tracking_uri: str,
        experiment: str,
        search: str,
        metric: str,
        mode: str,
        artifact_root: Path | None = None,
    ) -> None:
        # MLflow's HTTP client retries a refused connection for minutes per call; ``_io``
        # retries skinsearch's calls itself and keeps going
        os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "2")
        os.environ.setdefault("MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR", "1")
        # and urllib3 would log each of those retries; one warning from ``_io`` says it instead
        logging.getLogger("urllib3.connectionpool").setLevel(logging.ERROR)
        self.client = mlflow_client(tracking_uri)
        self.tracking_uri, self.search, self.metric = tracking_uri, search, metric
        self.mode, self.objective = mode, Objective.of(metric, mode)
        self.experiment_id = experiment_id(self.client, experiment, artifact_root)
        self.parent_id = ""
        self.trials: dict[str, TrialRecord] = {}
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="skinsearch-mlflow")
        self._unreachable = False
        self._last_try = 0.0
        self.unlogged: list[str] = []  # tracking calls that failed for good, for the summary

    def _io(self, call: Callable[..., None], *args: Any) -> None:
        """Run ``call(*args)`` on the tracker's thread, after every call deferred before it.

        Every MLflow write goes through here, so that a slow write never holds up Tune's loop,
        which calls this tracker from its callbacks; the tracker's own records are updated at
        once, whatever MLflow does. A failing call is retried (``RETRY_DELAYS_S``); one that still
        fails is recorded in ``unlogged`` and the search goes on: Tune's own files hold every
        result, ``best`` falls back on them, and ``skinsearch sync-mlflow`` re-logs them. While
        MLflow stays unreachable, later calls are tried once, so the queue does not stall.
        """

        what = f"{call.__name__.strip('_')} {args[0]}"

        def guarded() -> None:
            if self._unreachable and time.monotonic() - self._last_try < PROBE_EVERY_S:
                self.unlogged.append(f"{what}: MLflow unreachable")
                return
            self._last_try = time.monotonic()
            delays = () if self._unreachable else RETRY_DELAYS_S
            for delay in (*delays, None):
                try:
                    call(*args)
                except Exception as exc:
                    if delay is not None:
                        time.sleep(delay)
                        continue
                    if not self._unreachable:
                        log.warning(
                            "MLflow at %s failed (%s); the search goes on and Tune's files keep "
                            "every result; retrying every %gs",
                            self.tracking_uri,
                            first_line(exc),
                            PROBE_EVERY_S,
                        )
                    self._unreachable = True
                    self.unlogged.append(f"{what}: {first_line(exc)}")
                    return
                if self._unreachable:
                    log.warning("MLflow at %s answers again", self.tracking_uri)
                self._unreachable = False
                return

        self._thread.submit(guarded)

    def __getstate__(self) -> dict[str, Any]:
        # Tune pickles its callbacks (and so this tracker) with the experiment state
        return {k: v for k, v in self.__dict__.items() if k != "_thread"}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="skinsearch-mlflow")

    def wait(self) -> None:
        """Wait for every deferred call to finish."""
        self._thread.shutdown(wait=True)
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="skinsearch-mlflow")

    def start_search(self, params: dict[str, Any], tags: dict[str, str]) -> str:
        """Open the parent run and log the search's settings."""
        run = self.client.create_run(
            self.experiment_id, run_name=self.search, tags={SEARCH_TAG: self.search, **tags}
        )
        self.parent_id = run.info.run_id
        self._log(self.parent_id, params=params)
        return self.parent_id

    def resume_search(self, read_trial: Callable[[str], TrialRecord | None]) -> str:
        """Reopen this search's parent run and adopt its child runs, so that a resumed search
        logs into the same runs and creates none twice.

        ``read_trial(trial_dir)`` rebuilds a trial's record (config, epochs, metrics) from Tune's
        files. Trials that had not ended are reopened; the others keep how they ended.

        Raises:
            SkinsearchError: when MLflow holds no parent run of this search.
        """
        parent_id = self.find_parent()
        if parent_id is None:
            raise SkinsearchError(
                f"MLflow at {self.tracking_uri} has no run of search {self.search!r}; "
                "run without --resume to start a new search"
            )
        self.parent_id = parent_id
        self.client.update_run(self.parent_id, status="RUNNING")
        children = self.client.search_runs(
            [self.experiment_id],
            filter_string=f"tags.`mlflow.parentRunId` = '{self.parent_id}'",
            max_results=10_000,
        )
        for run in children:
            tags = run.data.tags
            if TRIAL_TAG not in tags:
                continue
            trial_dir = tags.get(TRIAL_DIR_TAG, "")
            record = read_trial(trial_dir) if trial_dir else None
            if record is None:  # its files never reached the storage (a full disk): adopt the
                # run all the same, so that it is ended rather than left RUNNING
                record = TrialRecord("", run.info.run_name or tags[TRIAL_TAG], {}, trial_dir)
            record.run_id = run.info.run_id
            end = tags.get(END_TAG)
            record.end = None if end in UNFINISHED_ENDS else end
            record.closed = record.end is not None
            record.error = tags.get("skinsearch.error", "")
            if record.end is None:
                self.client.update_run(record.run_id, status="RUNNING")
            self.trials[tags[TRIAL_TAG]] = record
        return self.parent_id

    def find_parent(self) -> str | None:
        """The id of this search's parent run, if MLflow has one."""
        parents = [
            run
            for run in self.client.search_runs(
                [self.experiment_id],
                filter_string=f"tags.`{SEARCH_TAG}` = '{self.search}' and attributes.run_name = '{self.search}'",
            )
            if "mlflow.parentRunId" not in run.data.tags
        ]
        return parents[0].info.run_id if parents else None

    def log_search_artifacts(self, folder: Path, artifact_path: str) -> str:
        """Attach a folder's files to this search's parent run (found in MLflow); its id.

        Raises:
            SkinsearchError: when MLflow has no run of this search.
        """
        parent = self.find_parent()
        if parent is None:
            raise SkinsearchError(
                f"MLflow at {self.tracking_uri} has no run of search {self.search!r}"
            )
        self.client.log_artifacts(parent, str(folder), artifact_path=artifact_path)
        return parent

    def logged_steps(self, trial_id: str, metric: str) -> set[int]:
        """The epochs at which the trial's run has ``metric``."""
        history = self.client.get_metric_history(self.trials[trial_id].run_id, metric)
        return {m.step for m in history}

    def is_running(self, trial_id: str) -> bool:
        """Whether MLflow still shows the trial's run as RUNNING."""
        return bool(self.client.get_run(self.trials[trial_id].run_id).info.status == "RUNNING")

    def log_search_file(self, path: Path) -> None:
        """Attach a file (the resolved spec) to the parent run."""
        self.client.log_artifact(self.parent_id, str(path))

    def start_trial(self, trial_id: str, name: str, config: dict[str, Any], trial_dir: str) -> None:
        """Record a trial and open its child run (once: a restarted trial keeps its run)."""
        if trial_id not in self.trials:
            # the trial is recorded before MLflow is asked, so a tracking failure cannot hide it
            self.trials[trial_id] = TrialRecord("", name, dict(config), trial_dir)
        self._io(self._open_run, trial_id)

    def log_epoch(self, trial_id: str, metrics: dict[str, float]) -> None:
        """Record one epoch's metrics and log them (``metrics["epoch"]`` is the step)."""
        record = self.trials[trial_id]
        step = int(metrics["epoch"])
        record.epochs = max(record.epochs, step)
        record.last = metrics
        if not record.best or self.objective.value_of(metrics) > self.objective.value_of(
            record.best
        ):  # an equal epoch later on does not replace the earlier one
            record.best = dict(metrics)
        logged = {k: v for k, v in metrics.items() if k != "epoch"}
        # stamped now, so that a retry of a write the server did take is the same row again
        # (MLflow stores an identical metric row once), not a second point at this step
        self._io(self._log_trial, trial_id, logged, step, now_ms())

    def end_trial(self, trial_id: str, end: str, error: str = "") -> None:
        """Record how a trial ended and close its run: summary metrics, best-epoch artifacts."""
        record = self.trials.get(trial_id)
        if record is None or record.closed:
            return
        if record.end is None:
            record.end, record.error = end, error
        self._io(self._close_run, trial_id)

    def _open_run(self, trial_id: str) -> None:
        record = self.trials[trial_id]
        if record.run_id:
            return
        if record.open_tried:  # a retry: the server may have created the run before it failed
            found = self.client.search_runs(
                [self.experiment_id],
                filter_string=f"tags.`{SEARCH_TAG}` = '{self.search}' and "
                f"tags.`{TRIAL_TAG}` = '{trial_id}'",
            )
            if found:
                record.run_id = found[0].info.run_id
                self._log(record.run_id, params=record.config)
                return
        record.open_tried = True
        run = self.client.create_run(
            self.experiment_id,
            run_name=record.name,
            tags={
                "mlflow.parentRunId": self.parent_id,
                SEARCH_TAG: self.search,
                TRIAL_TAG: trial_id,
                TRIAL_DIR_TAG: record.trial_dir,
            },
        )
        record.run_id = run.info.run_id
        self._log(record.run_id, params=record.config)

    def _log_trial(self, trial_id: str, metrics: dict[str, float], step: int, stamp: int) -> None:
        run_id = self._run_of(trial_id)
        self._log(run_id, metrics=metrics, step=step, stamp=stamp)

    def _close_run(self, trial_id: str) -> None:
        record = self.trials[trial_id]
        if record.closed:
            return
        run_id, end = self._run_of(trial_id), record.end or "interrupted"
        try:
            if record.best:
                summary = {f"best_{k}": v for k, v in record.best.items() if k != "epoch"}
                summary["best_epoch"] = record.best["epoch"]
                self._log(run_id, metrics=summary)
            self._log_best_artifacts(record)
            tags = {END_TAG: end}
            if record.error:
                tags["skinsearch.error"] = record.error[:5000]
            for key, value in tags.items():
                self.client.set_tag(run_id, key, value)
        finally:
            self.client.set_terminated(run_id, status=END_STATUS[end])
        record.closed = True  # only now: a failure above is retried, whole

    def _run_of(self, trial_id: str) -> str:
        run_id = self.trials[trial_id].run_id
        if not run_id:  # its run could not be opened (MLflow was down): a failure to report
            raise ConnectionError("the trial's MLflow run was never opened")
        return run_id

    def finish(self, interrupted: bool, failed: bool = False) -> None:
        """End every run still open: unfinished trials as interrupted (as ``storage_failed``,
        FAILED, when the search stopped itself for its storage), then the parent.

        Never raises for MLflow: what could not be logged is added to ``unlogged``.
        """
        self.wait()
        unfinished = "storage_failed" if failed else "interrupted"
        for trial_id, record in self.trials.items():
            if record.end is None or not record.closed:
                try:
                    self.end_trial(trial_id, record.end or unfinished)
                except Exception as exc:  # one bad run must not leave the others RUNNING
                    self.unlogged.append(f"end_trial {trial_id}: {first_line(exc)}")
        self.wait()  # every child ended (or its failure in ``unlogged``) before the parent
        if not self.parent_id:
            return
        try:
            self._close_parent("FAILED" if failed else "KILLED" if interrupted else "FINISHED")
        except Exception as exc:
            self.unlogged.append(f"finish {self.search}: {first_line(exc)}")

    def _close_parent(self, status: str) -> None:
        ended = [r.end for r in self.trials.values()]
        counts = {end: ended.count(end) for end in END_STATUS}
        self._log(self.parent_id, metrics={f"trials_{k}": float(v) for k, v in counts.items()})
        best = self.best_trial()
        if best is not None:
            self.client.set_tag(self.parent_id, "skinsearch.best_trial", best)
            self._log(
                self.parent_id, metrics={f"best_{self.metric}": self.trials[best].best[self.metric]}
            )
        self.client.set_terminated(self.parent_id, status=status)

    def best_trial(self) -> str | None:
        """The trial id with the best epoch on the search's metric, if any reported."""
        scored = [tid for tid, r in self.trials.items() if finite(r.best.get(self.metric))]
        return self.objective.best(
            scored, lambda tid: self.trials[tid].best[self.metric], lambda tid: tid
        )

    def _log_best_artifacts(self, record: TrialRecord) -> None:
        if not record.trial_dir:
            return
        remote = is_uri(record.trial_dir)
        # only the checkpoints' state.json files are read: the models stay in the storage
        folder = fetch(record.trial_dir, only=(STATE_FILE,)) if remote else Path(record.trial_dir)
        try:
            found = best_checkpoint(folder, self.metric, self.mode)
        finally:
            if remote:
                shutil.rmtree(folder, ignore_errors=True)
        if found is None:
            return
        _, state, _ = found
        with tempfile.TemporaryDirectory() as tmp:
            write_evaluation(Path(tmp), state, f"{record.name}, epoch {state.epoch}")
            self.client.log_artifacts(record.run_id, tmp, artifact_path="best_epoch")

    def _log(
        self,
        run_id: str,
        metrics: dict[str, float] | None = None,
        params: dict[str, Any] | None = None,
        step: int = 0,
        stamp: int | None = None,
    ) -> None:
        from mlflow.entities import Metric, Param

        now = now_ms() if stamp is None else stamp
        self.client.log_batch(
            run_id,
            metrics=[
                Metric(k, float(v), now, step) for k, v in (metrics or {}).items() if finite(v)
            ],
            params=[Param(k, param_text(v)) for k, v in (params or {}).items()],
        )
