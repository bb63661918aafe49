"""``skinsearch best --confirm K --seeds S [--folds F]``, or a search file's ``confirm:`` block
after ``skinsearch run``: a winner chosen on a mean of runs.

With a hundred or so validation images, the best of many single runs is partly luck. This retrains
the top K configurations of a search S times each with fresh seeds (a new search named
``<search>-confirm``, no ASHA, so every run trains to its own end), reports mean and standard
deviation of every metric at each run's best epoch, and picks the configuration with the best
mean. With F folds, each seed runs F times instead, once per k-fold split of train and val
together (``data.decode.fold_splits``), so every image is validated on once per seed. The model
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
from skinsearch.config import space
from skinsearch.config.objective import Objective
from skinsearch.config.spec import SchedulerSpec, SearchSpec
from skinsearch.errors import Interrupted, ResultsError
from skinsearch.store.layout import CONFIRMATION_FILE
from skinsearch.store.searches import load_search
from skinsearch.store.storage import Storage
from skinsearch.store.trials import read_trial
from skinsearch.tracking.client import finite

if TYPE_CHECKING:
    from skinsearch.tune.tuner import RunOptions

REPORTED = ["val_acc", "val_balanced_acc", "val_macro_f1", "val_auc", "val_loss"]
SEED_STEP = 1000  # seeds of the confirmation runs: the trial's seed + 1000, + 2000, ...


@dataclass(frozen=True)
class ConfirmPlan:
    """How to confirm: the top ``k`` configurations by ``metric``, each run ``seeds`` times
    (and, with ``folds``, once per k-fold split for each seed)."""

    k: int
    seeds: int
    metric: str
    mode: str
    folds: int | None = None

    @classmethod
    def from_spec(cls, spec: SearchSpec) -> ConfirmPlan:
        """The plan of a search file's ``confirm:`` block, by the search's own metric."""
        assert spec.confirm is not None
        c = spec.confirm
        return cls(c.top, c.resolved_seeds, spec.train.metric, spec.train.resolved_mode, c.folds)

    def runs_text(self) -> str:
        """How each configuration is rerun, in words: "3 seeds", "5 folds of train+val", ..."""
        seeds = f"{self.seeds} seed{'s' if self.seeds != 1 else ''}"
        if not self.folds:
            return seeds
        folds = f"{self.folds} folds of train+val"
        return folds if self.seeds == 1 else f"{seeds} × {folds}"


@dataclass
class Candidate:
    """One configuration retrained over several seeds."""

    config: dict[str, Any]  # without the seed
    source_trial: str  # the search trial it came from
    runs: list[tuple[Path, dict[str, float]]] = field(default_factory=list)  # folder, best row

    def mean_std(self, metric: str) -> tuple[float, float]:
        values = [row[metric] for _, row in self.runs if finite(row.get(metric))]
        if not values:
            return math.nan, math.nan
        return float(np.mean(values)), float(np.std(values, ddof=1)) if len(values) > 1 else 0.0


@dataclass
class Confirmation:
    """The outcome of a confirmation."""

    search: str  # the confirmation search's name
    plan: ConfirmPlan
    candidates: list[Candidate]  # best mean first
    representative: tuple[Path, dict[str, float]]  # the winner's run closest to its mean


def top_configs(
    experiment_dir: Path, k: int, metric: str, mode: str
) -> list[tuple[str, dict[str, Any]]]:
    """The ``k`` best trials of a search by their best epoch on ``metric``: (name, config)."""
    saved, spec = load_search(experiment_dir)
    fixed = space.fixed_hparams(spec)
    objective = Objective.of(metric, mode)
    records = [
        r
        for folder in sorted(experiment_dir.glob("trial_*/"))
        if (r := read_trial(folder, metric, mode, fixed)) is not None and finite(r.best.get(metric))
    ]
    if not records:
        raise ResultsError(
            f"no trial of search {saved.search!r} has reported {metric} yet; nothing to confirm"
        )
    ranked = objective.rank(records, lambda r: r.best[metric], lambda r: r.name)
    return [(r.name, r.config) for r in ranked[:k]]


def confirm(
    experiment_dir: Path,
    plan: ConfirmPlan,
    run: Callable[[Any, list[dict[str, Any]], str], Path],
    echo: Callable[[str], None] = print,
) -> Confirmation:
    """Retrain the top configurations as ``plan`` says; see the module docstring.

    ``run(spec, configs, name)`` runs a search of exactly ``configs`` (a ``fold`` key in each
    when ``plan.folds``) and returns its folder.
    """
    saved, spec = load_search(experiment_dir)
    metric, seeds, folds = plan.metric, plan.seeds, plan.folds
    top = top_configs(experiment_dir, plan.k, metric, plan.mode)
    configs = [
        {
            **_configuration(config),
            "seed": int(config.get("seed", 0)) + SEED_STEP * (s + 1),
            **({"fold": f} if folds else {}),
        }
        for _, config in top
        for s in range(seeds)
        for f in range(folds or 1)
    ]
    echo(
        f"confirming the top {len(top)} of search {saved.search} by {metric}: "
        f"{plan.runs_text()} each, {len(configs)} runs, no early stopping across runs"
    )
    confirm_spec = spec.model_copy(
        update={"scheduler": SchedulerSpec(type="none"), "confirm": None}
    )
    folder = run(confirm_spec, configs, f"{saved.search}-confirm")
    result = collect(experiment_dir, folder, plan)
    save_confirmation(experiment_dir, result)
    return result


def collect(experiment_dir: Path, folder: Path, plan: ConfirmPlan) -> Confirmation:
    """The confirmation of search ``experiment_dir`` that ran in ``folder``: its runs grouped by
    configuration, best mean first."""
    _, spec = load_search(experiment_dir)
    metric, mode = plan.metric, plan.mode
    top = top_configs(experiment_dir, plan.k, metric, mode)
    candidates = [Candidate(_configuration(config), name) for name, config in top]
    fixed = space.fixed_hparams(spec)
    by_key = {_key(c.config): c for c in candidates}
    for trial_dir in sorted(folder.glob("trial_*/")):
        record = read_trial(trial_dir, metric, mode, fixed)
        if record is None or not record.best:
            continue
        candidate = by_key.get(_key(_configuration(record.config)))
        if candidate is not None:
            candidate.runs.append((trial_dir, record.best))
    scored = [c for c in candidates if c.runs]
    if not scored:
        raise ResultsError(
            f"no run of the confirmation {folder.name} reported {metric} (each failed run's "
            f"error is in its trial folder); search {experiment_dir.name} is kept: try again "
            f"with skinsearch best --name {experiment_dir.name} --metric {metric} "
            f"--confirm {plan.k} --seeds {plan.seeds}"
            + (f" --folds {plan.folds}" if plan.folds else "")
        )
    # a tie of means goes to the configuration that ranked first in the search
    order = {id(c): i for i, c in enumerate(candidates)}
    scored = Objective.of(metric, mode).rank(
        scored, lambda c: c.mean_std(metric)[0], lambda c: order[id(c)]
    )
    winner = scored[0]
    mean = winner.mean_std(metric)[0]
    representative = min(winner.runs, key=lambda run: abs(run[1].get(metric, math.inf) - mean))
    return Confirmation(folder.name, plan, scored, representative)


def save_confirmation(experiment_dir: Path, result: Confirmation) -> Path:
    """Write ``confirmation.json`` in the confirmed search's folder: the plan, where it ran and
    the winner, so that ``best`` by the same metric shows the confirmed winner from then on."""
    winner = result.candidates[0]
    mean, std = winner.mean_std(result.plan.metric)
    doc = {
        **dataclasses.asdict(result.plan),
        "confirmed_in": result.search,
        "winner": {"from_trial": winner.source_trial, "mean": _or_none(mean), "std": _or_none(std)},
        "representative": result.representative[0].name,
    }
    path = experiment_dir / CONFIRMATION_FILE
    write_atomic(path, json.dumps(doc, indent=1))
    return path


def stored_plan(experiment_dir: Path) -> tuple[ConfirmPlan, str] | None:
    """The plan of the search's saved confirmation and the search it ran in, or None."""
    path = experiment_dir / CONFIRMATION_FILE
    if not path.is_file():
        return None
    doc = json.loads(path.read_text())
    names = {f.name for f in dataclasses.fields(ConfirmPlan)}
    return ConfirmPlan(**{k: v for k, v in doc.items() if k in names}), doc["confirmed_in"]


def show_and_export(
    experiment_dir: Path,
    result: Confirmation,
    export_dir: Path | None,
    force: bool,
    echo: Callable[[str], None] = print,
) -> None:
    """Print the candidates and the winner, and export the winner's run closest to its mean
    to ``export_dir`` (its ``config.yaml`` records the protocol)."""
    from skinsearch.results.export import export_bundle
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
    folder, row = result.representative
    echo(
        f"winner: the configuration of {winner.source_trial}, {metric} {mean:.4f} ± {std:.4f}; "
        f"its run closest to the mean is {folder.name} ({metric} {row[metric]:.4f}, "
        f"epoch {int(row['epoch'])})"
    )
    if export_dir is None:
        return
    found = best_checkpoint(folder, metric, mode, int(row["epoch"]))
    if found is None:
        raise ResultsError(f"{folder} has no checkpoint to export")
    checkpoint, state, _ = found
    score = TrialScore(folder.name, folder, row[metric], int(row["epoch"]))
    best = BestTrial(result.search, metric, mode, score, "tune", len(winner.runs))
    protocol = {
        "protocol": f"mean over {plan.runs_text()} of the top {plan.k} configurations",
        "mean": mean,
        "std": std,
        "seeds": sorted(
            {
                int(json.loads((f / "params.json").read_text()).get("seed", 0))
                for f, _ in winner.runs
            }
        ),
        "folds": plan.folds,
        "searched_in": experiment_dir.name,
        "confirmed_in": result.search,
        "exported_run": "the winner's run closest to its mean",
    }
    path = export_bundle(checkpoint, state, best, export_dir, force, protocol)
    echo(f"exported to {path}   (try: skinsearch predict {path} IMAGE...)")


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
    experiment_dir: Path,
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

    saved, _ = load_search(experiment_dir)
    storage = options.storage

    def run(spec: Any, configs: list[dict[str, Any]], name: str) -> Path:
        if carry_on is not None and _started_for(storage.folder / carry_on, configs, plan):
            name, resume = carry_on, True
        else:
            name, resume = new_search_name(storage, name, explicit=False), False
        confirm_options = dataclasses.replace(
            options,
            name=name,
            mlflow_uri=options.mlflow_uri or saved.tracking_uri,
            max_trials=None,
            resume=resume,
            configs=configs,
            folds=plan.folds,
            confirms=saved.search,
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

    result = confirm(experiment_dir, plan, run, echo)
    storage.push(experiment_dir / CONFIRMATION_FILE)
    show_and_export(experiment_dir, result, export_dir, force, echo)
    return result


def _started_for(folder: Path, configs: list[dict[str, Any]], plan: ConfirmPlan) -> bool:
    # an interrupted confirmation of another plan (an earlier `best --confirm`) is not carried on
    started, _ = load_search(folder)
    return started.trials == len(configs) and started.folds == plan.folds


def recall(
    storage: Storage, experiment_dir: Path, metric: str, models: bool
) -> Confirmation | None:
    """The search's saved confirmation when it chose by ``metric``, read back from the search it
    ran in (pulled first from a URI, with its models when ``models``); else None."""
    stored = stored_plan(experiment_dir)
    if stored is None or stored[0].metric != metric:
        return None
    plan, confirmed_in = stored
    storage.pull(confirmed_in, models=models)
    folder = storage.folder / confirmed_in
    if not folder.is_dir():
        raise ResultsError(
            f"search {experiment_dir.name} was confirmed in {confirmed_in!r}, which is not under "
            f"{storage}; run `skinsearch best --confirm {plan.k}` again to redo it"
        )
    return collect(experiment_dir, folder, plan)
