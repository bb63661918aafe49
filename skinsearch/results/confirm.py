"""``skinsearch best --confirm K --seeds S [--folds F]``, or a search file's ``confirm:`` block
after ``skinsearch run``: a winner chosen on a mean of runs.

With a hundred or so validation images, the best of many single runs is partly luck. This retrains
the top K configurations of a search S times each with fresh seeds (a new search named
``<search>-confirm``, no ASHA, so every run trains to its own end), reports mean and standard
deviation of every metric at each run's best epoch, and picks the configuration with the best
mean. With F folds, each seed runs F times instead, once per k-fold split of train and val
together (``data.decode.fold_splits``, in whole groups where ``data.group_column`` is set), so
every image is validated on once per seed. The model
exported for the winner is its run closest to the mean: a typical model of the winning
configuration, not its luckiest run. The confirmed search keeps ``confirmation.json`` (the plan,
where the runs are, the winner), from which ``best`` and ``report`` show the confirmation again.
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from skinsearch._files import write_atomic
from skinsearch.config.plan import ConfirmPlan
from skinsearch.config.spec import SchedulerSpec
from skinsearch.errors import Interrupted, ResultsError
from skinsearch.store.layout import CONFIRMATION_FILE
from skinsearch.store.records import ConfirmationRecord, ConfirmedWinner, TrialRecord
from skinsearch.store.search import Search
from skinsearch.store.searches import load_search
from skinsearch.store.storage import Storage
from skinsearch.tracking.client import finite

if TYPE_CHECKING:
    from skinsearch.tune.tuner import RunOptions

REPORTED = ["val_acc", "val_balanced_acc", "val_macro_f1", "val_auc", "val_loss"]
SEED_STEP = 1000  # seeds of the confirmation runs: the trial's seed + 1000, + 2000, ...


@dataclass
class Candidate:
    """One configuration retrained over several seeds."""

    config: dict[str, Any]  # without the seed
    source_trial: str  # the search trial it came from
    runs: list[TrialRecord] = field(default_factory=list)  # its runs in the confirmation

    def mean_std(self, metric: str) -> tuple[float, float]:
        """Mean and standard deviation over its runs of ``metric`` at each run's best epoch."""
        values = [run.best[metric] for run in self.runs if finite(run.best.get(metric))]
        if not values:
            return math.nan, math.nan
        return float(np.mean(values)), float(np.std(values, ddof=1)) if len(values) > 1 else 0.0


@dataclass
class Confirmation:
    """The outcome of a confirmation."""

    search: str  # the confirmation search's name
    plan: ConfirmPlan
    candidates: list[Candidate]  # best mean first
    representative: TrialRecord  # the winner's run closest to its mean


def top_configs(search: Search, plan: ConfirmPlan) -> list[TrialRecord]:
    """The ``plan.k`` best trials of a search by their best epoch on the plan's metric."""
    ranked = search.ranked(plan.objective)
    if not ranked:
        raise ResultsError(
            f"no trial of search {search.name!r} has reported {plan.metric} yet; nothing to confirm"
        )
    return ranked[: plan.k]


def confirm(
    search: Search,
    plan: ConfirmPlan,
    run: Callable[[Any, list[dict[str, Any]], str], Path],
    echo: Callable[[str], None] = print,
) -> Confirmation:
    """Retrain the top configurations as ``plan`` says; see the module docstring.

    ``run(spec, configs, name)`` runs a search of exactly ``configs`` (a ``fold`` key in each
    when ``plan.folds``) and returns its folder.
    """
    top = top_configs(search, plan)
    configs = [
        {
            **_configuration(trial.config),
            "seed": int(trial.config.get("seed", 0)) + SEED_STEP * (s + 1),
            **({"fold": f} if plan.folds else {}),
        }
        for trial in top
        for s in range(plan.seeds)
        for f in range(plan.folds or 1)
    ]
    echo(
        f"confirming the top {len(top)} of search {search.name} by {plan.metric}: "
        f"{plan.runs_text()} each, {len(configs)} runs, no early stopping across runs"
    )
    confirm_spec = search.spec.model_copy(
        update={"scheduler": SchedulerSpec(type="none"), "confirm": None}
    )
    folder = run(confirm_spec, configs, f"{search.name}-confirm")
    result = collect(search, Search.load(folder), plan)
    save_confirmation(search.folder, result)
    return result


def collect(search: Search, runs: Search, plan: ConfirmPlan) -> Confirmation:
    """The confirmation of ``search`` whose runs are the search ``runs``: grouped by
    configuration, best mean first."""
    metric = plan.metric
    candidates = [Candidate(_configuration(t.config), t.name) for t in top_configs(search, plan)]
    by_key = {_key(c.config): c for c in candidates}
    for record in runs.trials(plan.objective):
        candidate = by_key.get(_key(_configuration(record.config)))
        if candidate is not None and record.best:
            candidate.runs.append(record)
    scored = [c for c in candidates if c.runs]
    if not scored:
        raise ResultsError(
            f"no run of the confirmation {runs.name} reported {metric} (each failed run's "
            f"error is in its trial folder); search {search.name} is kept: try again "
            f"with skinsearch best --name {search.name} --metric {metric} "
            f"--confirm {plan.k} --seeds {plan.seeds}"
            + (f" --folds {plan.folds}" if plan.folds else "")
        )
    # a tie of means goes to the configuration that ranked first in the search
    order = {id(c): i for i, c in enumerate(candidates)}
    scored = plan.objective.rank(scored, lambda c: c.mean_std(metric)[0], lambda c: order[id(c)])
    winner = scored[0]
    mean = winner.mean_std(metric)[0]
    representative = min(winner.runs, key=lambda r: abs(r.best.get(metric, math.inf) - mean))
    return Confirmation(runs.name, plan, scored, representative)


def save_confirmation(experiment_dir: Path, result: Confirmation) -> Path:
    """Write ``confirmation.json`` in the confirmed search's folder: the plan, where it ran and
    the winner, so that ``best`` by the same metric shows the confirmed winner from then on."""
    winner = result.candidates[0]
    mean, std = winner.mean_std(result.plan.metric)
    record = ConfirmationRecord(
        **dataclasses.asdict(result.plan),
        confirmed_in=result.search,
        winner=ConfirmedWinner(
            from_trial=winner.source_trial, mean=_or_none(mean), std=_or_none(std)
        ),
        representative=result.representative.name,
    )
    path = experiment_dir / CONFIRMATION_FILE
    write_atomic(path, record.model_dump_json(indent=1))
    return path


def show_and_export(
    search: Search,
    result: Confirmation,
    export_dir: Path | None,
    force: bool,
    echo: Callable[[str], None] = print,
) -> None:
    """Print the candidates and the winner, and export the winner's run closest to its mean
    to ``export_dir`` (its ``config.yaml`` records the protocol)."""
    from skinsearch.results.export import export_bundle, exported_lines, record_held_out
    from skinsearch.results.select import BestTrial, TrialScore
    from skinsearch.training.checkpoints import best_checkpoint

    plan = result.plan
    metric, mode = plan.metric, plan.mode
    winner = result.candidates[0]
    mean, std = winner.mean_std(metric)
    searched = sorted(
        name
        for name in winner.config
        if len({repr(c.config.get(name)) for c in result.candidates}) > 1
    )
    echo(f"\nconfirmed over {plan.runs_text()} each (mean ± std at each run's best epoch):")
    for line in table(result, searched):
        echo(line)
    run = result.representative
    folder, value, epoch = Path(run.trial_dir), run.best[metric], int(run.best["epoch"])
    echo(
        f"winner: the configuration of {winner.source_trial}, {metric} {mean:.4f} ± {std:.4f}; "
        f"its run closest to the mean is {run.name} ({metric} {value:.4f}, epoch {epoch})"
    )
    if export_dir is None:
        return
    found = best_checkpoint(folder, metric, mode, epoch)
    if found is None:
        raise ResultsError(f"{folder} has no checkpoint to export")
    checkpoint, state, _ = found
    score = TrialScore(run.name, folder, value, epoch)
    best = BestTrial(result.search, metric, mode, score, "tune", len(winner.runs))
    protocol = {
        "protocol": f"mean over {plan.runs_text()} of the top {plan.k} configurations",
        "mean": mean,
        "std": std,
        "seeds": sorted({int(r.config.get("seed", 0)) for r in winner.runs}),
        "folds": plan.folds,
        "searched_in": search.name,
        "confirmed_in": result.search,
        "exported_run": "the winner's run closest to its mean",
    }
    path = export_bundle(checkpoint, state, best, export_dir, force, protocol)
    for line in [*exported_lines(path), *record_held_out(path, checkpoint.parents[1])]:
        echo(line)


def cells(result: Confirmation, searched: list[str]) -> list[list[str]]:
    """The candidates as a header and rows of text cells: rank, source trial, runs, mean ± std
    of each reported metric, and the ``searched`` hyperparameters."""
    header = ["rank", "from trial", "runs", *REPORTED, *searched]
    rows = []
    for i, c in enumerate(result.candidates, 1):
        row = [str(i), c.source_trial, str(len(c.runs))]
        for m in REPORTED:
            mean, std = c.mean_std(m)
            row.append(f"{mean:.4f} ± {std:.4f}" if math.isfinite(mean) else "-")
        row += [_short(c.config.get(n)) for n in searched]
        rows.append(row)
    return [header, *rows]


def table(result: Confirmation, searched: list[str]) -> list[str]:
    """The candidates as aligned text lines (``cells``)."""
    lines = cells(result, searched)
    widths = [max(len(x) for x in col) for col in zip(*lines, strict=True)]
    return [
        "  ".join(x.ljust(w) for x, w in zip(line, widths, strict=True)).rstrip() for line in lines
    ]


def _configuration(config: dict[str, Any]) -> dict[str, Any]:
    # what is being confirmed: the hyperparameters, without the seed and the fold of a run
    return {n: v for n, v in config.items() if n not in ("seed", "fold")}


def _key(config: dict[str, Any]) -> str:
    return json.dumps(config, sort_keys=True, default=str)


def _or_none(value: float) -> float | None:
    return value if math.isfinite(value) else None


def _short(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def confirm_search(
    search: Search,
    plan: ConfirmPlan,
    options: RunOptions,
    carry_on: str | None = None,
    export_dir: Path | None = None,
    force: bool = False,
    echo: Callable[[str], None] = print,
) -> Confirmation:
    """Confirm a search with its runs as a real search in ``options.storage`` (named
    ``<search>-confirm``, numbered if taken, on the Ray and the CPUs/GPUs ``options`` name),
    tracked where the search was; then ``show_and_export``. With ``carry_on``, the runs go on in
    that interrupted confirmation search, whose finished runs are kept, when it was started for
    as many runs over the same folds; else a new one starts.

    Raises:
        Interrupted: on Ctrl-C, with where the finished runs are.
    """
    from skinsearch.store.searches import new_search_name
    from skinsearch.tune.tuner import run_search

    storage = options.storage

    def run(spec: Any, configs: list[dict[str, Any]], name: str) -> Path:
        if carry_on is not None and _started_for(storage.folder / carry_on, configs, plan):
            name, resume = carry_on, True
        else:
            name, resume = new_search_name(storage, name, explicit=False), False
        confirm_options = dataclasses.replace(
            options,
            name=name,
            mlflow_uri=options.mlflow_uri or search.record.tracking_uri,
            max_trials=None,
            resume=resume,
            configs=configs,
            folds=plan.folds,
            confirms=search.name,
        )
        outcome = run_search(spec, confirm_options, echo=echo)
        if outcome.interrupted:
            raise Interrupted(
                "nothing was chosen; the confirmation's finished runs are kept in "
                f"{storage.location(confirm_options.name)}"
            )
        if export_dir is not None:
            storage.pull(confirm_options.name)  # a URI's models, for the export
        return outcome.experiment_dir

    result = confirm(search, plan, run, echo)
    storage.push(search.folder / CONFIRMATION_FILE)
    show_and_export(search, result, export_dir, force, echo)
    return result


def _started_for(folder: Path, configs: list[dict[str, Any]], plan: ConfirmPlan) -> bool:
    # an interrupted confirmation of another plan (an earlier `best --confirm`) is not carried on
    started = load_search(folder)
    return started.trials == len(configs) and started.folds == plan.folds


def recall(storage: Storage, search: Search, metric: str, models: bool) -> Confirmation | None:
    """The search's saved confirmation when it chose by ``metric``, read back from the search it
    ran in (pulled first from a URI, with its models when ``models``); else None."""
    saved = search.confirmation()
    if saved is None or saved.metric != metric:
        return None
    storage.pull(saved.confirmed_in, models=models)
    folder = storage.folder / saved.confirmed_in
    if not folder.is_dir():
        raise ResultsError(
            f"search {search.name} was confirmed in {saved.confirmed_in!r}, which is not under "
            f"{storage}; run `skinsearch best --confirm {saved.k}` again to redo it"
        )
    return collect(search, Search.load(folder), saved.plan)
