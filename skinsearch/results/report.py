"""``skinsearch report``: one HTML page (with PNG figures) that answers what a search found.

It reads Tune's files only (every trial's ``result.json``, ``params.json`` and checkpoints), so it
works without MLflow, and then logs the same files to the search's parent MLflow run when MLflow
can be reached. The page needs no network: no scripts, figures beside it.
"""

from __future__ import annotations

import html
import math
import time
from pathlib import Path
from typing import Any

import numpy as np

from skinsearch.config.plan import SearchPlan
from skinsearch.config.spec import SearchSpec
from skinsearch.store.records import TrialRecord
from skinsearch.store.search import Search
from skinsearch.store.trials import result_rows
from skinsearch.tracking.client import check_tracking_uri
from skinsearch.tracking.runs import SearchTracker
from skinsearch.training.checkpoints import best_checkpoint
from skinsearch.training.metrics import Evaluation
from skinsearch.training.plots import plt, save_confusion_png

LEADERBOARD = ["val_acc", "val_balanced_acc", "val_macro_f1", "val_auc"]
IMPORTANCE_NOTE = (
    "Permutation importance of a random forest (scikit-learn) fitted to predict each trial's best "
    "{metric} from its hyperparameters: how much the forest's R² drops when one hyperparameter's "
    "values are shuffled. Larger means the metric depended more on it in this search; near zero "
    "means no effect was detectable (or too few trials). A drop can exceed 1: with a shuffled "
    "hyperparameter the forest can predict worse than the plain mean would (an R² below 0)."
)


Rows = dict[str, list[dict[str, Any]]]  # each trial's per-epoch results, by trial name


def write_report(search: Search, out: Path | None = None) -> Path:
    """Write ``index.html`` and its figures to ``out`` (default: the search's ``report/``)."""
    out = out or search.folder / "report"
    out.mkdir(parents=True, exist_ok=True)
    plan, metric = search.plan, search.plan.objective.metric
    every = search.trials()
    rows = {t.name: _rows(t, metric) for t in every}
    trials = [t for t in every if rows[t.name]]
    ranked = plan.objective.rank(trials, lambda t: t.best.get(metric), lambda t: t.name)
    searched = [n for n, p in plan.domains.items() if p.kind != "fixed"]

    sections = [f"<h1>Search {html.escape(search.name)}</h1>", _overview(search, trials, rows)]
    sections.append(_leaderboard(ranked[:10], rows, metric, searched))
    sections.append(_confirmation(search, searched))
    sections.append(_held_out(search))
    if ranked:
        sections.append(_per_hparam(out, ranked, metric, searched, plan))
        sections.append(_curves(out, ranked[:5], rows))
        sections.append(_best_evaluation(out, ranked[0], plan))
        sections.append(_importance(out, ranked, metric, searched))
    sections.append(_asha(out, trials, rows, search.spec))
    page = _PAGE.format(title=html.escape(search.name), body="\n".join(sections))
    (out / "index.html").write_text(page)
    return out / "index.html"


def log_report(search: Search, folder: Path, tracking_uri: str | None = None) -> str:
    """Attach the report's files to the search's parent MLflow run (under ``report/``).

    Raises:
        SkinsearchError: when MLflow cannot be reached or has no run of this search.
    """
    uri = tracking_uri or search.record.tracking_uri or ""
    check_tracking_uri(uri)
    objective = search.plan.objective
    tracker = SearchTracker(uri, search.spec.name, search.name, objective.metric, objective.mode)
    return tracker.log_search_artifacts(folder, "report")


def _rows(trial: TrialRecord, metric: str) -> list[dict[str, Any]]:
    # the epochs that reported the search's metric (an errored epoch reports nothing else)
    return [r for r in result_rows(Path(trial.trial_dir)) if metric in r]


# -- sections ------------------------------------------------------------------------------------


def _overview(search: Search, trials: list[TrialRecord], rows: Rows) -> str:
    spec = search.spec
    ends = [str(t.end) for t in trials]
    counts = ", ".join(f"{ends.count(e)} {e}" for e in sorted(set(ends))) or "none"
    first = [rows[t.name][0] for t in trials]
    starts = [r["timestamp"] - r.get("time_this_iter_s", 0) for r in first]
    wall = max(rows[t.name][-1]["timestamp"] for t in trials) - min(starts) if trials else 0.0
    return (
        f"<p>{len(trials)} of {search.record.trials or len(trials)} planned trials reported "
        f"({counts}); model {spec.model}; metric {spec.train.metric} "
        f"({spec.train.resolved_mode}); {wall:.0f} s from the first trial's start to the last "
        "result; "
        f"written {time.strftime('%Y-%m-%d %H:%M')}.</p>"
    )


def _leaderboard(top: list[TrialRecord], rows: Rows, metric: str, searched: list[str]) -> str:
    cols = [metric] + [m for m in LEADERBOARD if m != metric]
    head = "".join(f"<th>{c}</th>" for c in ["#", "trial", *cols, "epochs", "time (s)", "end"])
    head += "".join(f"<th>{html.escape(n)}</th>" for n in searched)
    lines = []
    for i, t in enumerate(top, 1):
        epochs = rows[t.name]
        cells = [str(i), t.name, *[_score(t.best.get(c)) for c in cols]]
        cells += [str(len(epochs)), f"{epochs[-1].get('time_total_s', 0):.0f}", str(t.end)]
        cells += [_fmt(t.config.get(n)) for n in searched]
        lines.append("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in cells) + "</tr>")
    return (
        f"<h2>Leaderboard: top {len(top)} by {metric} (each trial's best epoch)</h2>"
        f"<table><tr>{head}</tr>{''.join(lines)}</table>"
    )


def _confirmation(search: Search, searched: list[str]) -> str:
    # the search's confirmation (best --confirm, or its file's confirm: block), when it has one
    from skinsearch.results.confirm import cells, collect

    saved = search.confirmation()
    if saved is None or not (search.folder.parent / saved.confirmed_in).is_dir():
        return ""
    plan = saved.plan
    result = collect(search, Search.load(search.folder.parent / saved.confirmed_in), plan)
    header, *rows = cells(result, searched)
    head = "".join(f"<th>{html.escape(c)}</th>" for c in header)
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(x)}</td>" for x in row) + "</tr>" for row in rows
    )
    return (
        f"<h2>Confirmed winner: the top {plan.k} by {html.escape(plan.metric)} retrained over "
        f"{html.escape(plan.runs_text())} each</h2><p>Mean ± standard deviation at each run's best "
        f"epoch (runs in search {html.escape(result.search)}); the first row won on the mean. "
        "With few validation images, this ranking is the one to trust over the leaderboard's "
        f"single runs.</p><table><tr>{head}</tr>{body}</table>"
    )


def _held_out(search: Search) -> str:
    # the exported model on the test split that no search, rung or selection read
    held = search.held_out()
    if held is None:
        return ""
    rows = []
    for name, value in held.metrics.items():
        low, high = (held.intervals_95.get(name) or [None, None])[:2]
        interval = f"{_score(low)} to {_score(high)}" if low is not None else "-"
        rows.append(
            f"<tr><td>{html.escape(name)}</td><td>{_score(value)}</td><td>{interval}</td></tr>"
        )
    calibrated = (
        f"temperature {held.temperature:.3g} fitted on val, decision {held.decision}"
        if held.temperature is not None
        else "uncalibrated"
    )
    return (
        f"<h2>Held-out test: {held.images} images no search read</h2><p>The model exported to "
        f"{html.escape(held.bundle)} (trial {html.escape(held.trial_id)}, epoch {held.epoch}; "
        f"{calibrated}), scored once after it was chosen; 95% bootstrap intervals. "
        "<code>skinsearch evaluate</code> on the bundle gives the per-class table and figures."
        "</p><table><tr><th>metric</th><th>test</th><th>95% interval</th></tr>"
        f"{''.join(rows)}</table>"
    )


def _per_hparam(
    out: Path, trials: list[TrialRecord], metric: str, searched: list[str], plan: SearchPlan
) -> str:
    figures, domains = [], plan.domains
    for name in searched:
        values = [t.config.get(name) for t in trials]
        scores = [t.best.get(metric, math.nan) for t in trials]
        fig, ax = plt.subplots(figsize=(5.5, 3.6))
        if domains[name].is_discrete:
            labels = sorted({_fmt(v) for v in values}, key=_sort_key)
            groups = [
                [s for v, s in zip(values, scores, strict=True) if _fmt(v) == lab] for lab in labels
            ]
            ax.boxplot(groups, tick_labels=labels, showfliers=False)
            rng = np.random.default_rng(0)
            for i, group in enumerate(groups, 1):
                ax.plot(i + rng.uniform(-0.12, 0.12, len(group)), group, "o", alpha=0.6, ms=4)
        else:
            ax.plot(np.array(values, dtype=float), scores, "o", alpha=0.7, ms=4)
            if domains[name].kind == "loguniform":
                ax.set_xscale("log")
        ax.set(xlabel=name, ylabel=f"best {metric}", title=f"{metric} by {name}")
        fig.tight_layout()
        path = f"param_{name}.png"
        fig.savefig(out / path, dpi=100)
        plt.close(fig)
        figures.append(f'<img src="{path}" alt="{metric} by {html.escape(name)}">')
    return (
        f"<h2>What each hyperparameter did</h2><p>Each point is one trial's best {metric}; boxes "
        f"show the spread per value.</p>{''.join(figures)}"
    )


def _curves(out: Path, top: list[TrialRecord], rows: Rows) -> str:
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.8))
    for t in top:
        trial = rows[t.name]
        epochs = [r["epoch"] for r in trial]
        (line,) = axes[0].plot(epochs, [r["val_loss"] for r in trial], label=t.name)
        axes[0].plot(epochs, [r["train_loss"] for r in trial], "--", color=line.get_color())
        axes[1].plot(epochs, [r["val_acc"] for r in trial], color=line.get_color(), label=t.name)
        axes[1].plot(epochs, [r["train_acc"] for r in trial], "--", color=line.get_color())
    axes[0].set(xlabel="epoch", ylabel="loss", title="loss (solid: val, dashed: train)")
    axes[1].set(xlabel="epoch", ylabel="accuracy", title="accuracy (solid: val, dashed: train)")
    axes[1].legend(fontsize=7)
    from matplotlib.ticker import MaxNLocator

    for ax in axes:  # epochs are whole numbers
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    fig.tight_layout()
    fig.savefig(out / "learning_curves.png", dpi=100)
    plt.close(fig)
    return '<h2>Learning curves of the top 5</h2><img src="learning_curves.png" alt="curves">'


def _best_evaluation(out: Path, best: TrialRecord, plan: SearchPlan) -> str:
    objective = plan.objective
    found = best_checkpoint(
        Path(best.trial_dir), objective.metric, objective.mode, int(best.best["epoch"])
    )
    if found is None:
        return f"<h2>Best trial</h2><p>{best.name} kept no checkpoint.</p>"
    _, state, _ = found
    ev = state.evaluation
    save_confusion_png(
        ev["confusion"],
        ev["class_names"],
        str(out / "confusion_matrix.png"),
        f"{best.name}, epoch {state.epoch}",
    )
    fields: dict[str, Any] = {k: (math.nan if v is None else v) for k, v in ev.items()}
    report = Evaluation(**fields).report_text()
    return (
        f"<h2>Best trial: {html.escape(best.name)}, epoch {state.epoch}</h2>"
        '<img src="confusion_matrix.png" alt="confusion matrix">'
        f"<pre>{html.escape(report)}</pre>"
    )


def importance(
    trials: list[TrialRecord], metric: str, searched: list[str]
) -> dict[str, tuple[float, float]]:
    """Permutation importance (mean, std) of each hyperparameter for ``metric``; see
    ``IMPORTANCE_NOTE``."""
    from sklearn.ensemble import RandomForestRegressor
    from sklearn.inspection import permutation_importance

    x = np.column_stack([_encode([t.config.get(n) for t in trials]) for n in searched])
    y = np.array([t.best.get(metric, math.nan) for t in trials], dtype=float)
    keep = np.isfinite(y)
    forest = RandomForestRegressor(n_estimators=300, min_samples_leaf=2, random_state=0)
    forest.fit(x[keep], y[keep])
    result = permutation_importance(forest, x[keep], y[keep], n_repeats=20, random_state=0)
    return {
        name: (float(result.importances_mean[i]), float(result.importances_std[i]))
        for i, name in enumerate(searched)
    }


def _importance(out: Path, trials: list[TrialRecord], metric: str, searched: list[str]) -> str:
    if len(trials) < 5 or not searched:
        return "<h2>Hyperparameter importance</h2><p>Needs at least 5 trials.</p>"
    scores = sorted(importance(trials, metric, searched).items(), key=lambda kv: kv[1][0])
    fig, ax = plt.subplots(figsize=(6, 0.45 * len(searched) + 1.2))
    ax.barh(
        [name for name, _ in scores],
        [mean for _, (mean, _) in scores],
        xerr=[std for _, (_, std) in scores],
    )
    ax.set(xlabel="drop in R² when shuffled", title=f"importance for {metric}")
    fig.tight_layout()
    fig.savefig(out / "importance.png", dpi=100)
    plt.close(fig)
    return (
        f"<h2>Hyperparameter importance</h2><p>{IMPORTANCE_NOTE.format(metric=metric)}</p>"
        '<img src="importance.png" alt="importance">'
    )


def _asha(out: Path, trials: list[TrialRecord], rows: Rows, spec: SearchSpec) -> str:
    max_epochs = spec.train.max_epochs
    run = sum(len(rows[t.name]) for t in trials)
    full = len(trials) * max_epochs
    text = (
        f"<h2>Compute</h2><p>{run} trial-epochs run of the {full} a full grid of these "
        f"{len(trials)} trials to {max_epochs} epochs would run "
        f"({100 * run / max(full, 1):.0f}%).</p>"
    )
    if spec.scheduler.type != "asha":
        return text
    grace, factor = spec.scheduler.grace_period, spec.scheduler.reduction_factor
    rungs, rung = [], float(min(grace, max_epochs))
    while rung <= max_epochs:
        rungs.append(int(rung))
        rung *= factor
    reached = [sum(len(rows[t.name]) >= r for t in trials) for r in rungs]
    fig, ax = plt.subplots(figsize=(5.5, 3.4))
    ax.bar([str(r) for r in rungs], reached)
    ax.set(xlabel="rung (epoch)", ylabel="trials that reached it", title="ASHA rung survival")
    fig.tight_layout()
    fig.savefig(out / "asha_rungs.png", dpi=100)
    plt.close(fig)
    survival = ", ".join(f"epoch {r}: {n}" for r, n in zip(rungs, reached, strict=True))
    return (
        text
        + f'<p>Trials reaching each rung: {survival}.</p><img src="asha_rungs.png" alt="rungs">'
    )


# -- helpers -------------------------------------------------------------------------------------


def _score(value: Any) -> str:
    # every metric to the same 4 decimals, as the terminal's tables show them
    if isinstance(value, int | float) and math.isfinite(value):
        return f"{value:.4f}"
    return "-"


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}" if math.isfinite(value) else "-"
    if value is None:
        return "-"
    return str(value)


def _sort_key(label: str) -> tuple[int, float | str]:
    try:
        return 0, float(label)
    except ValueError:
        return 1, label


def _encode(values: list[Any]) -> np.ndarray:
    # numbers stay numbers (log10 for positive ranges spanning decades); anything else is coded
    if all(isinstance(v, int | float) and not isinstance(v, bool) for v in values):
        arr = np.array(values, dtype=float)
        if arr.min() > 0 and arr.max() / arr.min() >= 100:
            return np.log10(arr)
        return arr
    labels = sorted({str(v) for v in values})
    return np.array([labels.index(str(v)) for v in values], dtype=float)


_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>skinsearch report: {title}</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1150px; color: #222; }}
table {{ border-collapse: collapse; font-size: 0.85em; }}
td, th {{ border: 1px solid #ccc; padding: 3px 7px; text-align: right; }}
th {{ background: #f3f3f3; }}
img {{ max-width: 100%; margin: 0.4em; vertical-align: top; }}
pre {{ background: #f7f7f7; padding: 0.8em; }}
</style></head>
<body>
{body}
</body></html>
"""
