"""The Tune trainable: one trial = one ``Trainer`` run, reported to Tune every epoch.

It checkpoints whenever the driving metric improves and at its last epoch (so ``best`` can export
the best epoch and a restarted trial can resume), stops itself after ``patience`` epochs without
improvement, uses the GPU Ray gave it, and limits torch to its share of CPUs.
"""

from __future__ import annotations

import math
import resource
import tempfile
import time
from dataclasses import dataclass
from typing import Any

import ray
import torch
from ray import tune

from skinsearch.config.hparams import HParams
from skinsearch.config.plan import decode
from skinsearch.config.spec import TrainSpec
from skinsearch.models import hparams_class
from skinsearch.models._registry import weights_source
from skinsearch.tracking.board import TrialBoard
from skinsearch.training.trainer import Trainer
from skinsearch.tune.searchers import BEST_SO_FAR


@dataclass(frozen=True)
class TrialContext:
    """What every trial of a search shares (passed once through the object store)."""

    model: str
    train: TrainSpec
    data_refs: dict[tuple[int, int | None], Any]  # (input size, fold) -> ObjectRef of DecodedData
    weight_refs: dict[str, Any]  # weights source -> ObjectRef of the state dict to start from
    tensorboard_dir: str  # an absolute folder or a URI; one sub-folder per trial
    cpus_per_trial: float
    fixed: dict[str, Any]  # hyperparameters with one value in the whole search


def run_trial(config: dict[str, Any], *, context: TrialContext) -> None:
    """Train one configuration, reporting every epoch to Tune."""
    values = decode(config)
    fold = values.pop("fold", None)  # a k-fold split of train+val (best --confirm --folds)
    hp = hparams_class(context.model).model_validate({**context.fixed, **values})
    torch.set_num_threads(max(1, math.floor(context.cpus_per_trial)))
    data = ray.get(context.data_refs[(hp.input_size, fold)])
    trainer = _trainer(context, hp, data)

    checkpoint = tune.get_checkpoint()
    if checkpoint is not None:
        with checkpoint.as_directory() as folder:
            saved = trainer.load(folder)
        if trainer.stop_reason():  # it had ended, but the driver died before it heard
            tune.report({**saved, BEST_SO_FAR: trainer.best, "stop_reason": trainer.stop_reason()})
            return

    trial_clock, started_at = time.perf_counter(), time.time()
    trial_name = tune.get_context().get_trial_name()
    board = TrialBoard(f"{context.tensorboard_dir}/{trial_name}")
    node_id = ray.get_runtime_context().get_node_id()
    fit_seconds = 0.0  # inside fit_epoch: what the trial is for; the rest is overhead
    try:
        while True:
            started = time.perf_counter()
            try:
                result = trainer.fit_epoch()
            except DETERMINISTIC_FAILURES as exc:
                # The same seed and data fail the same way again: end the trial as errored
                # instead of raising, which Tune would retry (--max-failures) behind other trials.
                tune.report({"epoch": float(trainer.epoch), **failure(exc, hp)})
                return
            fit_seconds += time.perf_counter() - started
            board.log_epoch(
                result.epoch,
                result.metrics,
                result.improved,
                result.evaluation,
                model=trainer.model if result.epoch == 1 else None,
                val_images=data.x_val[: hp.batch_size] if result.epoch == 1 else None,
            )
            metrics: dict[str, Any] = {
                **result.metrics,
                BEST_SO_FAR: trainer.best,
                "time_fit_s": fit_seconds,
                **_clocks(trial_clock, started_at),
                "node_id": node_id,  # which Ray node ran this epoch (a cluster's results show it)
                "stop_reason": result.stop_reason or "",
            }
            if result.improved or result.stop_reason:
                with tempfile.TemporaryDirectory() as folder:
                    trainer.save(folder, result)
                    tune.report(metrics, checkpoint=tune.Checkpoint.from_directory(folder))
                board.sync()
            else:
                tune.report(metrics)
            if result.stop_reason:
                return
    finally:
        board.close()


def _trainer(context: TrialContext, hp: HParams, data: Any) -> Trainer:
    # on the GPU Ray gave the trial, from the weights the driver read once (when pretrained)
    source = weights_source(context.model, hp)
    start = ray.get(context.weight_refs[source]) if source is not None else None
    device = "cuda" if ray.get_gpu_ids() and torch.cuda.is_available() else "cpu"
    return Trainer(context.model, hp, context.train, data, device=device, start=start)


DETERMINISTIC_FAILURES = (FloatingPointError, torch.cuda.OutOfMemoryError)


def _clocks(trial_clock: float, started_at: float) -> dict[str, float]:
    # this run of the trial so far, and when it started: Tune's own timestamps are whole
    # seconds, too coarse to measure what a trial spends outside fit_epoch
    return {
        "time_trial_s": time.perf_counter() - trial_clock,
        "trial_started_at": started_at,
        "peak_rss_mb": _peak_rss_mb(),
    }


def failure(exc: BaseException, hp: HParams) -> dict[str, str]:
    """The result that ends a trial that failed in a way a retry would repeat."""
    text = (str(exc).strip().splitlines() or [""])[0][:300]
    if isinstance(exc, torch.cuda.OutOfMemoryError):
        text = (
            f"CUDA out of memory at batch_size {hp.batch_size} ({text}); lower batch_size or "
            "input_size, or give each trial more of the GPU (resources.gpus_per_trial)"
        )
    return {"stop_reason": "errored", "error": f"{exc.__class__.__name__}: {text}"}


def _peak_rss_mb() -> float:
    # the worker process's high-water mark (Linux reports KiB); a reused actor keeps its maximum
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
