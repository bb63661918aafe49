"""What skinsearch prints about a search: its plan (``validate``) and, once it has run, the
summary ``skinsearch run`` ends with."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

from skinsearch.config import space
from skinsearch.config.plan import SearchPlan
from skinsearch.config.spec import SearchSpec

if TYPE_CHECKING:
    from skinsearch.tune.tuner import SearchOutcome


def plan_lines(plan: SearchPlan) -> list[str]:
    """A search's plan in words: data, training, sampler and scheduler, resources, every
    hyperparameter's domain, the trial count and the confirmation after the search."""
    spec = plan.spec
    t, sch = spec.train, spec.scheduler
    scheduler = (
        f"scheduler asha (grace {sch.grace_period}, reduction {sch.reduction_factor:g}, "
        f"on each trial's {'best epoch so far' if sch.compare == 'best' else 'rung epoch'})"
        if sch.type == "asha"
        else "no scheduler"
    )
    n = plan.space_trials
    lines = [
        f"name: {spec.name}   model: {spec.model}   data: {spec.data.source}"
        + ("" if spec.data.colour_constancy == "none" else f" ({spec.data.colour_constancy})"),
        f"train: up to {t.max_epochs} epochs, "
        + ("no early stopping" if t.patience is None else f"patience {t.patience}")
        + f", {t.metric} "
        f"({t.resolved_mode}), class weights {t.class_weights}, "
        f"label smoothing {t.label_smoothing:g}"
        + (", bf16" if t.precision == "bf16" else "")
        + (
            ", decision prior_corrected (tau fitted on val at export)"
            if t.decision == "prior_corrected"
            else ""
        ),
        f"search: {spec.search.sampler}, num_samples {spec.search.num_samples}, "
        f"seed {spec.search.seed}; {scheduler}",
        f"resources per trial: {spec.resources.cpus_per_trial:g} CPU, "
        f"{spec.resources.gpus_per_trial:g} GPU",
        "params:",
        *(f"  {line}" for line in space.describe(plan.domains)),
        f"{n} trial{'s' if n != 1 else ''}",
    ]
    if (confirm := plan.confirm) is not None:
        lines.append(
            f"then confirm: the top {confirm.k} by {confirm.metric} retrained over "
            f"{confirm.runs_text()} each ({confirm.runs(n)} runs)"
        )
    lines[2:2] = notices(spec)  # under the train: and search: lines they are about
    return lines


def notices(spec: SearchSpec) -> list[str]:
    """Settings that are valid but do less than they seem to, one line each."""
    t, sch, out = spec.train, spec.scheduler, []
    if t.patience is not None and t.patience >= t.max_epochs:
        out.append(
            f"note: train.patience {t.patience} >= max_epochs {t.max_epochs}: early stopping "
            "never triggers; every trial runs all its epochs unless ASHA stops it"
        )
    if sch.type == "asha" and sch.grace_period >= t.max_epochs:
        out.append(
            f"note: scheduler.grace_period {sch.grace_period} >= train.max_epochs "
            f"{t.max_epochs}: ASHA stops no trial early (use scheduler: none to say so)"
        )
    return out


def summary_lines(outcome: SearchOutcome) -> list[str]:
    """How the trials ended, the top 5 by the search's metric, and where to look next."""
    lines: list[str] = []
    plan = outcome.plan
    spec, metric = plan.spec, plan.objective.metric
    storage, name = (
        outcome.storage or str(outcome.experiment_dir.parent),
        outcome.experiment_dir.name,
    )
    trials = plan.objective.rank(
        [t for t in outcome.trials.values() if t.best],
        lambda t: t.best.get(metric),
        lambda t: t.name,
    )
    ends = [t.end or "interrupted" for t in outcome.trials.values()]
    lines.append("")
    counts = [f"{ends.count(e)} {e}" for e in sorted(set(ends))]
    if outcome.planned > len(ends):
        counts.append(f"{outcome.planned - len(ends)} not started")
    lines.append(f"{outcome.planned} trials: " + ", ".join(counts))
    if trials:
        searched = list(plan.searched)
        cols = (
            ["trial", "end", "epochs", metric]
            + [m for m in ("val_acc", "val_balanced_acc", "val_macro_f1") if m != metric]
            + searched
        )
        rows = [
            [t.name, t.end or "-", str(t.epochs)]
            + [f"{t.best.get(m, math.nan):.4f}" for m in cols[3 : -len(searched) or None]]
            + [_short(t.config.get(k)) for k in searched]
            for t in trials[:5]
        ]
        lines.append(f"Top {len(rows)} by {metric} (best epoch of each trial):")
        lines.append(_table(cols, rows))
    for t in outcome.trials.values():
        if t.end == "errored":
            lines.append(f"errored: {t.name}: {t.error}")
    if outcome.unlogged:
        lines.append(
            f"MLflow: {len(outcome.unlogged)} tracking call(s) failed (first: {outcome.unlogged[0][:160]}). "
            "Tune's files hold every result; when the server is back, re-log them with: "
            f"skinsearch sync-mlflow --storage {storage} --name {name}"
        )
    if not outcome.trials:  # stopped before any trial started: nothing to look at
        return lines
    return [*lines, "", *_where_to_look(spec, outcome, storage, name)]


def _where_to_look(spec: SearchSpec, outcome: SearchOutcome, storage: str, name: str) -> list[str]:
    lines, metric = [], spec.train.metric
    if storage == str(outcome.experiment_dir.parent):
        lines.append(f"results:     {outcome.experiment_dir}")
    else:
        lines.append(
            f"results:     {storage}/{name} (a copy without models: {outcome.experiment_dir})"
        )
    lines.append(
        f"best model:  skinsearch best --storage {storage} "
        f"--name {name} --metric {metric} --export bundles/{name}"
    )
    if outcome.tracking_uri.startswith("sqlite:"):
        lines.append(f"MLflow UI:   mlflow ui --backend-store-uri {outcome.tracking_uri}")
    else:
        lines.append(f"MLflow:      {outcome.tracking_uri} (experiment {spec.name!r})")
    lines.append(f"TensorBoard: tensorboard --logdir {outcome.experiment_dir / 'tensorboard'}")
    return lines


def _short(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def _table(columns: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(c), *(len(r[i]) for r in rows)) for i, c in enumerate(columns)]
    line = "  ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True))
    body = ["  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)) for r in rows]
    return "\n".join([line, "  ".join("-" * w for w in widths), *body])
