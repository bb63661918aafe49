"""One trial's training loop in plain PyTorch: epochs, evaluation, early stopping, checkpoints.

No Ray here: ``train.py`` drives a ``Trainer`` inside a Tune trial, and the same class serves
tests and benchmarks. Randomness is re-seeded from (trial seed, epoch) at every epoch, so a trial
resumed from a checkpoint draws the same batches and augmentations as one that never stopped.
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from skinsearch._files import write_atomic
from skinsearch.config.hparams import HParams
from skinsearch.config.space import model_hparam_names
from skinsearch.config.spec import TrainSpec
from skinsearch.data.augment import augment_batch, build_augment
from skinsearch.data.batch_augment import BatchAugment
from skinsearch.data.decode import DecodedData
from skinsearch.models import build_model
from skinsearch.models._registry import (
    StateDict,
    input_normalisation,
    read_weights,
    weights_source,
)
from skinsearch.models.backbone import BackboneClassifier
from skinsearch.store.layout import MODEL_FILE, OPTIMIZER_FILE, STATE_FILE, TRAINING_MODEL_FILE
from skinsearch.store.records import CheckpointState
from skinsearch.training.metrics import Evaluation, evaluate
from skinsearch.training.optim import build_ema, build_optimizer, lr_factor

EVAL_BATCH = 256


@dataclass(frozen=True)
class EpochResult:
    """What one epoch produced."""

    epoch: int  # 1-based
    metrics: dict[str, float]
    evaluation: Evaluation
    improved: bool  # the driving metric is the best so far
    stop_reason: str | None  # "early_stopped", "max_epochs", or None to go on


class Trainer:
    """Trains one model with one set of hyperparameters on decoded data.

    Args:
        model_name: A registered model.
        hp: The trial's hyperparameters.
        train: Epochs, patience, metric, loss settings.
        data: The decoded images at ``hp.input_size``.
        device: Where to train; default CUDA when present.
        resident: Keep the data set on ``device`` as uint8 and augment whole batches there
            (``batch_augment.py``) instead of per image with albumentations on the CPU. Default:
            on a GPU only. The CPU path and this one draw the same batches in the same order.
        start: The trained weights the model starts from, as ``models.read_weights`` gives them
            (a search reads them once on the driver); default: read here when ``hp`` asks for
            them.
    """

    def __init__(
        self,
        model_name: str,
        hp: HParams,
        train: TrainSpec,
        data: DecodedData,
        device: str | torch.device | None = None,
        resident: bool | None = None,
        start: StateDict | None = None,
    ) -> None:
        self.model_name, self.hp, self.train, self.data = model_name, hp, train, data
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        self.resident = self.device.type == "cuda" if resident is None else resident
        torch.manual_seed(hp.seed)
        n_classes = len(data.class_names)
        source = weights_source(model_name, hp)
        if start is None and source is not None:
            start = read_weights(model_name, source)
        self.model = build_model(model_name, hp, data.size, n_classes, start).to(self.device)
        self.optimizer = build_optimizer(self.model, hp)
        self.ema = build_ema(self.model, hp)  # with hp.ema: the weights that are evaluated
        weight = (
            _class_weights(data.y_train, n_classes) if train.class_weights == "balanced" else None
        )
        self.criterion = nn.CrossEntropyLoss(
            weight=None if weight is None else weight.to(self.device),
            label_smoothing=train.label_smoothing,
        )
        self.augment = None if self.resident else build_augment(hp, hp.seed)
        self.batch_augment = BatchAugment(hp) if self.resident and BatchAugment.wanted(hp) else None
        self.generator = torch.Generator(self.device)  # re-seeded every epoch, as the rest
        if self.resident:  # about 100 MB for 2,000 images at 128 px, copied once per trial
            self.x_train = torch.tensor(data.x_train, device=self.device)
            self.y_train = torch.tensor(data.y_train, device=self.device, dtype=torch.long)
            self.x_val = torch.tensor(data.x_val, device=self.device)
        # pretrained weights expect their own normalisation, not the data set's statistics
        mean, std = input_normalisation(model_name, hp) or (data.mean, data.std)
        self.preprocessing = {**data.preprocessing, "mean": list(mean), "std": list(std)}
        self.mean = torch.tensor(mean, device=self.device).view(1, 3, 1, 1)
        self.std = torch.tensor(std, device=self.device).view(1, 3, 1, 1)
        self.sign = 1.0 if train.resolved_mode == "max" else -1.0
        self.epoch = 0
        self.best: float | None = None
        self.best_epoch = 0
        self.bad_epochs = 0

    def fit_epoch(self) -> EpochResult:
        """Train one epoch, evaluate on val, and update the early-stopping state."""
        self.epoch += 1
        factor = lr_factor(self.hp, self.epoch, self.train.max_epochs)
        for group in self.optimizer.param_groups:  # from the epoch alone, so a resume agrees
            group["lr"] = self.hp.lr * group.get("lr_mult", 1.0) * factor
        epoch_seed = self.hp.seed * 100_003 + self.epoch
        torch.manual_seed(epoch_seed)
        if self.augment is not None:
            self.augment.set_random_seed(epoch_seed)
        self.generator.manual_seed(epoch_seed)
        train_loss, train_acc = self._train_once(np.random.default_rng(epoch_seed))
        val_loss, evaluation = self.evaluate_val()
        metrics = {
            "epoch": float(self.epoch),
            "train_loss": train_loss,
            "train_acc": train_acc,
            "val_loss": val_loss,
            **evaluation.metrics("val_"),
        }
        score = metrics[self.train.metric]
        improved = self.best is None or self.sign * score > self.sign * self.best
        if improved:
            self.best, self.best_epoch, self.bad_epochs = score, self.epoch, 0
        else:
            self.bad_epochs += 1
        return EpochResult(self.epoch, metrics, evaluation, improved, self.stop_reason())

    def stop_reason(self) -> str | None:
        """Why training is over ("max_epochs", "early_stopped"), or None to go on."""
        if self.epoch >= self.train.max_epochs:
            return "max_epochs"
        if self.train.patience is not None and self.bad_epochs >= self.train.patience:
            return "early_stopped"
        return None

    @property
    def evaluated(self) -> nn.Module:
        """The model that is evaluated, checkpointed and exported: the moving average of the
        weights with ``ema``, else the model being trained."""
        return self.model if self.ema is None else self.ema.module

    def predict_proba(self, images: np.ndarray, model: nn.Module | None = None) -> np.ndarray:
        """Class probabilities for ``(N, H, W, 3)`` uint8 images, from the evaluated model or
        from ``model`` with the same preprocessing."""
        batches = (
            self._on_device(images[start : start + EVAL_BATCH])
            for start in range(0, len(images), EVAL_BATCH)
        )
        return self._proba(batches, model)

    def evaluate_val(self, model: nn.Module | None = None) -> tuple[float, Evaluation]:
        """The val loss (mean negative log-likelihood) and evaluation of the evaluated model,
        or of ``model`` with the same preprocessing (``bench/ema.py`` scores averages so)."""
        if self.resident:
            probs = self._proba(self.x_val.split(EVAL_BATCH), model)
        else:
            probs = self.predict_proba(self.data.x_val, model)
        labels = self.data.y_val
        nll = -np.log(np.clip(probs[np.arange(len(labels)), labels], 1e-12, None))
        return float(nll.mean()), evaluate(labels, probs, self.data.class_names)

    def save(self, folder: str | Path, result: EpochResult) -> None:
        """Write a self-describing checkpoint: weights, optimizer, loop state, this epoch's
        metrics and evaluation, and what is needed to rebuild the model."""
        folder = Path(folder)
        torch.save(self.evaluated.state_dict(), folder / MODEL_FILE)
        torch.save(self.optimizer.state_dict(), folder / OPTIMIZER_FILE)
        if self.ema is not None:
            torch.save(self.model.state_dict(), folder / TRAINING_MODEL_FILE)
        state = {
            "epoch": self.epoch,
            "best": self.best,
            "best_epoch": self.best_epoch,
            "bad_epochs": self.bad_epochs,
            "ema_updates": 0 if self.ema is None else int(self.ema.n_averaged),
            "metrics": result.metrics,
            "evaluation": dataclasses.asdict(result.evaluation),
            "model": self.model_name,
            "hparams": self.hp.model_dump(
                mode="json", include=set(model_hparam_names(self.model_name))
            ),
            "class_names": self.data.class_names,
            "preprocessing": self.preprocessing,
        }
        write_atomic(folder / STATE_FILE, json.dumps(_finite(state), indent=1))

    def load(self, folder: str | Path) -> dict[str, float]:
        """Resume from a checkpoint written by ``save``; returns that epoch's metrics."""
        folder = Path(folder)
        state = CheckpointState.model_validate_json((folder / STATE_FILE).read_text())
        self.evaluated.load_state_dict(
            torch.load(folder / MODEL_FILE, map_location=self.device, weights_only=True)
        )
        if self.ema is not None:
            self.model.load_state_dict(
                torch.load(
                    folder / TRAINING_MODEL_FILE, map_location=self.device, weights_only=True
                )
            )
            self.ema.n_averaged.fill_(state.ema_updates)
        self.optimizer.load_state_dict(
            torch.load(folder / OPTIMIZER_FILE, map_location=self.device, weights_only=True)
        )
        self.epoch, self.best = state.epoch, state.best
        self.best_epoch, self.bad_epochs = state.best_epoch, state.bad_epochs
        return {k: v for k, v in state.metrics.items() if v is not None}

    def _train_once(self, rng: np.random.Generator) -> tuple[float, float]:
        self.model.train()
        if isinstance(self.model, BackboneClassifier):
            self.model.start_epoch(self.epoch)  # the head alone for its first freeze_epochs
        x, y = self.data.x_train, self.data.y_train
        order = rng.permutation(len(y))
        bs = self.hp.batch_size
        if len(order) % bs == 1 and len(order) > 1:
            order = order[:-1]  # a batch of one breaks BatchNorm and says nothing about the loss
        # summed on the device and read once per epoch: a GPU is not made to wait every batch
        total_loss = torch.zeros((), device=self.device)
        correct = torch.zeros((), device=self.device, dtype=torch.long)
        for start in range(0, len(order), bs):
            idx = np.sort(order[start : start + bs])
            if self.resident:
                rows = torch.from_numpy(idx).to(self.device)
                inputs = self._input(self.x_train[rows], train=True)
                targets = self.y_train[rows]
            else:
                inputs = self._input(self._on_device(augment_batch(self.augment, x[idx])))
                targets = torch.from_numpy(y[idx]).to(self.device)
            with self._autocast():
                logits = self.model(inputs)
                loss = self.criterion(logits, targets)
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            self.optimizer.step()
            if self.ema is not None:
                self.ema.update_parameters(self.model)
            total_loss += loss.detach() * len(idx)
            correct += (logits.argmax(1) == targets).sum()
        mean_loss = total_loss.item() / len(order)
        if not math.isfinite(mean_loss):
            raise FloatingPointError(
                f"loss became {mean_loss} in epoch {self.epoch} (lr {self.hp.lr} may be too high)"
            )
        return mean_loss, int(correct.item()) / len(order)

    def _proba(self, batches: Iterable[torch.Tensor], model: nn.Module | None = None) -> np.ndarray:
        # uint8 NHWC batches on the device -> probabilities, moved to the host once
        model = (self.evaluated if model is None else model).eval()
        with torch.inference_mode(), self._autocast():
            probs = [tta_proba(model, self._input(b), self.train.tta) for b in batches]
        return torch.cat(probs).cpu().numpy()

    def _input(self, images: torch.Tensor, train: bool = False) -> torch.Tensor:
        # uint8 NHWC on the device -> normalised NCHW float (augmented there on the GPU path)
        batch = images.permute(0, 3, 1, 2).float().div_(255.0)
        if train and self.batch_augment is not None:
            batch = self.batch_augment(batch, self.generator)
        return (batch - self.mean) / self.std

    def _autocast(self) -> torch.autocast:
        # train.precision bf16: convolutions and matrix products in bfloat16, the rest in fp32
        bf16 = self.train.precision == "bf16"
        return torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=bf16)

    def _on_device(self, images: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(np.ascontiguousarray(images)).to(self.device, non_blocking=True)


def tta_proba(model: nn.Module, batch: torch.Tensor, tta: bool) -> torch.Tensor:
    """Class probabilities of an ``NCHW`` batch; with ``tta``, the mean over the batch and its
    horizontal and vertical flips."""
    views = [batch, batch.flip(3), batch.flip(2)] if tta else [batch]
    return torch.stack([torch.softmax(model(v).float(), 1) for v in views]).mean(0)


def _class_weights(labels: np.ndarray, n_classes: int) -> torch.Tensor:
    # scikit-learn's "balanced": n_samples / (n_classes * count of the class)
    counts = np.bincount(labels, minlength=n_classes).astype(np.float64)
    return torch.tensor(len(labels) / (n_classes * np.maximum(counts, 1)), dtype=torch.float32)


def _finite(value: Any) -> Any:
    # JSON has no NaN; an undefined metric (AUC with one class) is stored as null
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_finite(v) for v in value]
    return value
