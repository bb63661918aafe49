"""Ray's and Tune's log lines, trimmed to what a skinsearch user needs: skinsearch says itself
what stopped a search, how to resume it and where a trial's error is."""

from __future__ import annotations

import logging
from typing import Any


def quiet_tune_logs() -> None:
    """Filter Tune's loggers (idempotent: a filter added twice is applied once)."""
    # Tune logs each failed trial's whole traceback; the progress callback prints one line with
    # the reason and the path of the trial's error file instead.
    logging.getLogger("ray.tune.execution.tune_controller").addFilter(_drop_trial_tracebacks)
    # on Ctrl-C, SIGTERM or a full disk skinsearch says what stopped and how to resume (with
    # its own --resume, not Tune's Tuner.restore); a trial that never started has no results
    for name in ("ray.tune.tune", "ray.tune.analysis.experiment_analysis"):
        logging.getLogger(name).addFilter(_drop_stop_notices)
    # a failed upload of Tune's state (a full disk) is one line, not a traceback per attempt
    for name in (
        "ray.tune.tune",
        "ray.tune.execution.experiment_state",
        "ray.train._internal.syncer",
    ):
        logging.getLogger(name).addFilter(_one_line)


def quiet_ray_start() -> None:
    """Drop Ray's timestamped "Token authentication is enabled" warning on a local start:
    skinsearch's own "Ray: ..." line says where the token is."""
    logging.getLogger("ray._private.authentication.authentication_token_setup").addFilter(
        _drop_token_notice
    )


def _drop_token_notice(record: logging.LogRecord) -> bool:
    return not str(record.msg).startswith("Token authentication is enabled for this Ray cluster")


def quiet_tune_banner() -> None:
    """Stop Tune printing its "Configuration for experiment" box and "View detailed results
    here" at the start of every search, whatever the verbosity: skinsearch's first lines say
    what runs and where its results go.

    Ray's private reporter class, checked against Ray 2.60, where ``experiment_started`` only
    prints.
    """
    from ray.tune.experimental.output import TuneTerminalReporter

    def experiment_started(self: Any, *args: Any, **kwargs: Any) -> None:
        return None

    TuneTerminalReporter.experiment_started = experiment_started  # type: ignore[method-assign]


def _drop_trial_tracebacks(record: logging.LogRecord) -> bool:
    if str(record.msg).startswith("Trial task failed"):
        return False
    # After --resume, Tune may try to delete an old checkpoint that the first driver had already
    # deleted after its last snapshot: nothing is lost, and the traceback would only alarm.
    error = record.exc_info[1] if record.exc_info else None
    return not (
        "Error handling checkpoint" in str(record.msg) and isinstance(error, FileNotFoundError)
    )


_STOP_NOTICES = ("Stop signal received", "Experiment has been interrupted", "Failed to fetch")


def _drop_stop_notices(record: logging.LogRecord) -> bool:
    return not str(record.msg).startswith(_STOP_NOTICES)


def _one_line(record: logging.LogRecord) -> bool:
    error = record.exc_info[1] if record.exc_info else None
    text = record.getMessage().split("\n", 1)[0].rstrip(": ")
    if error is not None:
        text += f" ({error.__class__.__name__}: {str(error).strip().splitlines()[-1][:200]})"
    elif "Traceback" in record.getMessage():  # a traceback formatted into the message itself
        text += " (" + record.getMessage().strip().splitlines()[-1][:200] + ")"
    record.msg, record.args = text, ()
    record.exc_info = record.exc_text = record.stack_info = None
    return True
