"""Calibrated probabilities and an operating point, fitted on val when a bundle is exported.

Temperature scaling (Guo et al., 2017) divides the model's log-probabilities by one scalar T,
fitted with LBFGS to minimise the negative log-likelihood on the val split: the ranking and the
argmax do not change, the probabilities stop being over- (T > 1) or under-confident (T < 1).
With ``train.decision: prior_corrected`` the calibrated log-probabilities are then adjusted by
the training prior, ``- tau * log(prior)`` (logit adjustment, Menon et al., 2021), with tau
chosen on val for the search's metric: a model trained with balanced class weights can be
turned back toward accuracy (tau < 0), or one trained without toward balanced accuracy
(tau > 0), without retraining. Both are written to the bundle's ``calibration.json`` and used by
``predict`` and ``evaluate``. Nothing here reads the test split.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, field_validator

if TYPE_CHECKING:
    from skinsearch.config.spec import TrainSpec

#: the tau values tried for prior_corrected (0: plain argmax is always among them)
TAUS = tuple(round(t, 2) for t in np.arange(-1.0, 2.01, 0.125))
_FLOOR = 1e-12  # probabilities are clipped here before their log


class Calibration(BaseModel):
    """``calibration.json``: how a bundle's probabilities are adjusted, and what that did on
    val."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    temperature: float = Field(gt=0.0)
    decision: Literal["argmax", "prior_corrected"] = "argmax"
    tau: float = 0.0
    prior: list[float] | None = None  # the training split's class frequencies
    fitted_on: str = ""
    val: dict[str, dict[str, float | None]] = {}  # "before" / "after": nll, ece, acc, ...

    @field_validator("temperature", "tau")
    @classmethod
    def _finite(cls, value: float) -> float:
        if not math.isfinite(value):
            raise ValueError(f"must be a finite number, got {value}")
        return value

    def apply(self, probs: np.ndarray) -> np.ndarray:
        """Calibrated (and, with prior_corrected, adjusted) probabilities of ``(N, C)``."""
        scores = np.log(np.clip(probs, _FLOOR, 1.0)) / self.temperature
        if self.decision == "prior_corrected" and self.prior is not None:
            scores = scores - self.tau * np.log(np.clip(np.asarray(self.prior), _FLOOR, 1.0))
        return _softmax(scores)


def _softmax(scores: np.ndarray) -> np.ndarray:
    shifted = np.exp(scores - scores.max(1, keepdims=True))
    return shifted / shifted.sum(1, keepdims=True)


def calibrate_bundle(folder: Path, split: Path, train: TrainSpec) -> Calibration:
    """Fit a bundle's calibration on the val rows of its search's ``split.csv`` (the training
    prior from its train rows) and write it to the bundle's ``calibration.json``."""
    from skinsearch.results.evaluate import bundle_probabilities, split_images
    from skinsearch.results.export import CALIBRATION_FILE
    from skinsearch.results.predict import load_bundle

    bundle = load_bundle(folder)
    names = bundle.config.class_names
    val = split_images(split, names, "val")
    probs = bundle_probabilities(bundle, val.files, 64, calibrated=False)
    counts = np.bincount(
        split_images(split, names, "train", check_files=False).labels, minlength=len(names)
    )
    prior = (counts + 1.0) / (counts.sum() + len(names))  # Laplace: no class has prior 0
    fitted = fit_calibration(
        val.labels, probs, names, train.decision, prior.tolist(), train.metric, train.resolved_mode
    )
    (folder / CALIBRATION_FILE).write_text(json.dumps(fitted.model_dump(), indent=1))
    return fitted


def fit_temperature(labels: np.ndarray, probs: np.ndarray) -> float:
    """The T > 0 that minimises the NLL of ``softmax(log(probs) / T)`` (LBFGS on log T)."""
    import torch

    scores = torch.log(torch.from_numpy(np.clip(probs, _FLOOR, 1.0))).double()
    target = torch.from_numpy(labels).long()
    log_t = torch.zeros(1, dtype=torch.float64, requires_grad=True)
    optimizer = torch.optim.LBFGS([log_t], lr=0.1, max_iter=200, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        optimizer.zero_grad()
        loss = torch.nn.functional.cross_entropy(scores / log_t.exp(), target)
        loss.backward()
        return loss

    optimizer.step(closure)
    return float(np.clip(log_t.exp().item(), 0.05, 20.0))


def fit_calibration(
    labels: np.ndarray,
    probs: np.ndarray,
    class_names: list[str],
    decision: Literal["argmax", "prior_corrected"],
    prior: list[float],
    metric: str,
    mode: Literal["max", "min"],
) -> Calibration:
    """Temperature, then (for prior_corrected) the tau that is best on val by ``metric``."""
    temperature = fit_temperature(labels, probs)
    fitted = Calibration(temperature=temperature, fitted_on=f"val split ({len(labels)} images)")
    if decision == "prior_corrected":
        sign = 1.0 if mode == "max" else -1.0
        candidates = [
            fitted.model_copy(update={"decision": decision, "tau": tau, "prior": prior})
            for tau in TAUS
        ]
        # the best by the metric; among equals, the smallest adjustment
        fitted = max(
            candidates,
            key=lambda c: (
                sign * _metric(labels, c.apply(probs), class_names, metric),
                -abs(c.tau),
            ),
        )
    before = val_figures(labels, probs, class_names)
    after = val_figures(labels, fitted.apply(probs), class_names)
    return fitted.model_copy(update={"val": {"before": before, "after": after}})


def _metric(labels: np.ndarray, probs: np.ndarray, class_names: list[str], metric: str) -> float:
    if metric == "val_loss":
        return _nll(labels, probs)
    from skinsearch.training.metrics import evaluate

    value = evaluate(labels, probs, class_names).metrics("val_").get(metric)
    if value is None:  # a train_* metric: val's accuracy stands in for it
        value = evaluate(labels, probs, class_names).acc
    return -math.inf if math.isnan(value) else float(value)


def _nll(labels: np.ndarray, probs: np.ndarray) -> float:
    return float(-np.log(np.clip(probs[np.arange(len(labels)), labels], _FLOOR, 1.0)).mean())


def val_figures(
    labels: np.ndarray, probs: np.ndarray, class_names: list[str]
) -> dict[str, float | None]:
    """NLL, calibration error, accuracy and balanced accuracy: what calibration changes."""
    from skinsearch.results.evaluate import expected_calibration_error
    from skinsearch.training.metrics import evaluate

    ev = evaluate(labels, probs, class_names)
    return {
        "nll": round(_nll(labels, probs), 6),
        "ece": expected_calibration_error(labels, probs),
        "acc": round(ev.acc, 6),
        "balanced_acc": round(ev.balanced_acc, 6),
    }
