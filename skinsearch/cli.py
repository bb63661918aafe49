"""The ``skinsearch`` command: validate, run, report, best (and predict, evaluate: _cli_bundle).

Commands parse options, call library code, and print. A ``SkinsearchError`` becomes one
``Error: ...`` line per problem on stderr with exit code 2; anything else is a bug and keeps
its traceback.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import warnings
from pathlib import Path
from typing import TYPE_CHECKING

import click

from skinsearch import __version__
from skinsearch._cli_bundle import evaluate, predict
from skinsearch._cli_support import DEFAULT_STORAGE, format_warning, search_options, user_errors
from skinsearch.errors import Interrupted, SkinsearchError

if TYPE_CHECKING:
    from skinsearch.tune.tuner import RunOptions, SearchOutcome


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="skinsearch")
def main() -> None:
    """Hyperparameter search for skin-lesion image classifiers on Ray Tune."""
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "WARNING")  # read when mlflow is imported
    for noisy in ("mlflow", "alembic", "ray"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    # MLflow's SQL store logs each failed statement with its traceback (dozens on a full disk)
    # before raising it; skinsearch reports each failed tracking call in one line already
    logging.getLogger("mlflow.store.db.utils").setLevel(logging.CRITICAL)
    warnings.filterwarnings("default", message="skipped .* unreadable image")
    warnings.formatwarning = format_warning


@main.command()
@click.argument("file", type=click.Path(path_type=Path))
@user_errors
def validate(file: Path) -> None:
    """Check a search-space FILE and print the space it resolves to, without starting Ray."""
    from skinsearch.config import space
    from skinsearch.config.plan import SearchPlan
    from skinsearch.config.spec import load_spec
    from skinsearch.data.tables import split_lines
    from skinsearch.results.summary import plan_lines

    spec = load_spec(file)
    space.check_space(spec, str(file))
    click.echo(f"{file}: valid")
    split = split_lines(spec.data.resolved(), spec.search.seed)  # a table's: read in a moment
    for line in [*plan_lines(SearchPlan.compile(spec)), *split]:
        click.echo(line)


@main.command()
@click.argument("file", type=click.Path(path_type=Path))
@click.option("--gpus", type=click.IntRange(min=0), help="GPUs Ray may use (default: all present).")
@click.option("--cpus", type=click.IntRange(min=1), help="CPUs Ray may use (default: all).")
@click.option(
    "--address",
    help="Join this Ray cluster (auto, host:port, ray://host:port) instead of starting one.",
)
@click.option(
    "--storage",
    default=DEFAULT_STORAGE,
    show_default=True,
    help="Results folder (made absolute), or s3://BUCKET/PREFIX that every Ray node can reach.",
)
@click.option("--name", help="Search name (default: the file's `name`, numbered if taken).")
@click.option(
    "--mlflow-uri",
    envvar="MLFLOW_TRACKING_URI",
    help="MLflow tracking URI (default: SQLite under --storage).",
)
@click.option(
    "--data", "data_path", help="Use this data folder (or builtin:NAME) instead of the file's."
)
@click.option("--max-epochs", type=click.IntRange(min=1), help="Override train.max_epochs.")
@click.option(
    "--seed",
    type=click.IntRange(min=0, max=2**32 - 1),
    help="Override search.seed: trial seeds count up from it, and a val split that skinsearch "
    "draws (no val/ folder) is drawn with it.",
)
@click.option(
    "--max-trials",
    type=click.IntRange(min=1),
    help="Run only N of the configurations (a seeded pick).",
)
@click.option(
    "--max-failures",
    type=click.IntRange(min=0),
    default=2,
    show_default=True,
    help="Restarts of a failed trial (a lost node or worker), each from its last checkpoint.",
)
@click.option(
    "--dashboard-host",
    default="127.0.0.1",
    show_default=True,
    help="Where a Ray started here serves its dashboard (another host exposes it: a warning says so).",
)
@click.option(
    "--resume",
    is_flag=True,
    help="Carry on a stopped search (--name, default: the latest from FILE): finished trials are kept.",
)
@click.option("--no-confirm", is_flag=True, help="Skip the file's confirm: block.")
@user_errors
def run(
    file: Path,
    gpus: int | None,
    cpus: int | None,
    address: str | None,
    storage: str,
    name: str | None,
    mlflow_uri: str | None,
    data_path: str | None,
    max_epochs: int | None,
    seed: int | None,
    max_trials: int | None,
    max_failures: int,
    dashboard_host: str,
    resume: bool,
    no_confirm: bool,
) -> None:
    """Run the search that FILE describes on Ray Tune; then, when FILE has a confirm: block,
    retrain its top configurations with fresh seeds (or folds) and choose on the mean."""
    from skinsearch.config import space
    from skinsearch.config.spec import load_spec, with_overrides
    from skinsearch.results.summary import notices, summary_lines
    from skinsearch.store.searches import new_search_name, resumable
    from skinsearch.store.storage import open_storage
    from skinsearch.tune.cluster import check_gpus
    from skinsearch.tune.tuner import RunOptions, run_search

    spec = with_overrides(load_spec(file), data_path, max_epochs, seed)
    space.check_space(spec, str(file))
    for line in notices(spec):
        click.echo(line)
    where = open_storage(storage, write=True)
    where.pull()  # the searches already there (a URI's), to name this one
    gpus = check_gpus(gpus, address)
    if resume:
        name, mlflow_uri, max_trials = resumable(where, name or spec.name, spec, file)
    else:
        name = new_search_name(where, name or spec.name, explicit=name is not None)
    options = RunOptions(
        storage=where,
        name=name,
        cpus=cpus,
        gpus=gpus,
        address=address,
        mlflow_uri=mlflow_uri,
        max_trials=max_trials,
        max_failures=max_failures,
        resume=resume,
        dashboard_host=dashboard_host,
    )
    outcome = run_search(spec, options, echo=click.echo)
    for line in summary_lines(outcome):
        click.echo(line)
    _exit_if_stopped(outcome, name)
    if spec.confirm is not None and not no_confirm:
        _confirm_after_run(file, options, outcome)


def _exit_if_stopped(outcome: SearchOutcome, name: str) -> None:
    """Exit 1 for a search that stopped itself or produced nothing, 130/143 for an interrupted
    one, each with the line that says what to do."""
    if outcome.failure:
        click.echo(
            f"Error: {outcome.failure}; finished trials are kept, unfinished ones are marked "
            "FAILED in MLflow; free some space, then run the same command with --resume to "
            "carry it on",
            err=True,
        )
        sys.exit(1)
    if outcome.interrupted:
        terminated = outcome.signal == signal.SIGTERM
        click.echo(
            f"Interrupted{' (SIGTERM)' if terminated else ''}: finished trials are kept above; "
            "unfinished ones are marked KILLED in MLflow.",
            err=True,
        )
        sys.exit(128 + signal.SIGTERM if terminated else 130)
    if outcome.produced_nothing:
        click.echo(
            f"Error: no trial of search {name} produced a result: all {len(outcome.trials)} "
            "errored (the reasons are above); fix the cause and run again",
            err=True,
        )
        sys.exit(1)


def _confirm_after_run(file: Path, options: RunOptions, outcome: SearchOutcome) -> None:
    """The file's ``confirm:`` block, after its search (once: a resumed search confirmed before
    says where)."""
    from skinsearch.results.confirm import confirm_search
    from skinsearch.store.search import Search
    from skinsearch.store.searches import unfinished_confirmation

    name, where = options.name, options.storage
    click.echo("")
    search = Search.load(outcome.experiment_dir)
    plan = outcome.plan.confirm
    assert plan is not None, "only a file with a confirm: block is confirmed after its search"
    done = search.confirmation()
    if done is not None and done.plan == plan:  # a resumed search that was confirmed before
        click.echo(f"search {name} was confirmed before, in {done.confirmed_in}")
    else:
        # an unconfirmed search's latest confirmation is the one a Ctrl-C stopped
        carry_on = unfinished_confirmation(where, name) if options.resume and done is None else None
        try:
            confirm_search(search, plan, options, carry_on, echo=click.echo)
        except Interrupted as exc:
            raise Interrupted(f"{exc}; `skinsearch run {file} --resume` carries it on") from None
    click.echo(
        f"confirmed winner: skinsearch best --storage {where} --name {name} "
        f"--metric {plan.metric} --export bundles/{name}"
    )


@main.command()
@search_options
@click.option(
    "--out",
    type=click.Path(path_type=Path),
    help="Folder for index.html and its figures (default: the search's report/).",
)
@user_errors
def report(name: str | None, storage: str, out: Path | None, mlflow_uri: str | None) -> None:
    """Write an HTML report of a search (leaderboard, what each hyperparameter did, curves,
    confusion matrix, importance, ASHA) and attach it to the search's MLflow run."""
    from skinsearch.results.report import log_report, write_report
    from skinsearch.store.search import Search
    from skinsearch.store.searches import open_search

    where, folder = open_search(storage, name, models=False)
    search = Search.load(folder)
    confirmed = search.confirmation()
    if confirmed is not None:  # a URI's confirmation runs, for their table
        where.pull(confirmed.confirmed_in, models=False)
    page = write_report(search, out.resolve() if out else None)
    click.echo(f"report: {page}")
    if out is None and where.uri is not None:
        where.push(page.parent)
        click.echo(f"report copied to {where.location(f'{folder.name}/{page.parent.name}')}")
    try:
        run_id = log_report(search, page.parent, mlflow_uri)
        click.echo(f"logged to MLflow run {run_id} under report/")
    except SkinsearchError as exc:
        click.echo(f"not logged to MLflow: {exc}", err=True)


@main.command("sync-mlflow")
@search_options
@user_errors
def sync_mlflow(name: str | None, storage: str, mlflow_uri: str | None) -> None:
    """Re-log a search's trials into MLflow from Tune's files (after the server was down)."""
    from skinsearch.store.search import Search
    from skinsearch.store.searches import open_search
    from skinsearch.tracking.sync import sync_search

    _, folder = open_search(storage, name, models=False)
    sync_search(Search.load(folder), mlflow_uri, echo=click.echo)


@main.command()
@search_options
@click.option("--metric", default="val_acc", show_default=True, help="Any reported metric.")
@click.option(
    "--mode", type=click.Choice(["max", "min"]), help="Default: min for *_loss, else max."
)
@click.option(
    "--export",
    "export_dir",
    type=click.Path(path_type=Path),
    help="Write the best model's bundle here.",
)
@click.option("--force", is_flag=True, help="Replace a non-empty export folder.")
@click.option(
    "--confirm",
    "confirm_k",
    type=click.IntRange(min=1),
    help="Retrain the top K configurations with fresh seeds and choose on the mean.",
)
@click.option(
    "--seeds",
    type=click.IntRange(min=1),
    help="Seeds per configuration for --confirm (default: 3, or 1 with --folds).",
)
@click.option(
    "--folds",
    type=click.IntRange(min=2),
    help="With --confirm, also run each seed on F k-fold splits of train+val.",
)
@click.option("--cpus", type=click.IntRange(min=1), help="CPUs Ray may use for --confirm.")
@click.option(
    "--single", is_flag=True, help="The best single trial, even when the search was confirmed."
)
@user_errors
def best(
    name: str | None,
    storage: str,
    metric: str,
    mode: str | None,
    export_dir: Path | None,
    force: bool,
    mlflow_uri: str | None,
    confirm_k: int | None,
    seeds: int | None,
    folds: int | None,
    cpus: int | None,
    single: bool,
) -> None:
    """Show the best trial of a search by its best epoch, and optionally export it.

    With --confirm K, retrain the top K configurations --seeds times each with fresh seeds
    (a new search, <name>-confirm), with --folds F once per k-fold split of train+val for
    each seed, print mean ± std of every metric, and choose the winner on the mean; --export
    then writes the winner's run closest to that mean. A search confirmed before (by --confirm
    or its file's confirm: block) shows that confirmed winner when asked for the same metric."""
    from skinsearch.config.plan import ConfirmPlan
    from skinsearch.results.confirm import confirm_search, recall, show_and_export
    from skinsearch.results.export import check_export_dir
    from skinsearch.results.select import show_best
    from skinsearch.store.search import Search
    from skinsearch.store.searches import open_search
    from skinsearch.store.storage import open_storage
    from skinsearch.tune.tuner import RunOptions

    mode = mode or ("min" if metric.endswith("_loss") else "max")
    if confirm_k is None and (seeds is not None or folds is not None):
        raise SkinsearchError("--seeds and --folds go with --confirm K; add --confirm 3, say")
    seeds = seeds or (1 if folds else 3)
    if confirm_k is not None and seeds * (folds or 1) < 2:
        raise SkinsearchError(
            "--seeds 1 without --folds retrains each configuration once; use --seeds 2 or more"
        )
    if export_dir is not None:
        export_dir = export_dir.expanduser().resolve()
        # before any work; never into the results (a URI's: its local mirror)
        check_export_dir(export_dir, force, open_storage(storage, write=False).folder)
    where, experiment_dir = open_search(storage, name, models=export_dir is not None)
    search = Search.load(experiment_dir)
    if confirm_k is not None:
        plan = ConfirmPlan(confirm_k, seeds, metric, mode, folds)
        options = RunOptions(where, search.name, cpus=cpus, mlflow_uri=mlflow_uri)
        confirm_search(search, plan, options, export_dir=export_dir, force=force, echo=click.echo)
        return
    confirmed = None if single else recall(where, search, metric, export_dir is not None)
    if confirmed is not None:
        click.echo(
            f"search {search.name} was confirmed in {confirmed.search}: its confirmed "
            "winner (--single: the best single trial instead)"
        )
        show_and_export(search, confirmed, export_dir, force, echo=click.echo)
        return
    show_best(search, metric, mode, mlflow_uri, export_dir, force, echo=click.echo)


main.add_command(predict)
main.add_command(evaluate)


if __name__ == "__main__":  # pragma: no cover
    main()
