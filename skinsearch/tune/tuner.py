"""A validated spec -> a Ray Tune search: data in the object store, the Tuner, tracking callbacks.

``run_search`` prepares what the trials share (``inputs.py``: the images checked and decoded
once per input size, the largest trial's memory), starts (or joins) Ray (spreading a confirmation's
equally long runs over its CPUs: ``cluster.spread_runs``), runs the Tuner with
ASHA and the chosen sampler, tracks every trial in MLflow from the driver, and ends every MLflow
run whatever happens. The Tuner itself is built in ``build.py``; the ``tune`` package is the
only place skinsearch uses Ray.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from skinsearch._files import SpaceGuard, press_ctrl_c, signals_held
from skinsearch.config.plan import SearchPlan
from skinsearch.config.spec import SearchSpec
from skinsearch.data.folders import DatasetFiles
from skinsearch.errors import SkinsearchError
from skinsearch.store.records import TrialRecord
from skinsearch.store.searches import release_search_name, save_search_file
from skinsearch.store.storage import Storage, basename
from skinsearch.store.trials import read_trial
from skinsearch.tracking.client import check_tracking_uri, default_tracking_uri
from skinsearch.tracking.runs import SearchTracker
from skinsearch.tune.build import TunerInputs, build_tuner
from skinsearch.tune.cluster import check_address, check_dashboard_host, spread_runs, start_ray
from skinsearch.tune.inputs import (
    check_split,
    decode,
    largest_trial_of,
    put,
    put_weights,
    read_start_weights,
    scan,
    write_split,
)

Echo = Callable[[str], None]


@dataclass(frozen=True)
class RunOptions:
    """Command-line choices that are not part of the search space."""

    storage: Storage  # a folder, or a URI with its local mirror
    name: str
    cpus: int | None = None  # what Ray may use; None: all of this machine's
    gpus: int | None = None
    address: str | None = None  # an existing Ray cluster, or None to start a local one
    mlflow_uri: str | None = None  # None: SQLite under storage
    max_trials: int | None = None
    max_failures: int = 0  # restarts of a failed trial, each from its latest checkpoint
    resume: bool = False  # carry on the search ``name`` under ``storage`` where it stopped
    dashboard_host: str = "127.0.0.1"  # where a Ray started here serves its dashboard
    configs: list[dict[str, Any]] | None = None  # exactly these instead of the spec's (confirm)
    folds: int | None = None  # k-fold splits of train+val; each config names its ``fold``
    confirms: str | None = None  # the search whose top configurations these runs confirm


@dataclass
class SearchOutcome:
    """What a finished (or interrupted) search left behind."""

    plan: SearchPlan  # what it ran
    experiment_dir: Path  # for a URI storage, its local mirror
    tracking_uri: str
    storage: str = ""  # the folder or URI, as the user named it
    trials: dict[str, TrialRecord] = field(default_factory=dict)
    interrupted: bool = False
    unlogged: list[str] = field(default_factory=list)  # MLflow calls that failed for good
    signal: int = 0  # the signal that stopped it (SIGINT, SIGTERM), if one did
    failure: str = ""  # why the search stopped itself before the end (a full disk), if it did

    @property
    def planned(self) -> int:
        """How many trials the search meant to run."""
        return self.plan.trials

    @property
    def produced_nothing(self) -> bool:
        """Every trial that ran ended without a single epoch's result (errored at once)."""
        return bool(self.trials) and not any(t.best for t in self.trials.values())


def run_search(spec: SearchSpec, options: RunOptions, echo: Echo = print) -> SearchOutcome:
    """Run the search a spec describes; see the module docstring.

    Raises:
        SkinsearchError: for data, resources or tracking that cannot be used (before any trial).
    """
    try:
        return _run_search(spec, options, echo)
    except BaseException:
        if not options.resume:  # a new search's folder, if it stopped before writing into it
            release_search_name(options.storage, options.name)
        raise


def _run_search(spec: SearchSpec, options: RunOptions, echo: Echo) -> SearchOutcome:
    if options.address is not None:
        check_address(options.address)
    else:
        check_dashboard_host(options.dashboard_host)
    plan, files = _plan_and_data(spec, options, echo)
    largest = largest_trial_of(plan, len(files.class_names), options.address, options.cpus)
    tracking_uri = options.mlflow_uri or os.environ.get("MLFLOW_TRACKING_URI")
    tracking_uri = tracking_uri or default_tracking_uri(options.storage.folder)
    # a local storage's free space is watched: a full disk stops the search, never truncates it
    guard = SpaceGuard(options.storage.folder) if options.storage.uri is None else None
    if guard is not None and (problem := guard.preflight()):
        raise SkinsearchError(problem)
    tracker = _tracker(spec, options, tracking_uri)  # an unusable MLflow fails here, before Ray
    outcome = SearchOutcome(
        plan,
        options.storage.folder / options.name,  # for a URI, its local mirror
        tracking_uri,
        str(options.storage),
    )
    # unreadable data or weights fail here, before Ray starts
    datasets = decode(plan, files, options.folds)
    weights = read_start_weights(plan)
    sigterm_before = signal.getsignal(signal.SIGTERM)
    with signals_held() as held:  # a KeyboardInterrupt inside ray.init can be lost there
        start_ray(
            options.address, options.cpus, options.gpus, spec, echo, options.dashboard_host, largest
        )
    # ray.init makes SIGTERM exit the driver mid-step (an abort, no summary); a scheduler's or
    # `docker stop`'s SIGTERM stops the search like a Ctrl-C instead
    replaced = _sigterm_as_ctrl_c(outcome)
    try:
        if held:
            outcome.signal = held[0]
            raise KeyboardInterrupt
        if options.confirms is not None and options.address is None:
            plan = outcome.plan = replace(plan, spec=spread_runs(spec, largest, echo))
        refs = put(datasets, len(files.train) + len(files.val), options.folds, echo)
        weight_refs = put_weights(weights, spec.model, echo)
        del datasets, weights  # the object store holds the one copy
        _open_search(plan, options, tracker, files)
        _fit(plan, options, TunerInputs(refs, weight_refs, tracker, guard, echo))
        # Tune returns normally after a Ctrl-C (and marks the trials it stopped TERMINATED):
        # trials that never started or never ended are what tells an interrupted search
        outcome.interrupted = len(tracker.trials) < plan.trials or any(
            not t.end for t in tracker.trials.values()
        )
    except KeyboardInterrupt:
        outcome.interrupted = True
    finally:
        _wrap_up(outcome, tracker, guard, options, echo)
        if replaced is not None and sigterm_before is not None:
            signal.signal(signal.SIGTERM, sigterm_before)
    return outcome


def _plan_and_data(
    spec: SearchSpec, options: RunOptions, echo: Echo
) -> tuple[SearchPlan, DatasetFiles]:
    """The plan and the data's files, said in the terminal; a resumed search's split checked
    against the one it started with."""
    plan = SearchPlan.compile(spec, options.configs, options.max_trials)
    echo(
        f"search {options.name}: {plan.trials} of "
        f"{plan.trials if options.configs is not None else plan.space_trials} trials of "
        f"{spec.model}; results in {options.storage.location(options.name)}"
    )
    files = scan(plan, echo)
    if options.resume:
        options.storage.pull(options.name, models=False)
        check_split(options.storage.folder / options.name, files)
    return plan, files


def _open_search(
    plan: SearchPlan, options: RunOptions, tracker: SearchTracker, files: DatasetFiles
) -> None:
    """A new search: its ``search.yaml`` and MLflow parent run; a resumed one: its runs adopted."""
    spec, planned = plan.spec, plan.trials
    experiment_dir = options.storage.folder / options.name
    if options.resume:  # its files were pulled and its split checked before Ray started
        tracker.resume_search(
            # trials sit right under the search's folder, wherever their location points
            lambda location: read_trial(experiment_dir / basename(location), plan)
        )
        return
    experiment_dir.mkdir(parents=True, exist_ok=True)
    search_file = save_search_file(
        experiment_dir,
        spec,
        options.name,
        files.class_names,
        planned,
        options.storage,
        tracker.tracking_uri,
        options.folds,
        options.confirms,
    )
    options.storage.push(search_file)
    options.storage.push(write_split(experiment_dir, files))
    tracker.start_search(
        _search_params(spec, options, files.root, planned),
        tags={"skinsearch.experiment_dir": options.storage.location(options.name)},
    )
    tracker.log_search_file(search_file)


def _fit(plan: SearchPlan, options: RunOptions, inputs: TunerInputs) -> None:
    tuner = build_tuner(plan, options, inputs)
    with _snapshot_period(options):
        try:
            _close_finished(inputs.tracker, tuner.fit())
        except Exception as exc:
            # on a full disk, Tune itself fails reading back what it could not write whole
            # (a trial's error.pkl): that is the storage's failure, reported as such
            if inputs.guard is None or not inputs.guard.explain(exc):
                raise


def _wrap_up(
    outcome: SearchOutcome,
    tracker: SearchTracker,
    guard: SpaceGuard | None,
    options: RunOptions,
    echo: Echo,
) -> None:
    """End every MLflow run, stop (or leave) Ray, mirror a URI's results; a second Ctrl-C must
    not leave runs open, so SIGINT is held off meanwhile."""
    import ray

    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        outcome.failure = guard.reason if guard is not None else ""
        tracker.finish(interrupted=outcome.interrupted, failed=bool(outcome.failure))
        outcome.trials = tracker.trials
        outcome.unlogged = tracker.unlogged
        ray.shutdown()  # stops a local Ray; only disconnects from a cluster given by --address
        _mirror(options, echo)
    finally:
        signal.signal(signal.SIGINT, previous)


def _sigterm_as_ctrl_c(outcome: SearchOutcome) -> Any:
    """Make SIGTERM do what Ctrl-C does (Tune's handler while it runs, else KeyboardInterrupt),
    noting it in ``outcome``; returns the handler it replaced (None off the main thread)."""
    if threading.current_thread() is not threading.main_thread():
        return None

    def as_ctrl_c(signum: int, frame: Any) -> None:
        outcome.signal = outcome.signal or signum
        if not press_ctrl_c():
            raise KeyboardInterrupt

    return signal.signal(signal.SIGTERM, as_ctrl_c)


@contextlib.contextmanager
def _snapshot_period(options: RunOptions) -> Iterator[None]:
    # Snapshot the experiment state (what ``--resume`` restores) every 2 s instead of Tune's
    # adaptive period: a killed driver then loses at most 2 s of bookkeeping. Each snapshot
    # uploads the driver's files whole: to an object store, every 10 s. A period the user set
    # wins; ours is undone after the search, so it does not leak into the next one.
    if "TUNE_GLOBAL_CHECKPOINT_S" in os.environ:
        yield
        return
    os.environ["TUNE_GLOBAL_CHECKPOINT_S"] = "10" if options.storage.uri else "2"
    try:
        yield
    finally:
        del os.environ["TUNE_GLOBAL_CHECKPOINT_S"]


def _mirror(options: RunOptions, echo: Echo) -> None:
    # a URI storage's results (without model files) in the local mirror, for TensorBoard
    if options.storage.uri is None:
        return
    try:
        options.storage.pull(options.name, models=False)
    except Exception as exc:  # the results are safe in the storage; only the copy failed
        echo(f"warning: could not copy the results to {options.storage.folder} ({exc})")


# -- preparing -----------------------------------------------------------------------------------


def _tracker(spec: SearchSpec, options: RunOptions, uri: str) -> SearchTracker:
    check_tracking_uri(uri)
    artifact_root = options.storage.folder / "mlartifacts" if uri.startswith("sqlite:") else None
    try:
        return SearchTracker(
            uri, spec.name, options.name, spec.train.metric, spec.train.resolved_mode, artifact_root
        )
    except Exception as exc:  # any failure to reach the store is the user's to fix
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else exc.__class__.__name__
        raise SkinsearchError(
            f"MLflow tracking at {uri} is not usable ({first[:200]}); start the server or pass another --mlflow-uri"
        ) from None


def _search_params(
    spec: SearchSpec, options: RunOptions, root: Path, trials: int
) -> dict[str, Any]:
    flat = {
        f"{section}.{k}": v
        for section in ("train", "search", "scheduler", "resources")
        for k, v in getattr(spec, section).model_dump(mode="json").items()
    }
    flat.update({"model": spec.model, "data.path": str(root), "trials": trials})
    flat.update({f"space.{name}": p.describe() for name, p in spec.params.items()})
    return flat


def _close_finished(tracker: SearchTracker, results: Any) -> None:
    """End the MLflow runs of trials that finished (by their own last result, or with an error)
    but whose end no callback reported: a resumed search's trials that finished just before the
    first driver died. Trials Tune stopped on Ctrl-C have no stop reason and stay interrupted."""
    for result in results:
        trial_id = str((result.metrics or {}).get("trial_id", ""))
        record = tracker.trials.get(trial_id)
        if record is None or record.end is not None:
            continue
        reason = result.metrics.get("stop_reason")
        if result.error is not None:
            tracker.end_trial(trial_id, "errored", str(result.error)[:500])
        elif reason == "errored":
            tracker.end_trial(trial_id, "errored", result.metrics.get("error", ""))
        elif reason:
            tracker.end_trial(trial_id, "completed" if reason == "max_epochs" else reason)
