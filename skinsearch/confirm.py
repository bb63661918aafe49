"""``skinsearch best --confirm K --seeds S [--folds F]``: a winner chosen on a mean of runs.

With a hundred or so validation images, the best of many single runs is partly luck. This retrains
the top K configurations of a search S times each with fresh seeds (a new search named
``<search>-confirm``, no ASHA, so every run trains to its own end), reports mean and standard
deviation of every metric at each run's best epoch, and picks the configuration with the best
mean. With F folds, each seed runs F times instead, once per k-fold split of train and val
together (``data.decode.fold_splits``), so every image is validated on once per seed. The model
exported for the winner is its run closest to the mean: a typical model of the winning
configuration, not its luckiest run.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from skinsearch import space
from skinsearch.errors import ResultsError
from skinsearch.results import load_search
from skinsearch.spec import SchedulerSpec
from skinsearch.trials import read_trial

REPORTED = ["val_acc", "val_balanced_acc", "val_macro_f1", "val_auc", "val_loss"]
SEED_STEP = 1000  # seeds of the confirmation runs: the trial's seed + 1000, + 2000, ...


@dataclass
class Candidate:
    """One configuration retrained over several seeds."""

    config: dict[str, Any]  # without the seed
    source_trial: str  # the search trial it came from
    runs: list[tuple[Path, dict[str, float]]] = field(default_factory=list)  # folder, best row

    def mean_std(self, metric: str) -> tuple[float, float]:
        values = [row[metric] for _, row in self.runs if _finite(row.get(metric))]
        if not values:
            return math.nan, math.nan
        return float(np.mean(values)), float(np.std(values, ddof=1)) if len(values) > 1 else 0.0


@dataclass
class Confirmation:
    """The outcome of a confirmation."""

    search: str  # the confirmation search's name
    metric: str
    mode: str
    seeds: int
    folds: int | None
    candidates: list[Candidate]  # best mean first
    representative: tuple[Path, dict[str, float]]  # the winner's run closest to its mean


def top_configs(
    experiment_dir: Path, k: int, metric: str, mode: str
) -> list[tuple[str, dict[str, Any]]]:
    """The ``k`` best trials of a search by their best epoch on ``metric``: (name, config)."""
    saved, spec = load_search(experiment_dir)
    fixed = space.fixed_hparams(spec)
    sign = 1.0 if mode == "max" else -1.0
    records = [
        r
        for folder in sorted(experiment_dir.glob("trial_*/"))
        if (r := read_trial(folder, metric, mode, fixed)) is not None
        and _finite(r.best.get(metric))
    ]
    if not records:
        raise ResultsError(
            f"no trial of search {saved['search']!r} has reported {metric} yet; nothing to confirm"
        )
    records.sort(key=lambda r: -sign * r.best[metric])
    return [(r.name, r.config) for r in records[:k]]


def confirm(
    experiment_dir: Path,
    k: int,
    seeds: int,
    metric: str,
    mode: str,
    run: Callable[[Any, list[dict[str, Any]], str], Path],
    echo: Callable[[str], None] = print,
    folds: int | None = None,
) -> Confirmation:
    """Retrain the top ``k`` configurations ``seeds`` times each (times ``folds`` k-fold
    splits); see the module docstring.

    ``run(spec, configs, name)`` runs a search of exactly ``configs`` (a ``fold`` key in each
    when ``folds``) and returns its folder.
    """
    saved, spec = load_search(experiment_dir)
    top = top_configs(experiment_dir, k, metric, mode)
    candidates = [Candidate(_configuration(config), name) for name, config in top]
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
        f"confirming the top {len(top)} of search {saved['search']} by {metric}: "
        f"{runs_text(seeds, folds)} each, {len(configs)} runs, no early stopping across runs"
    )
    confirm_spec = spec.model_copy(update={"scheduler": SchedulerSpec(type="none")})
    folder = run(confirm_spec, configs, f"{saved['search']}-confirm")

    fixed = space.fixed_hparams(spec)
    by_key = {_key(c.config): c for c in candidates}
    for trial_dir in sorted(folder.glob("trial_*/")):
        record = read_trial(trial_dir, metric, mode, fixed)
        if record is None or not record.best:
            continue
        candidate = by_key.get(_key(_configuration(record.config)))
        if candidate is not None:
            candidate.runs.append((trial_dir, record.best))
    sign = 1.0 if mode == "max" else -1.0
    scored = [c for c in candidates if c.runs]
    if not scored:
        raise ResultsError(f"no confirmation run of {folder.name} reported {metric}")
    scored.sort(key=lambda c: -sign * _or_worst(c.mean_std(metric)[0], sign))
    winner = scored[0]
    mean = winner.mean_std(metric)[0]
    representative = min(winner.runs, key=lambda run: abs(run[1].get(metric, math.inf) - mean))
    return Confirmation(folder.name, metric, mode, seeds, folds, scored, representative)


def confirm_and_export(
    experiment_dir: Path,
    k: int,
    seeds: int,
    metric: str,
    mode: str,
    run: Callable[[Any, list[dict[str, Any]], str], Path],
    export_dir: Path | None,
    force: bool,
    echo: Callable[[str], None] = print,
    folds: int | None = None,
) -> Confirmation:
    """``confirm``, then print the candidates and the winner, and export the winner's run
    closest to its mean to ``export_dir`` (its ``config.yaml`` records the protocol)."""
    from skinsearch.checkpoints import best_checkpoint
    from skinsearch.results import BestTrial, TrialScore, export_bundle

    result = confirm(experiment_dir, k, seeds, metric, mode, run, echo, folds)
    winner = result.candidates[0]
    mean, std = winner.mean_std(metric)
    searched = sorted(
        name
        for name in winner.config
        if len({repr(c.config.get(name)) for c in result.candidates}) > 1
    )
    echo(f"\nconfirmed over {runs_text(seeds, folds)} each (mean ± std at each run's best epoch):")
    for line in table(result, searched):
        echo(line)
    folder, row = result.representative
    echo(
        f"winner: the configuration of {winner.source_trial}, {metric} {mean:.4f} ± {std:.4f}; "
        f"its run closest to the mean is {folder.name} ({metric} {row[metric]:.4f}, "
        f"epoch {int(row['epoch'])})"
    )
    if export_dir is None:
        return result
    found = best_checkpoint(folder, metric, mode, int(row["epoch"]))
    if found is None:
        raise ResultsError(f"{folder} has no checkpoint to export")
    checkpoint, state, _ = found
    score = TrialScore(folder.name, folder, row[metric], int(row["epoch"]))
    best = BestTrial(result.search, metric, mode, score, "tune", len(winner.runs))
    protocol = {
        "protocol": (
            f"mean over {runs_text(seeds, folds)} of the top {k} configurations (best --confirm)"
        ),
        "mean": mean,
        "std": std,
        "seeds": sorted(
            {
                int(json.loads((f / "params.json").read_text()).get("seed", 0))
                for f, _ in winner.runs
            }
        ),
        "folds": folds,
        "searched_in": experiment_dir.name,
        "confirmed_in": result.search,
        "exported_run": "the winner's run closest to its mean",
    }
    path = export_bundle(checkpoint, state, best, export_dir, force, protocol)
    echo(f"exported to {path}   (try: skinsearch predict {path} IMAGE...)")
    return result


def table(result: Confirmation, searched: list[str]) -> list[str]:
    """The candidates as text rows: mean ± std of each reported metric over the seeds."""
    header = ["rank", "from trial", "runs", *REPORTED, *searched]
    rows = []
    for i, c in enumerate(result.candidates, 1):
        cells = [str(i), c.source_trial, str(len(c.runs))]
        for m in REPORTED:
            mean, std = c.mean_std(m)
            cells.append(f"{mean:.4f} ± {std:.4f}" if math.isfinite(mean) else "-")
        cells += [_short(c.config.get(n)) for n in searched]
        rows.append(cells)
    widths = [max(len(str(x)) for x in col) for col in zip(header, *rows, strict=True)]
    return [
        "  ".join(str(x).ljust(w) for x, w in zip(line, widths, strict=True)).rstrip()
        for line in [header, *rows]
    ]


def runs_text(seeds: int, folds: int | None) -> str:
    """How each configuration is rerun, in words: "3 seeds", "5 folds of train+val", ..."""
    seeds_text = f"{seeds} seed{'s' if seeds != 1 else ''}"
    if not folds:
        return seeds_text
    folds_text = f"{folds} folds of train+val"
    return folds_text if seeds == 1 else f"{seeds_text} × {folds_text}"


def _configuration(config: dict[str, Any]) -> dict[str, Any]:
    # what is being confirmed: the hyperparameters, without the seed and the fold of a run
    return {n: v for n, v in config.items() if n not in ("seed", "fold")}


def _key(config: dict[str, Any]) -> str:
    return json.dumps(config, sort_keys=True, default=str)


def _finite(value: Any) -> bool:
    return isinstance(value, int | float) and math.isfinite(value)


def _or_worst(value: float, sign: float) -> float:
    return value if math.isfinite(value) else -math.inf * sign


def _short(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)
