"""The Tuner of one search: its trainable with the data references, the searcher and scheduler,
the driver's callbacks, and a restore when the search is resumed."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from skinsearch._files import SpaceGuard
from skinsearch.config.plan import SearchPlan
from skinsearch.config.spec import SearchSpec
from skinsearch.errors import SkinsearchError
from skinsearch.tracking.runs import SearchTracker
from skinsearch.tune._logs import quiet_tune_banner, quiet_tune_logs
from skinsearch.tune.callbacks import (
    progress_callback,
    resume_callback,
    space_callback,
    tracking_callback,
)
from skinsearch.tune.searchers import compared_metric, scheduler, search_alg

if TYPE_CHECKING:
    from collections.abc import Callable

    from skinsearch.tune.tuner import RunOptions


@dataclass
class TunerInputs:
    """What the Tuner is built from, beside the spec and the options."""

    refs: dict[tuple[int, int | None], Any]  # (input size, fold) -> the decoded data in Ray
    weight_refs: dict[str, Any]  # weights source -> the state dict pretrained trials start from
    tracker: SearchTracker
    guard: SpaceGuard | None  # None for a URI storage
    echo: Callable[[str], None]


def build_tuner(plan: SearchPlan, options: RunOptions, inputs: TunerInputs) -> Any:
    """A new ``tune.Tuner`` for the search, or the restored one with ``options.resume``."""
    from ray import tune

    spec = plan.spec

    # Tune's own TensorBoard logger would put a second, differently named set of scalars beside
    # ours; keep its CSV and JSON results (``best`` falls back on them) and nothing else.
    os.environ["TUNE_DISABLE_AUTO_CALLBACK_LOGGERS"] = "1"
    quiet_tune_logs()
    quiet_tune_banner()
    os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")
    # a trial that fails deterministically reports its error without metrics (trainable.py)
    os.environ.setdefault("TUNE_DISABLE_STRICT_METRIC_CHECKING", "1")
    # trials get the fixed values only: the plan's configurations stay on the driver
    trainable = _trainable(spec, options, inputs, plan.fixed)
    searcher, param_space, num_samples = search_alg(plan)
    callbacks = _callbacks(plan, options, inputs)
    if options.resume:
        return _restore(options, trainable, param_space, callbacks)
    metric, mode = plan.objective.metric, plan.objective.mode
    return tune.Tuner(
        trainable,
        param_space=param_space,
        tune_config=tune.TuneConfig(
            metric=compared_metric(spec),
            mode=mode,
            search_alg=searcher,
            scheduler=scheduler(spec),
            num_samples=num_samples,
            reuse_actors=True,
            trial_name_creator=_trial_name,
            trial_dirname_creator=_trial_name,
        ),
        run_config=tune.RunConfig(
            name=options.name,
            storage_path=options.storage.uri or str(options.storage.folder),
            callbacks=callbacks,
            checkpoint_config=tune.CheckpointConfig(
                num_to_keep=2, checkpoint_score_attribute=metric, checkpoint_score_order=mode
            ),
            failure_config=tune.FailureConfig(max_failures=options.max_failures),
            verbose=0,  # progress_callback prints a compact table instead
        ),
    )


def _trainable(
    spec: SearchSpec,
    options: RunOptions,
    inputs: TunerInputs,
    fixed: dict[str, Any],
) -> Any:
    import ray
    from ray import tune

    from skinsearch.tune.trainable import TrialContext, run_trial

    context = TrialContext(
        spec.model,
        spec.train,
        inputs.refs,
        inputs.weight_refs,
        options.storage.location(f"{options.name}/tensorboard"),
        spec.resources.cpus_per_trial,
        fixed,
    )
    gpus = spec.resources.gpus_per_trial if ray.cluster_resources().get("GPU") else 0
    return tune.with_resources(
        tune.with_parameters(run_trial, context=context),
        {"cpu": spec.resources.cpus_per_trial, "gpu": gpus},
    )


def _callbacks(plan: SearchPlan, options: RunOptions, inputs: TunerInputs) -> list[Any]:
    from ray.tune.logger import CSVLoggerCallback, JsonLoggerCallback

    guard, tracker = inputs.guard, inputs.tracker
    return [
        CSVLoggerCallback(),
        JsonLoggerCallback(),
        tracking_callback(tracker, plan, options.storage.location(options.name)),
        progress_callback(plan.objective, inputs.echo),
        *([space_callback(guard, tracker)] if guard is not None else []),
        *([resume_callback(inputs.echo)] if options.resume else []),
    ]


def _restore(options: RunOptions, trainable: Any, param_space: Any, callbacks: list[Any]) -> Any:
    from ray import tune

    location = options.storage.location(options.name)
    if not tune.Tuner.can_restore(location):
        raise SkinsearchError(
            f"--resume: {location} holds no Tune state to resume from (the search "
            "stopped before its first trial); run it again without --resume"
        )
    _check_tune_state(options.storage.folder / options.name)
    tuner = tune.Tuner.restore(location, trainable, resume_unfinished=True, param_space=param_space)
    # Tune restores the callbacks pickled by the first run; this run's are the live ones.
    # Ray's private attribute, checked against Ray 2.60: Tuner.restore takes no callbacks.
    tuner._local_tuner._run_config.callbacks = callbacks  # type: ignore[union-attr]
    return tuner


def _check_tune_state(folder: Path) -> None:
    # Tune rewrites its state in place: a write cut short (a disk that filled up outside a
    # guarded search) leaves it truncated, and Tune's restore would fail with a traceback
    for state_file in sorted(folder.glob("experiment_state-*.json")):
        try:
            json.loads(state_file.read_text())
        except (OSError, ValueError):
            raise SkinsearchError(
                f"--resume: Tune's state file {state_file} is damaged (a write to it was cut "
                "short), so the search cannot be resumed; start it again without --resume "
                f"(the finished trials' results stay in {folder})"
            ) from None


def _trial_name(trial: Any) -> str:
    return f"trial_{trial.trial_id}"
