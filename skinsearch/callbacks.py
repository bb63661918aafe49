"""Tune callbacks: trial events -> the MLflow tracker, on the driver."""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

from skinsearch import space
from skinsearch.tracking import SearchTracker

log = logging.getLogger(__name__)


def _guarded(hook: Callable[..., None]) -> Callable[..., None]:
    @functools.wraps(hook)
    def wrapper(*args: Any, **kwargs: Any) -> None:
        try:
            hook(*args, **kwargs)
        except Exception as exc:  # a tracking failure must not stop the search
            log.warning("MLflow tracking failed in %s: %s", hook.__name__, exc)

    return wrapper


def tracking_callback(tracker: SearchTracker, fixed: dict[str, Any]) -> Any:
    from ray.tune import Callback

    class TrackingCallback(Callback):
        """Forwards Tune's trial events to the MLflow tracker (on the driver).

        A tracking failure is logged and the search goes on: Tune's own result files still
        hold every metric, and ``best`` falls back on them.
        """

        @_guarded
        def on_trial_start(
            self, iteration: int, trials: list[Any], trial: Any, **info: Any
        ) -> None:
            config = {**fixed, **space.decode_config(trial.config)}
            tracker.start_trial(trial.trial_id, str(trial), config, str(trial.path))

        @_guarded
        def on_trial_result(
            self, iteration: int, trials: list[Any], trial: Any, result: dict[str, Any], **info: Any
        ) -> None:
            metrics = {
                k: v
                for k, v in result.items()
                if (k.startswith(("train_", "val_")) or k == "epoch") and isinstance(v, int | float)
            }
            metrics["time_total_s"] = float(result.get("time_total_s", 0.0))
            tracker.log_epoch(trial.trial_id, metrics)

        @_guarded
        def on_checkpoint(
            self, iteration: int, trials: list[Any], trial: Any, checkpoint: Any, **info: Any
        ) -> None:
            tracker.add_checkpoint(trial.trial_id, checkpoint.path)

        @_guarded
        def on_trial_complete(
            self, iteration: int, trials: list[Any], trial: Any, **info: Any
        ) -> None:
            reason = (trial.last_result or {}).get("stop_reason") or "stopped_by_asha"
            tracker.end_trial(trial.trial_id, "completed" if reason == "max_epochs" else reason)

        @_guarded
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
