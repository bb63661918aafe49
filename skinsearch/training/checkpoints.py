"""Reading a trial's checkpoints after the fact, and writing a checkpoint's evaluation as files.

``Trainer.save`` writes each checkpoint with a self-describing ``state.json``; tracking (the best
epoch's MLflow artifacts) and export (the bundle) both read checkpoints through here.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from skinsearch.config.objective import Objective
from skinsearch.store.layout import STATE_FILE
from skinsearch.store.records import CheckpointState
from skinsearch.training.metrics import Evaluation
from skinsearch.training.plots import save_confusion_png

Checkpoint = tuple[Path, CheckpointState]  # folder, its state.json


def kept_checkpoints(trial_dir: Path) -> list[Checkpoint]:
    """The checkpoints Tune kept for a trial whose ``state.json`` is whole, oldest first."""
    found = []
    for folder in sorted(trial_dir.glob("checkpoint_*")):
        try:
            state = CheckpointState.model_validate_json((folder / STATE_FILE).read_text())
        except (OSError, ValueError):  # none, or one whose copy to the storage did not finish
            continue
        found.append((folder, state))
    return found


def best_checkpoint(
    trial_dir: Path, metric: str, mode: str, epoch: int | None = None
) -> tuple[Path, CheckpointState, str] | None:
    """The checkpoint of ``epoch`` if it was kept, else the kept one scoring best on ``metric``.

    Returns:
        The folder, its state, and a note when ``epoch`` was asked for but not kept; None when the
        trial has no checkpoint.
    """
    kept = kept_checkpoints(trial_dir)
    if not kept:
        return None
    for folder, state in kept:
        if state.epoch == epoch:
            return folder, state, ""
    folder, state = Objective.of(metric, mode).rank(
        kept, lambda fs: fs[1].metrics.get(metric), lambda fs: fs[1].epoch
    )[0]
    note = ""
    if epoch is not None:
        note = (
            f"epoch {epoch} was not checkpointed (checkpoints follow the search's metric); "
            f"exporting epoch {state.epoch}, the best kept one by {metric}"
        )
    return folder, state, note


def write_evaluation(folder: Path, state: CheckpointState, title: str) -> None:
    """``confusion_matrix.png``, ``classification_report.txt``/``.json`` and ``metrics.json``
    for the epoch a checkpoint holds."""
    evaluation = state.evaluation
    save_confusion_png(
        evaluation["confusion"],
        evaluation["class_names"],
        str(folder / "confusion_matrix.png"),
        title,
    )
    fields: dict[str, Any] = {k: (math.nan if v is None else v) for k, v in evaluation.items()}
    ev = Evaluation(**fields)
    (folder / "classification_report.txt").write_text(ev.report_text())
    (folder / "classification_report.json").write_text(json.dumps(ev.report(), indent=1))
    (folder / "metrics.json").write_text(json.dumps(state.metrics, indent=1))
