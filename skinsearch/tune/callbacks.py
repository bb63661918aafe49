"""Tune callbacks: trial events -> the MLflow tracker, on the driver."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from skinsearch._files import SpaceGuard, press_ctrl_c, write_failure_in
from skinsearch.config.objective import Objective
from skinsearch.config.plan import SearchPlan
from skinsearch.store.layout import CHECKPOINT_FILES
from skinsearch.store.trials import logged_metrics
from skinsearch.tracking.runs import SearchTracker


def tracking_callback(tracker: SearchTracker, plan: SearchPlan, location: str) -> Any:
    """A Tune callback that opens, fills and closes each trial's MLflow run through ``tracker``.

    Each run's params are the trial's whole configuration (``plan.trial_config``: the fixed
    hyperparameters too). ``location`` is the search's folder or URI: each trial's is recorded
    under it.
    """
    from ray.tune import Callback

    class TrackingCallback(Callback):
        """Forwards Tune's trial events to the MLflow tracker (on the driver).

        The tracker records each event at once and writes to MLflow on its own thread: closing
        a run uploads figures, and Tune's loop, which starts the next trial, must not wait.
        """

        def on_trial_start(
            self, iteration: int, trials: list[Any], trial: Any, **info: Any
        ) -> None:
            config = plan.trial_config(trial.config)
            folder = f"{location}/{Path(trial.path).name}"
            tracker.start_trial(trial.trial_id, str(trial), config, folder)

        def on_trial_result(
            self, iteration: int, trials: list[Any], trial: Any, result: dict[str, Any], **info: Any
        ) -> None:
            if result.get("stop_reason") == "errored":
                return  # no epoch to log: the trial failed in it (on_trial_complete ends it)
            metrics = logged_metrics(result)
            metrics["time_total_s"] = float(result.get("time_total_s", 0.0))
            tracker.log_epoch(trial.trial_id, metrics)

        def on_trial_complete(
            self, iteration: int, trials: list[Any], trial: Any, **info: Any
        ) -> None:
            last = trial.last_result or {}
            reason = last.get("stop_reason") or "stopped_by_asha"
            end = "completed" if reason == "max_epochs" else reason
            tracker.end_trial(trial.trial_id, end, last.get("error", ""))

        def on_trial_error(
            self, iteration: int, trials: list[Any], trial: Any, **info: Any
        ) -> None:
            tracker.end_trial(trial.trial_id, "errored", _error_text(trial))

    return TrackingCallback()


def _error_text(trial: Any) -> str:
    try:
        text = Path(trial.error_file).read_text() if trial.error_file else ""
    except OSError:
        text = ""
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return lines[-1].strip() if lines else "unknown error"


def space_callback(guard: SpaceGuard, tracker: SearchTracker) -> Any:
    """A Tune callback that stops the search, as Ctrl-C would (so ``--resume`` carries it on),
    once ``guard`` says the storage is nearly full or a write to it failed: in a trial, in
    Tune's own files or in MLflow's SQLite store beside them."""
    from ray.tune import Callback

    class SpaceCallback(Callback):
        def __init__(self) -> None:
            self.stopping = False

        def on_step_begin(self, iteration: int, trials: list[Any], **info: Any) -> None:
            failed = next((u for u in list(tracker.unlogged) if write_failure_in(u)), None)
            if failed is not None:
                guard.failed_write(failed)
            self._stop_if(guard.check(sum(t.status == "RUNNING" for t in trials)))

        def on_checkpoint(
            self, iteration: int, trials: list[Any], trial: Any, checkpoint: Any, **info: Any
        ) -> None:
            guard.saw_checkpoint(Path(checkpoint.path))

        def on_trial_recover(
            self, iteration: int, trials: list[Any], trial: Any, **info: Any
        ) -> None:
            self._stop_if(guard.failed_write(_error_text(trial)))

        def on_trial_error(
            self, iteration: int, trials: list[Any], trial: Any, **info: Any
        ) -> None:
            self._stop_if(guard.failed_write(_error_text(trial)))

        def _stop_if(self, reason: str) -> None:
            if reason and not self.stopping:
                self.stopping = True
                # outside Tune's loop (its clean-up) the search is ending anyway, and the
                # reason is reported whether or not this stops anything
                press_ctrl_c()

    return SpaceCallback()


def resume_callback(echo: Callable[[str], None]) -> Any:
    """A Tune callback for a resumed search: before its first step starts any trial, it mends the
    trials whose latest checkpoint is gone or incomplete (each goes on from the newest whole
    checkpoint still stored, or starts again) and says what the search goes on from, as Tune's
    restored state has it.

    Tune deletes a trial's superseded checkpoints as soon as a better one arrives, but snapshots
    its experiment state only every few seconds. A driver killed between the two, or in the
    middle of a deletion, leaves a state that names a deleted checkpoint, and Tune would fail
    that trial on every restore.
    """
    from ray.tune import Callback

    class ResumeCallback(Callback):
        def __init__(self) -> None:
            self.checked = False

        def on_step_begin(self, iteration: int, trials: list[Any], **info: Any) -> None:
            if self.checked:
                return
            self.checked = True
            for trial in trials:
                if note := _mend_lost_checkpoint(trial):
                    echo(note)
            ended = sum(t.status in ("TERMINATED", "ERROR") for t in trials)
            restored = sum(
                t.status == "PENDING" and t.latest_checkpoint_result is not None for t in trials
            )
            echo(f"resuming: {ended} trials had ended; {restored} go on from their checkpoints")

    return ResumeCallback()


def _mend_lost_checkpoint(trial: Any) -> str | None:
    # Ray's private checkpoint manager, checked against Ray 2.60: a restored trial holds no
    # public way to drop a checkpoint that is no longer in the storage
    from pyarrow.fs import FileType

    def stored(result: Any) -> bool:
        # each file, not the folder: on S3 a deletion cut short can leave the folder's marker
        # object alone, and Tune would restore the trial from an empty folder
        folder = result.checkpoint.path.rstrip("/")
        found = result.checkpoint.filesystem.get_file_info(
            [f"{folder}/{name}" for name in CHECKPOINT_FILES]
        )
        return all(info.type == FileType.File for info in found)

    latest = trial.latest_checkpoint_result
    if trial.status != "PENDING" or latest is None or stored(latest):
        return None
    manager = trial.run_metadata.checkpoint_manager
    kept = [r for r in manager._checkpoint_results if stored(r)]
    newest = max(kept, key=lambda r: r.metrics.get("training_iteration", 0), default=None)
    manager._checkpoint_results = kept
    manager._latest_checkpoint_result = newest
    trial.run_metadata.invalidate_cache()
    lost = Path(latest.checkpoint.path).name
    then = (
        f"it goes on from epoch {int(newest.metrics.get('training_iteration', 0))}"
        if newest
        else "it starts again"
    )
    return (
        f"{trial}: its last checkpoint ({lost}) was deleted, whole or in part, after the "
        f"search's last snapshot; {then}"
    )


def progress_callback(
    objective: Objective, echo: Callable[[str], None], every_s: float = 15.0
) -> Any:
    """A compact progress table every ``every_s`` seconds: counts, best so far, running trials."""
    from ray.tune import Callback

    class ProgressCallback(Callback):
        """Replaces Tune's per-trial boxes, which run to thousands of lines for a large search."""

        def __init__(self) -> None:
            self.started = time.monotonic()
            self.last = 0.0

        def on_step_end(self, iteration: int, trials: list[Any], **info: Any) -> None:
            if time.monotonic() - self.last >= every_s:
                self.last = time.monotonic()
                echo(progress_table(trials, objective, time.monotonic() - self.started))

        def on_trial_error(
            self, iteration: int, trials: list[Any], trial: Any, **info: Any
        ) -> None:
            echo(f"{trial} errored: {_error_text(trial)} (traceback: {trial.error_file})")

        def on_trial_complete(
            self, iteration: int, trials: list[Any], trial: Any, **info: Any
        ) -> None:
            last = trial.last_result or {}
            if last.get("stop_reason") == "errored":
                echo(f"{trial} errored: {last.get('error', 'unknown error')}")

        def on_experiment_end(self, trials: list[Any], **info: Any) -> None:
            echo(progress_table(trials, objective, time.monotonic() - self.started))

    return ProgressCallback()


def progress_table(trials: list[Any], objective: Objective, elapsed_s: float, rows: int = 8) -> str:
    """One status line, the best trial so far, and the running trials' latest epoch."""
    metric, mode = objective.metric, objective.mode
    statuses = [t.status for t in trials]
    counts = ", ".join(f"{statuses.count(s)} {s.lower()}" for s in sorted(set(statuses)))
    lines = [f"[{elapsed_s:5.0f}s] {len(trials)} trials: {counts}"]
    scored = [(t, t.metric_analysis[metric][mode]) for t in trials if metric in t.metric_analysis]
    found = objective.best(scored, lambda item: item[1], lambda item: item[0].trial_id)
    if found is not None:
        lines.append(f"  best so far: {found[0]} {metric}={found[1]:.4f}")
    running = [t for t in trials if t.status == "RUNNING"]
    for trial in running[:rows]:
        last = trial.last_result or {}
        if metric in last:
            lines.append(
                f"  {trial}  epoch {int(last.get('epoch', 0)):>3}  {metric}={last[metric]:.4f}"
            )
        else:  # it has not finished its first epoch yet
            lines.append(f"  {trial}  starting")
    if len(running) > rows:
        lines.append(f"  ... and {len(running) - rows} more running")
    return "\n".join(lines)
