"""A validated spec -> a Ray Tune search: data in the object store, the Tuner, tracking callbacks.

This and ``train.py`` are the only modules that talk to Ray. ``run_search`` decodes the data once
per input size, starts (or joins) Ray, runs the Tuner with ASHA and the chosen sampler, tracks
every trial in MLflow from the driver, and ends every MLflow run whatever happens.
"""

from __future__ import annotations

import logging
import os
import shutil
import signal
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from skinsearch import space
from skinsearch.data import decode_dataset, scan_dataset
from skinsearch.data.synthetic import synthetic_root
from skinsearch.errors import DataError, SkinsearchError
from skinsearch.spec import Param, SearchSpec
from skinsearch.tracking import SearchTracker, TrialRecord, default_tracking_uri

Echo = Callable[[str], None]
SEARCH_FILE = "search.yaml"


@dataclass(frozen=True)
class RunOptions:
    """Command-line choices that are not part of the search space."""

    storage: Path  # absolute
    name: str
    cpus: int | None = None  # what Ray may use; None: all of this machine's
    gpus: int | None = None
    address: str | None = None  # an existing Ray cluster, or None to start a local one
    mlflow_uri: str | None = None  # None: SQLite under storage
    max_trials: int | None = None


@dataclass
class SearchOutcome:
    """What a finished (or interrupted) search left behind."""

    experiment_dir: Path
    tracking_uri: str
    trials: dict[str, TrialRecord] = field(default_factory=dict)
    interrupted: bool = False
    dashboard_url: str = ""
    planned: int = 0  # trials the search meant to run


def run_search(spec: SearchSpec, options: RunOptions, echo: Echo = print) -> SearchOutcome:
    """Run the search a spec describes; see the module docstring.

    Raises:
        SkinsearchError: for data, resources or tracking that cannot be used (before any trial).
    """
    experiment_dir = options.storage / options.name
    configs = _configs(spec, options)
    data_root = _data_root(spec)
    files = scan_dataset(data_root, spec.data.val_fraction, spec.search.seed)
    _check_metric(spec, files.class_names)
    sizes = space.input_sizes(spec)
    echo(
        f"data: {files.root} ({len(files.class_names)} classes, {len(files.train)} train / "
        f"{len(files.val)} val images; val: {files.split})"
    )
    decoded = decode_dataset(files, sizes)
    echo(f"decoded each image once at {', '.join(f'{s}x{s}' for s in sizes)}")

    tracking_uri = (
        options.mlflow_uri
        or os.environ.get("MLFLOW_TRACKING_URI")
        or default_tracking_uri(options.storage)
    )
    experiment_dir.mkdir(parents=True, exist_ok=True)
    tracker = _tracker(spec, options, tracking_uri)
    planned = (
        len(configs)
        if configs is not None
        else min(spec.search.num_samples, options.max_trials or 10**9)
    )
    outcome = SearchOutcome(experiment_dir, tracking_uri, planned=planned)

    import ray

    started = _start_ray(options, spec, echo)
    outcome.dashboard_url = started
    try:
        refs = {size: ray.put(d) for size, d in decoded.items()}
        del decoded
        search_file = _save_search_file(
            spec, options, experiment_dir, files.class_names, len(configs or [])
        )
        tracker.start_search(
            _search_params(spec, options, files.root, len(configs or [])),
            tags={"skinsearch.experiment_dir": str(experiment_dir)},
        )
        tracker.log_search_file(search_file)
        tuner = _build_tuner(spec, options, configs, refs, tracker, experiment_dir)
        results = tuner.fit()
        outcome.interrupted = any(not t.end for t in tracker.trials.values()) or (
            len(results) < (len(configs) if configs is not None else 0)
        )
    except KeyboardInterrupt:
        outcome.interrupted = True
    finally:
        # A second Ctrl-C must not leave MLflow runs open: close them with SIGINT held off.
        previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
        try:
            tracker.finish(interrupted=outcome.interrupted)
            outcome.trials = tracker.trials
            if options.address is None:
                ray.shutdown()
        finally:
            signal.signal(signal.SIGINT, previous)
    return outcome


# -- preparing -----------------------------------------------------------------------------------


def _configs(spec: SearchSpec, options: RunOptions) -> list[dict[str, Any]] | None:
    if spec.search.sampler == "tpe":
        return None
    configs = space.expand(spec)
    if options.max_trials is not None:
        configs = space.pick(configs, options.max_trials, spec.search.seed)
    return configs


def _data_root(spec: SearchSpec) -> Path:
    if spec.data.builtin == "synthetic":
        return synthetic_root()
    return Path(spec.data.path).expanduser().resolve()


def _check_metric(spec: SearchSpec, class_names: list[str]) -> None:
    metric = spec.train.metric
    if metric.startswith("val_recall_") and metric[len("val_recall_") :] not in class_names:
        raise DataError(
            f"train.metric: {metric} names no class of the data (classes: {', '.join(class_names)})"
        )


def _tracker(spec: SearchSpec, options: RunOptions, uri: str) -> SearchTracker:
    artifact_root = options.storage / "mlartifacts" if uri.startswith("sqlite:") else None
    try:
        return SearchTracker(
            uri, spec.name, options.name, spec.train.metric, spec.train.resolved_mode, artifact_root
        )
    except Exception as exc:  # any failure to reach the store is the user's to fix
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else exc.__class__.__name__
        raise SkinsearchError(
            f"MLflow tracking at {uri} is not usable ({first[:200]}); start the server or pass another --mlflow-uri"
        ) from None


def _start_ray(options: RunOptions, spec: SearchSpec, echo: Echo) -> str:
    import ray

    os.environ.setdefault("RAY_DEDUP_LOGS", "1")
    if options.address is not None:
        context = ray.init(
            address=options.address, logging_level=logging.WARNING, log_to_driver=False
        )
    else:
        context = ray.init(
            address="local",
            num_cpus=options.cpus,
            num_gpus=options.gpus,
            include_dashboard=True,
            dashboard_host="127.0.0.1",
            _node_ip_address="127.0.0.1",
            logging_level=logging.WARNING,
            log_to_driver=False,
        )
    url = f"http://{context.dashboard_url}" if context.dashboard_url else ""
    resources = ray.cluster_resources()
    echo(
        f"Ray: {resources.get('CPU', 0):g} CPUs, {resources.get('GPU', 0):g} GPUs"
        + (f"; dashboard {url} (token in ~/.ray/auth_token)" if url else "")
    )
    if spec.resources.gpus_per_trial and not resources.get("GPU"):
        echo("no GPU in this Ray cluster: trials run on CPUs (resources.gpus_per_trial is ignored)")
    return url


def _save_search_file(
    spec: SearchSpec, options: RunOptions, folder: Path, classes: list[str], n: int
) -> Path:
    # the resolved spec beside the results, as nanoGPT saves its config beside the checkpoint
    doc = {
        "spec": spec.to_yaml_dict(),
        "search": options.name,
        "classes": classes,
        "trials": n or spec.search.num_samples,
        "storage": str(options.storage),
    }
    path = folder / SEARCH_FILE
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


def _search_params(spec: SearchSpec, options: RunOptions, root: Path, n: int) -> dict[str, Any]:
    flat = {
        f"{section}.{k}": v
        for section in ("train", "search", "scheduler", "resources")
        for k, v in getattr(spec, section).model_dump(mode="json").items()
    }
    flat.update(
        {"model": spec.model, "data.path": str(root), "trials": n or spec.search.num_samples}
    )
    flat.update({f"space.{name}": p.describe() for name, p in spec.params.items()})
    return flat


# -- the Tuner -----------------------------------------------------------------------------------


def _build_tuner(
    spec: SearchSpec,
    options: RunOptions,
    configs: list[dict[str, Any]] | None,
    refs: dict[int, Any],
    tracker: SearchTracker,
    experiment_dir: Path,
) -> Any:
    import ray
    from ray import tune
    from ray.tune.logger import CSVLoggerCallback, JsonLoggerCallback
    from ray.tune.schedulers import ASHAScheduler, FIFOScheduler

    from skinsearch.train import TrialContext, run_trial

    # Tune's own TensorBoard logger would put a second, differently named set of scalars beside
    # ours; keep its CSV and JSON results (``best`` falls back on them) and nothing else.
    os.environ["TUNE_DISABLE_AUTO_CALLBACK_LOGGERS"] = "1"
    os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")
    metric, mode = spec.train.metric, spec.train.resolved_mode
    fixed = _fixed_hparams(spec)
    context = TrialContext(
        spec.model,
        spec.train,
        refs,
        str(experiment_dir / "tensorboard"),
        spec.resources.cpus_per_trial,
        fixed,
    )
    gpus = spec.resources.gpus_per_trial if ray.cluster_resources().get("GPU") else 0
    trainable = tune.with_resources(
        tune.with_parameters(run_trial, context=context),
        {"cpu": spec.resources.cpus_per_trial, "gpu": gpus},
    )
    if spec.scheduler.type == "asha":
        scheduler: Any = ASHAScheduler(
            time_attr="training_iteration",
            max_t=spec.train.max_epochs,
            grace_period=min(spec.scheduler.grace_period, spec.train.max_epochs),
            reduction_factor=spec.scheduler.reduction_factor,
        )
    else:
        scheduler = FIFOScheduler()
    if configs is not None:
        from ray.tune.search.basic_variant import BasicVariantGenerator

        # Tune walks list values as nested paths: lists travel as "16-32" strings, as for Optuna
        configs = [
            {k: space.encode_option(v) for k, v in c.items() if k not in fixed} for c in configs
        ]
        searcher: Any = BasicVariantGenerator(points_to_evaluate=configs)
        param_space = _describe_space(configs)
        num_samples = len(configs)
    else:
        from ray.tune.search.optuna import OptunaSearch

        searcher = OptunaSearch(seed=spec.search.seed)
        param_space = _tpe_space(spec)
        num_samples = min(spec.search.num_samples, options.max_trials or spec.search.num_samples)
    return tune.Tuner(
        trainable,
        param_space=param_space,
        tune_config=tune.TuneConfig(
            metric=metric,
            mode=mode,
            search_alg=searcher,
            scheduler=scheduler,
            num_samples=int(num_samples),
            reuse_actors=True,
            trial_name_creator=_trial_name,
            trial_dirname_creator=_trial_name,
        ),
        run_config=tune.RunConfig(
            name=options.name,
            storage_path=str(options.storage),
            callbacks=[
                CSVLoggerCallback(),
                JsonLoggerCallback(),
                _tracking_callback(tracker, fixed),
            ],
            checkpoint_config=tune.CheckpointConfig(
                num_to_keep=2, checkpoint_score_attribute=metric, checkpoint_score_order=mode
            ),
            failure_config=tune.FailureConfig(max_failures=0),
            verbose=1,
        ),
    )


def _trial_name(trial: Any) -> str:
    return f"trial_{trial.trial_id}"


def _describe_space(configs: list[dict[str, Any]]) -> dict[str, Any]:
    # The configurations come from points_to_evaluate; the space only names their values, so
    # that Tune's tables and the experiment state describe what was searched.
    from ray import tune

    return {name: tune.choice(sorted({c[name] for c in configs}, key=str)) for name in configs[0]}


def _tpe_space(spec: SearchSpec) -> dict[str, Any]:
    from ray import tune

    def domain(param: Param) -> Any:
        if param.kind == "fixed":
            return space.encode_option(param.values[0])
        if param.kind in ("grid", "choice"):
            return tune.choice([space.encode_option(v) for v in param.values])
        if param.kind == "uniform":
            return tune.uniform(param.low, param.high)
        if param.kind == "loguniform":
            return tune.loguniform(param.low, param.high)
        return tune.randint(int(param.low), int(param.high) + 1)  # Tune's upper bound is exclusive

    out = {name: domain(p) for name, p in space.domains(spec).items() if p.kind != "fixed"}
    out["seed"] = spec.search.seed
    return out


def _fixed_hparams(spec: SearchSpec) -> dict[str, Any]:
    # Hyperparameters with one value stay out of Tune's config (and its progress table); each
    # trial, and each MLflow run's params, gets them from here.
    return {name: p.values[0] for name, p in space.domains(spec).items() if p.kind == "fixed"}


def _tracking_callback(tracker: SearchTracker, fixed: dict[str, Any]) -> Any:
    from ray.tune import Callback

    class TrackingCallback(Callback):
        """Forwards Tune's trial events to the MLflow tracker (on the driver)."""

        def on_trial_start(
            self, iteration: int, trials: list[Any], trial: Any, **info: Any
        ) -> None:
            config = {**fixed, **space.decode_config(trial.config)}
            tracker.start_trial(trial.trial_id, str(trial), config, str(trial.path))

        def on_trial_result(
            self, iteration: int, trials: list[Any], trial: Any, result: dict[str, Any], **info: Any
        ) -> None:
            metrics = {
                k: v
                for k, v in result.items()
                if (k.startswith(("train_", "val_")) or k == "epoch") and isinstance(v, int | float)
            }
            metrics["time_total_s"] = float(result.get("time_total_s", 0.0))
            tracker.log_epoch(trial.trial_id, metrics)

        def on_checkpoint(
            self, iteration: int, trials: list[Any], trial: Any, checkpoint: Any, **info: Any
        ) -> None:
            tracker.add_checkpoint(trial.trial_id, checkpoint.path)

        def on_trial_complete(
            self, iteration: int, trials: list[Any], trial: Any, **info: Any
        ) -> None:
            reason = (trial.last_result or {}).get("stop_reason") or "stopped_by_asha"
            tracker.end_trial(trial.trial_id, "completed" if reason == "max_epochs" else reason)

        def on_trial_error(
            self, iteration: int, trials: list[Any], trial: Any, **info: Any
        ) -> None:
            tracker.end_trial(trial.trial_id, "errored", _error_text(trial))

    return TrackingCallback()


def _error_text(trial: Any) -> str:
    try:
        text = Path(trial.error_file).read_text() if trial.error_file else ""
    except OSError:
        text = ""
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return lines[-1].strip() if lines else "unknown error"


def remove_search(experiment_dir: Path) -> None:
    """Delete a search's results folder (used by tests and ``--force``)."""
    shutil.rmtree(experiment_dir, ignore_errors=True)
