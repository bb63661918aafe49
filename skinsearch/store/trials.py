"""A trial as Tune's own files record it (``params.json``, ``result.json``, ``error.txt``).

Tune writes these beside every trial whatever happens to MLflow or to the driver, so they are
what a resumed search and ``skinsearch sync-mlflow`` rebuild the MLflow side from.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from skinsearch.config.objective import Objective
from skinsearch.config.plan import SearchPlan
from skinsearch.store.records import TrialRecord


def result_rows(folder: Path) -> list[dict[str, Any]]:
    """The trial's per-epoch results, oldest first, one per epoch (empty when it has none).

    A trial resumed from an older checkpoint than its last result reports those epochs again;
    the later report of an epoch is the one its run went on from.
    """
    try:
        text = (folder / "result.json").read_text()
    except OSError:
        return []
    rows = [json.loads(line) for line in text.splitlines() if line.strip()]
    # an error row carries the epoch it failed in, which reported nothing else
    by_epoch = {(row.get("epoch", -index), "error" in row): row for index, row in enumerate(rows)}
    return list(by_epoch.values())


def logged_metrics(row: dict[str, Any]) -> dict[str, float]:
    """The numbers of a result row that skinsearch logs to MLflow (``epoch`` is the step)."""
    return {
        k: float(v)
        for k, v in row.items()
        if (
            k.startswith(("train_", "val_", "time_fit"))
            or k in ("epoch", "peak_rss_mb", "time_trial_s")
        )
        and isinstance(v, int | float)
        and not isinstance(v, bool)
    }


def read_trial(
    folder: Path,
    plan: SearchPlan,
    objective: Objective | None = None,
    rows: list[dict[str, Any]] | None = None,
) -> TrialRecord | None:
    """A trial of ``plan`` rebuilt from its folder (``rows``: its ``result_rows``, when read
    already), its best epoch by ``objective`` (default: the plan's); None when Tune never
    started it there."""
    try:
        config = json.loads((folder / "params.json").read_text())
    except (OSError, ValueError):
        return None
    rows = result_rows(folder) if rows is None else rows
    best = (objective or plan.objective).best_epoch(rows)
    return TrialRecord(
        run_id="",
        name=folder.name,
        config=plan.trial_config(config),
        trial_dir=str(folder),
        epochs=len(rows),
        last=logged_metrics(rows[-1]) if rows else {},
        best=logged_metrics(best),
    )


def trial_end(folder: Path, rows: list[dict[str, Any]] | None = None) -> tuple[str, str]:
    """How a trial that Tune no longer runs ended, and its error line if it failed (``rows``:
    its ``result_rows``, when read already)."""
    error = folder / "error.txt"
    if error.is_file():
        lines = [x.strip() for x in error.read_text(errors="replace").splitlines() if x.strip()]
        return "errored", lines[-1] if lines else "unknown error"
    rows = result_rows(folder) if rows is None else rows
    reason = rows[-1].get("stop_reason") if rows else None
    if reason == "errored":
        return "errored", str(rows[-1].get("error", "unknown error"))
    if reason == "max_epochs":
        return "completed", ""
    return (reason or "stopped_by_asha"), ""
