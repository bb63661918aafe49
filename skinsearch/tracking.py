"""Tracking: MLflow runs for a search and its trials, TensorBoard event files per trial.

``SearchTracker`` runs on the driver: one parent run per search, one child run per trial
(nested through ``mlflow.parentRunId``), every epoch's metrics, and at the end of a trial the
artifacts of its best epoch. ``finish`` ends every run it opened, however the search ended.
``TrialBoard`` runs inside a trial and writes its TensorBoard events.
"""

from __future__ import annotations

import json
import logging
import math
import tempfile
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from skinsearch.checkpoints import best_checkpoint, write_evaluation
from skinsearch.errors import SkinsearchError
from skinsearch.plots import confusion_figure

log = logging.getLogger(__name__)

#: How a trial ended -> MLflow run status.
END_STATUS = {
    "completed": "FINISHED",
    "early_stopped": "FINISHED",
    "stopped_by_asha": "FINISHED",
    "errored": "FAILED",
    "interrupted": "KILLED",
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


def default_tracking_uri(storage: Path) -> str:
    """The SQLite store under the storage folder (absolute, so trials and tools agree)."""
    return f"sqlite:///{(storage / 'mlflow.db').resolve()}"


@dataclass
class TrialRecord:
    """What the tracker knows of one trial."""

    run_id: str
    name: str
    config: dict[str, Any]
    trial_dir: str = ""
    epochs: int = 0
    last: dict[str, float] = field(default_factory=dict)
    best: dict[str, float] = field(default_factory=dict)  # metrics of the best epoch
    end: str | None = None
    error: str = ""


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
        from mlflow.tracking import MlflowClient

        self.client = MlflowClient(tracking_uri=tracking_uri)
        self.tracking_uri, self.search, self.metric = tracking_uri, search, metric
        self.mode, self.sign = mode, (1.0 if mode == "max" else -1.0)
        self.experiment_id = self._experiment(experiment, artifact_root)
        self.parent_id = ""
        self.trials: dict[str, TrialRecord] = {}

    def start_search(self, params: dict[str, Any], tags: dict[str, str]) -> str:
        """Open the parent run and log the search's settings."""
        run = self.client.create_run(
            self.experiment_id, run_name=self.search, tags={SEARCH_TAG: self.search, **tags}
        )
        self.parent_id = run.info.run_id
        self._log(self.parent_id, params=params)
        return self.parent_id

    def log_search_file(self, path: Path) -> None:
        """Attach a file (the resolved spec) to the parent run."""
        self.client.log_artifact(self.parent_id, str(path))

    def start_trial(self, trial_id: str, name: str, config: dict[str, Any], trial_dir: str) -> None:
        """Open a trial's child run (once: a restarted trial keeps its run)."""
        if trial_id in self.trials:
            return
        # the trial is recorded before MLflow is asked, so a tracking failure cannot hide it
        record = TrialRecord("", name, dict(config), trial_dir)
        self.trials[trial_id] = record
        run = self.client.create_run(
            self.experiment_id,
            run_name=name,
            tags={
                "mlflow.parentRunId": self.parent_id,
                SEARCH_TAG: self.search,
                TRIAL_TAG: trial_id,
                TRIAL_DIR_TAG: trial_dir,
            },
        )
        record.run_id = run.info.run_id
        self._log(record.run_id, params=config)

    def log_epoch(self, trial_id: str, metrics: dict[str, float]) -> None:
        """Log one epoch's metrics (``metrics["epoch"]`` is the step)."""
        record = self.trials[trial_id]
        step = int(metrics["epoch"])
        record.epochs = max(record.epochs, step)
        record.last = metrics
        score = metrics.get(self.metric, math.nan)
        if not record.best or self.sign * score > self.sign * record.best.get(
            self.metric, -math.inf * self.sign
        ):
            record.best = dict(metrics)
        if record.run_id:
            self._log(
                record.run_id, metrics={k: v for k, v in metrics.items() if k != "epoch"}, step=step
            )

    def end_trial(self, trial_id: str, end: str, error: str = "") -> None:
        """Close a trial's run: summary metrics, best-epoch artifacts, how it ended."""
        record = self.trials.get(trial_id)
        if record is None or record.end is not None:
            return
        record.end, record.error = end, error
        run_id = record.run_id
        if not run_id:  # MLflow never opened this trial's run
            return
        try:
            if record.best:
                summary = {f"best_{k}": v for k, v in record.best.items() if k != "epoch"}
                summary["best_epoch"] = record.best["epoch"]
                self._log(run_id, metrics=summary)
            self._log_best_artifacts(record)
            tags = {END_TAG: end}
            if error:
                tags["skinsearch.error"] = error[:5000]
            for key, value in tags.items():
                self.client.set_tag(run_id, key, value)
        finally:
            self.client.set_terminated(run_id, status=END_STATUS[end])

    def finish(self, interrupted: bool) -> None:
        """End every run still open: unfinished trials as interrupted, then the parent."""
        for trial_id, record in self.trials.items():
            if record.end is None:
                try:
                    self.end_trial(trial_id, "interrupted")
                except Exception:  # one bad run must not leave the others RUNNING
                    log.exception("could not close the MLflow run of trial %s", trial_id)
                    if record.run_id:
                        self.client.set_terminated(record.run_id, status="KILLED")
        if not self.parent_id:
            return
        ended = [r.end for r in self.trials.values()]
        counts = {end: ended.count(end) for end in END_STATUS}
        self._log(self.parent_id, metrics={f"trials_{k}": float(v) for k, v in counts.items()})
        best = self.best_trial()
        if best is not None:
            self.client.set_tag(self.parent_id, "skinsearch.best_trial", best)
            self._log(
                self.parent_id, metrics={f"best_{self.metric}": self.trials[best].best[self.metric]}
            )
        self.client.set_terminated(self.parent_id, status="KILLED" if interrupted else "FINISHED")

    def best_trial(self) -> str | None:
        """The trial id with the best epoch on the search's metric, if any reported."""
        scored = [
            (tid, r.best[self.metric])
            for tid, r in self.trials.items()
            if _finite(r.best.get(self.metric))
        ]
        if not scored:
            return None
        return max(scored, key=lambda item: self.sign * item[1])[0]

    def _log_best_artifacts(self, record: TrialRecord) -> None:
        found = best_checkpoint(Path(record.trial_dir), self.metric, self.mode)
        if found is None:
            return
        _, state, _ = found
        with tempfile.TemporaryDirectory() as tmp:
            write_evaluation(Path(tmp), state, f"{record.name}, epoch {state['epoch']}")
            self.client.log_artifacts(record.run_id, tmp, artifact_path="best_epoch")

    def _experiment(self, name: str, artifact_root: Path | None) -> str:
        existing = self.client.get_experiment_by_name(name)
        if existing is not None:
            if existing.lifecycle_stage == "deleted":
                self.client.restore_experiment(existing.experiment_id)
            return str(existing.experiment_id)
        location = (artifact_root / name).resolve().as_uri() if artifact_root else None
        return str(self.client.create_experiment(name, artifact_location=location))

    def _log(
        self,
        run_id: str,
        metrics: dict[str, float] | None = None,
        params: dict[str, Any] | None = None,
        step: int = 0,
    ) -> None:
        from mlflow.entities import Metric, Param

        now = int(time.time() * 1000)
        self.client.log_batch(
            run_id,
            metrics=[
                Metric(k, float(v), now, step) for k, v in (metrics or {}).items() if _finite(v)
            ],
            params=[Param(k, _param_text(v)) for k, v in (params or {}).items()],
        )


class TrialBoard:
    """TensorBoard events for one trial: scalars, images, report, confusion matrix, histograms."""

    def __init__(self, logdir: str | Path) -> None:
        from torch.utils.tensorboard import SummaryWriter

        self.writer = SummaryWriter(str(logdir))

    def log_epoch(
        self,
        epoch: int,
        metrics: dict[str, float],
        improved: bool,
        evaluation: Any,
        model: Any = None,
        val_images: np.ndarray | None = None,
    ) -> None:
        """Write one epoch. ``model`` and ``val_images`` are logged when given (first epoch)."""
        for key, value in metrics.items():
            if key != "epoch" and _finite(value):
                self.writer.add_scalar(key, value, epoch)
        if val_images is not None:
            self.writer.add_images("val/first_batch", val_images, epoch, dataformats="NHWC")
        if model is not None:
            for name, param in model.named_parameters():
                self.writer.add_histogram(f"weights/{name}", param.detach().cpu(), epoch)
        if improved:
            text = "    " + evaluation.report_text().replace("\n", "\n    ")  # markdown code block
            self.writer.add_text("classification_report", text, epoch)
            self.writer.add_figure(
                "confusion_matrix",
                confusion_figure(evaluation.confusion, evaluation.class_names, f"epoch {epoch}"),
                epoch,
            )
        self.writer.flush()

    def close(self) -> None:
        """Flush and close the event file."""
        self.writer.close()


def _finite(value: Any) -> bool:
    return isinstance(value, int | float) and math.isfinite(value)


def _param_text(value: Any) -> str:
    return json.dumps(value) if isinstance(value, list | tuple | dict) else str(value)
