"""After a search: find the best trial, export it as a bundle, and predict with a bundle.

The best trial is the one whose best epoch scores best on the chosen metric. Scores come from
MLflow (the trials' child runs) and, where MLflow cannot answer, from Tune's ``result.json`` files.
Weights come from the trial's checkpoints, which describe themselves (``state.json``).
"""

from __future__ import annotations

import json
import math
import shutil
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from skinsearch.checkpoints import write_evaluation
from skinsearch.errors import ResultsError
from skinsearch.searches import load_search
from skinsearch.storage import basename
from skinsearch.tracking import SEARCH_TAG, TRIAL_DIR_TAG, TRIAL_TAG, default_tracking_uri
from skinsearch.trials import result_rows

BUNDLE_FILES = ("config.yaml", "model_state.pt")


@dataclass
class TrialScore:
    """One trial's best epoch on a metric."""

    trial_id: str
    trial_dir: Path
    value: float
    epoch: int
    metrics: dict[str, float] = field(default_factory=dict)


@dataclass
class BestTrial:
    """The winner of a search on a metric, with where its numbers came from."""

    search: str
    metric: str
    mode: str
    score: TrialScore
    source: str  # "mlflow" or "tune"
    trials_scored: int
    note: str = ""


def find_best(
    experiment_dir: Path, metric: str, mode: str, tracking_uri: str | None = None
) -> BestTrial:
    """Rank a search's trials by their best epoch on ``metric`` (see the module docstring).

    Raises:
        ResultsError: when no trial of the search has reported ``metric``.
    """
    info, _ = load_search(experiment_dir)
    search, sign = info["search"], (1.0 if mode == "max" else -1.0)
    note = ""
    try:
        uri = (
            tracking_uri or info.get("tracking_uri") or default_tracking_uri(experiment_dir.parent)
        )
        scores, source = (
            _scores_from_mlflow(uri, info["spec"]["name"], search, metric, sign, experiment_dir),
            "mlflow",
        )
    except Exception as exc:  # MLflow unreachable or emptied: Tune's files still hold the results
        scores, source, note = [], "tune", f"MLflow could not be read ({exc.__class__.__name__}); "
    if not scores:
        scores, source = _scores_from_tune(experiment_dir, metric, sign), "tune"
    if not scores:
        raise ResultsError(
            f"no trial of search {search!r} has reported {metric} yet "
            f"(under {experiment_dir}); wait for a trial to finish an epoch, or check --metric"
        )
    best = max(scores, key=lambda s: sign * s.value)
    return BestTrial(search, metric, mode, best, source, len(scores), note)


def show_best(
    experiment_dir: Path,
    metric: str,
    mode: str,
    tracking_uri: str | None,
    export_dir: Path | None,
    force: bool,
    echo: Callable[[str], None] = print,
) -> None:
    """Print the best single trial (``find_best``): its epoch's metrics and its configuration;
    with ``export_dir``, export its checkpoint of that epoch there."""
    from skinsearch.checkpoints import best_checkpoint

    result = find_best(experiment_dir, metric, mode, tracking_uri)
    score = result.score
    echo(
        f"search {result.search}: best of {result.trials_scored} trials by {metric} ({mode}), "
        f"from {result.source}"
    )
    if result.note:
        echo(f"note: {result.note}using Tune's results")
    echo(f"trial {score.trial_id}, epoch {score.epoch}: {metric} = {score.value:.4f}")
    found = best_checkpoint(score.trial_dir, metric, mode, score.epoch)
    if found is None:
        raise ResultsError(
            f"trial folder {score.trial_dir} has no checkpoint; it may have failed in its first "
            "epoch"
        )
    checkpoint, state, note = found
    metrics = epoch_metrics(score) or state["metrics"]
    shown = [
        f"{k}={v:.4f}"
        for k, v in metrics.items()
        if not k.startswith("val_recall_") and isinstance(v, float)
    ]
    echo("metrics: " + "  ".join(shown))
    echo("config: " + "  ".join(f"{k}={v}" for k, v in state["hparams"].items()))
    if note:
        echo(f"note: {note}")
    if export_dir is not None:
        path = export_bundle(checkpoint, state, result, export_dir, force)
        echo(f"exported to {path}   (try: skinsearch predict {path} IMAGE...)")


def check_export_dir(export_dir: Path, force: bool) -> None:
    """Refuse to export into a folder that holds anything, unless ``force``."""
    if not force and export_dir.is_dir() and any(export_dir.iterdir()):
        raise ResultsError(
            f"--export: {export_dir} is not empty; choose another folder or pass --force"
        )


def export_bundle(
    checkpoint: Path,
    state: dict[str, Any],
    best: BestTrial,
    export_dir: Path,
    force: bool = False,
    protocol: dict[str, Any] | None = None,
) -> Path:
    """Write a self-contained bundle of a checkpoint (``state`` is its ``state.json``): weights
    (state_dict and TorchScript), resolved config, metrics, class names, preprocessing,
    confusion matrix and report. ``protocol`` says how the model was chosen (default: the best
    epoch of a single run)."""
    import torch

    from skinsearch.hparams import HParams
    from skinsearch.models import build_model

    check_export_dir(export_dir, force)
    if export_dir.exists():
        shutil.rmtree(export_dir)
    hp = HParams.model_validate(state["hparams"])
    size = state["preprocessing"]["resize"][0]
    weights = torch.load(checkpoint / "model.pt", map_location="cpu", weights_only=True)
    model = build_model(state["model"], hp, size, len(state["class_names"]))
    model.load_state_dict(weights)
    model.eval()

    export_dir.mkdir(parents=True, exist_ok=True)
    torch.save(weights, export_dir / "model_state.pt")
    with torch.no_grad(), warnings.catch_warnings():
        # TorchScript is deprecated in torch 2.13 but still the format most serving stacks load
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.filterwarnings("ignore", message=r".*torch\.jit.* is deprecated")
        traced = torch.jit.trace(model, torch.zeros(1, 3, size, size))
        traced.save(str(export_dir / "model_torchscript.pt"))
    search_doc = yaml.safe_load((checkpoint.parents[1] / "search.yaml").read_text())
    config = {
        "model": state["model"],
        "hparams": state["hparams"],
        "class_names": state["class_names"],
        "epoch": state["epoch"],
        "search": best.search,
        "trial_id": best.score.trial_id,
        "chosen_by": {
            "metric": best.metric,
            "mode": best.mode,
            "protocol": "best epoch of a single run",
            "source": best.source,
            **(protocol or {}),
        },
        "spec": search_doc["spec"],
    }
    (export_dir / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    (export_dir / "classes.json").write_text(json.dumps(state["class_names"], indent=1))
    (export_dir / "preprocessing.json").write_text(json.dumps(state["preprocessing"], indent=1))
    write_evaluation(export_dir, state, f"{best.score.trial_id}, epoch {state['epoch']}")
    return export_dir


@dataclass(frozen=True)
class Prediction:
    """The top class of one image."""

    image: str
    label: str
    probability: float
    probabilities: dict[str, float]


def predict(bundle: Path, images: list[Path]) -> list[Prediction]:
    """Classify images with an exported bundle, loading its weights with ``weights_only``.

    Raises:
        ResultsError: for a folder that is not a bundle or a file that is not a readable image.
    """
    import torch

    from skinsearch.data import load_image
    from skinsearch.data.decode import COLOUR_CONSTANCY
    from skinsearch.hparams import HParams
    from skinsearch.models import build_model
    from skinsearch.trainer import tta_proba

    missing = [f for f in BUNDLE_FILES if not (bundle / f).is_file()]
    if missing:
        raise ResultsError(
            f"{bundle} is not a skinsearch bundle (no {missing[0]}); "
            "export one with `skinsearch best --export DIR`"
        )
    config = yaml.safe_load((bundle / "config.yaml").read_text())
    prep = json.loads((bundle / "preprocessing.json").read_text())
    size = int(prep["resize"][0])
    colour_constancy = prep.get("colour_constancy", "none")  # bundles before it: none
    if colour_constancy not in COLOUR_CONSTANCY:
        raise ResultsError(
            f"{bundle / 'preprocessing.json'}: unknown colour_constancy {colour_constancy!r} "
            f"(this skinsearch knows {', '.join(COLOUR_CONSTANCY)}); predict with the version "
            "that exported it"
        )
    arrays = []
    for image in images:
        try:
            arrays.append(load_image(image, [size], colour_constancy)[0])
        except (OSError, ValueError) as exc:
            reason = (
                "no such file" if isinstance(exc, FileNotFoundError) else "not a readable image"
            )
            raise ResultsError(f"{image}: {reason} (give JPEG, PNG, BMP or WebP files)") from None
    model = build_model(
        config["model"], HParams.model_validate(config["hparams"]), size, len(config["class_names"])
    )
    model.load_state_dict(
        torch.load(bundle / "model_state.pt", map_location="cpu", weights_only=True)
    )
    model.eval()
    batch = torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).float() / 255.0
    mean = torch.tensor(prep["mean"]).view(1, 3, 1, 1)
    std = torch.tensor(prep["std"]).view(1, 3, 1, 1)
    with torch.inference_mode():
        tta = bool(config.get("spec", {}).get("train", {}).get("tta", False))
        probs = tta_proba(model, (batch - mean) / std, tta).numpy()
    names = config["class_names"]
    return [
        Prediction(
            str(img),
            names[int(p.argmax())],
            float(p.max()),
            dict(zip(names, map(float, p), strict=True)),
        )
        for img, p in zip(images, probs, strict=True)
    ]


def _scores_from_mlflow(
    uri: str, experiment: str, search: str, metric: str, sign: float, experiment_dir: Path
) -> list[TrialScore]:
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=uri)
    exp = client.get_experiment_by_name(experiment)
    if exp is None:
        return []
    runs = client.search_runs(
        [exp.experiment_id],
        filter_string=f"tags.`{SEARCH_TAG}` = '{search}' and tags.`{TRIAL_TAG}` != ''",
        max_results=10_000,
    )
    scores = []
    for run in runs:
        history = [
            m for m in client.get_metric_history(run.info.run_id, metric) if math.isfinite(m.value)
        ]
        if not history:
            continue
        top = max(history, key=lambda m: (sign * m.value, -m.step))
        scores.append(
            TrialScore(
                run.data.tags[TRIAL_TAG],
                # the trial's folder under this search's (the tag may name a URI)
                experiment_dir / basename(run.data.tags[TRIAL_DIR_TAG]),
                top.value,
                top.step,
            )
        )
    return scores


def _scores_from_tune(experiment_dir: Path, metric: str, sign: float) -> list[TrialScore]:
    scores = []
    for result_file in sorted(experiment_dir.glob("*/result.json")):
        rows = [
            r
            for r in result_rows(result_file.parent)
            if isinstance(r.get(metric), int | float) and math.isfinite(r[metric])
        ]
        if not rows:
            continue
        top = max(rows, key=lambda r: (sign * r[metric], -r["epoch"]))
        metrics = {
            k: v
            for k, v in top.items()
            if k.startswith(("val_", "train_")) and isinstance(v, int | float)
        }
        scores.append(
            TrialScore(
                str(top["trial_id"]),
                result_file.parent,
                float(top[metric]),
                int(top["epoch"]),
                metrics=metrics,
            )
        )
    return scores


def epoch_metrics(score: TrialScore) -> dict[str, float]:
    """All metrics of the trial's best epoch, from Tune's results of that trial."""
    if score.metrics:
        return score.metrics
    for row in result_rows(score.trial_dir):
        if row.get("epoch") == score.epoch:
            return {
                k: v
                for k, v in row.items()
                if k.startswith(("val_", "train_")) and isinstance(v, int | float)
            }
    return {}
