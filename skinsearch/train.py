"""The Tune trainable: one trial = one ``Trainer`` run, reported to Tune every epoch.

It checkpoints whenever the driving metric improves and at its last epoch (so ``best`` can export
the best epoch and a restarted trial can resume), stops itself after ``patience`` epochs without
improvement, uses the GPU Ray gave it, and limits torch to its share of CPUs.
"""

from __future__ import annotations

import math
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import ray
import torch
from ray import tune

from skinsearch.hparams import HParams
from skinsearch.space import decode_config
from skinsearch.spec import TrainSpec
from skinsearch.tracking import TrialBoard
from skinsearch.trainer import Trainer


@dataclass(frozen=True)
class TrialContext:
    """What every trial of a search shares (passed once through the object store)."""

    model: str
    train: TrainSpec
    data_refs: dict[int, Any]  # input size -> ObjectRef of DecodedData
    tensorboard_dir: str  # absolute; one sub-folder per trial
    cpus_per_trial: float
    fixed: dict[str, Any]  # hyperparameters with one value in the whole search


def run_trial(config: dict[str, Any], *, context: TrialContext) -> None:
    """Train one configuration, reporting every epoch to Tune."""
    hp = HParams.model_validate({**context.fixed, **decode_config(config)})
    torch.set_num_threads(max(1, math.floor(context.cpus_per_trial)))
    data = ray.get(context.data_refs[hp.input_size])
    device = "cuda" if ray.get_gpu_ids() and torch.cuda.is_available() else "cpu"
    trainer = Trainer(context.model, hp, context.train, data, device=device)

    checkpoint = tune.get_checkpoint()
    if checkpoint is not None:
        with checkpoint.as_directory() as folder:
            trainer.load(folder)

    trial_name = tune.get_context().get_trial_name()
    board = TrialBoard(Path(context.tensorboard_dir) / trial_name)
    try:
        while True:
            result = trainer.fit_epoch()
            first = result.epoch == 1
            board.log_epoch(
                result.epoch,
                result.metrics,
                result.improved,
                result.evaluation,
                model=trainer.model if first else None,
                val_images=data.x_val[: hp.batch_size] if first else None,
            )
            metrics: dict[str, Any] = {**result.metrics, "stop_reason": result.stop_reason or ""}
            if result.improved or result.stop_reason:
                with tempfile.TemporaryDirectory() as folder:
                    trainer.save(folder, result)
                    tune.report(metrics, checkpoint=tune.Checkpoint.from_directory(folder))
            else:
                tune.report(metrics)
            if result.stop_reason:
                return
    finally:
        board.close()
