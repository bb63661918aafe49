"""After a search: find the best trial and show it (``export.py`` exports it, ``predict.py`` reads it).

The best trial is the one whose best epoch scores best on the chosen metric. Scores come from
MLflow (the trials' child runs) and, where MLflow cannot answer, from Tune's ``result.json`` files.
Weights come from the trial's checkpoints, which describe themselves (``state.json``).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from skinsearch.config.objective import Objective
from skinsearch.errors import ResultsError
from skinsearch.store.search import Search
from skinsearch.store.storage import basename
from skinsearch.store.trials import result_rows
from skinsearch.tracking.client import best_epochs, default_tracking_uri


@dataclass
class TrialScore:
    """One trial's best epoch on a metric."""

    trial_id: str
    trial_dir: Path
    value: float
    epoch: int
    metrics: dict[str, float] = field(default_factory=dict)


@dataclass
class BestTrial:
    """The winner of a search on a metric, with where its numbers came from."""

    search: str
    metric: str
    mode: str
    score: TrialScore
    source: str  # "mlflow" or "tune"
    trials_scored: int
    note: str = ""


def find_best(search: Search, metric: str, mode: str, tracking_uri: str | None = None) -> BestTrial:
    """Rank a search's trials by their best epoch on ``metric`` (see the module docstring).

    Raises:
        ResultsError: when no trial of the search has reported ``metric``.
    """
    objective, folder, note = Objective.of(metric, mode), search.folder, ""
    try:
        uri = tracking_uri or search.record.tracking_uri or default_tracking_uri(folder.parent)
        scores = [
            # the trial's folder under this search's (the tag may name a URI)
            TrialScore(r.trial_id, folder / basename(r.trial_dir), r.value, r.epoch)
            for r in best_epochs(uri, search.spec.name, search.name, objective)
        ]
        source = "mlflow"
    except Exception as exc:  # MLflow unreachable or emptied: Tune's files still hold the results
        scores, source, note = [], "tune", f"MLflow could not be read ({exc.__class__.__name__}); "
    if not scores:
        scores, source = _scores_from_tune(folder, objective), "tune"
    best = objective.best(scores, lambda s: s.value, lambda s: s.trial_id)
    if best is None:
        raise ResultsError(
            f"no trial of search {search.name!r} has reported {metric} yet "
            f"(under {folder}); wait for a trial to finish an epoch, or check --metric"
        )
    return BestTrial(search.name, metric, mode, best, source, len(scores), note)


def show_best(
    search: Search,
    metric: str,
    mode: str,
    tracking_uri: str | None,
    export_dir: Path | None,
    force: bool,
    echo: Callable[[str], None] = print,
) -> None:
    """Print the best single trial (``find_best``): its epoch's metrics and its configuration;
    with ``export_dir``, export its checkpoint of that epoch there."""
    from skinsearch.results.export import export_bundle, exported_lines, record_held_out
    from skinsearch.training.checkpoints import best_checkpoint

    result = find_best(search, metric, mode, tracking_uri)
    score = result.score
    echo(
        f"search {result.search}: best of {result.trials_scored} trials by {metric} ({mode}), "
        f"from {result.source}"
    )
    if result.note:
        echo(f"note: {result.note}using Tune's results")
    echo(f"trial {score.trial_id}, epoch {score.epoch}: {metric} = {score.value:.4f}")
    found = best_checkpoint(score.trial_dir, metric, mode, score.epoch)
    if found is None:
        raise ResultsError(
            f"trial folder {score.trial_dir} has no checkpoint; it may have failed in its first "
            "epoch"
        )
    checkpoint, state, note = found
    metrics = epoch_metrics(score) or {k: v for k, v in state.metrics.items() if v is not None}
    shown = [
        f"{k}={v:.4f}"
        for k, v in metrics.items()
        if not k.startswith("val_recall_") and isinstance(v, float)
    ]
    echo("metrics: " + "  ".join(shown))
    echo("config: " + "  ".join(f"{k}={v}" for k, v in state.hparams.items()))
    if note:
        echo(f"note: {note}")
    if export_dir is not None:
        path = export_bundle(checkpoint, state, result, export_dir, force)
        for line in [*exported_lines(path), *record_held_out(path, checkpoint.parents[1])]:
            echo(line)


def _scores_from_tune(experiment_dir: Path, objective: Objective) -> list[TrialScore]:
    metric, scores = objective.metric, []
    for result_file in sorted(experiment_dir.glob("*/result.json")):
        rows = [
            r
            for r in result_rows(result_file.parent)
            if isinstance(r.get(metric), int | float) and math.isfinite(r[metric])
        ]
        if not rows:
            continue
        top = objective.best_epoch(rows)
        metrics = {
            k: v
            for k, v in top.items()
            if k.startswith(("val_", "train_")) and isinstance(v, int | float)
        }
        scores.append(
            TrialScore(
                str(top["trial_id"]),
                result_file.parent,
                float(top[metric]),
                int(top["epoch"]),
                metrics=metrics,
            )
        )
    return scores


def epoch_metrics(score: TrialScore) -> dict[str, float]:
    """All metrics of the trial's best epoch, from Tune's results of that trial."""
    if score.metrics:
        return score.metrics
    for row in result_rows(score.trial_dir):
        if row.get("epoch") == score.epoch:
            return {
                k: v
                for k, v in row.items()
                if k.startswith(("val_", "train_")) and isinstance(v, int | float)
            }
    return {}
