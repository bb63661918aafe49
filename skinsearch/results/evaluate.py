"""``skinsearch evaluate BUNDLE``: a bundle's figures on images nobody tuned on.

By default the images are the held-out test split of the bundle's search (the rows of its
``split.csv`` marked ``test``, copied into the bundle at export); ``--data`` takes any labelled
images instead (a labels table, a folder of class folders, or a split folder's ``test/``).
Reported: accuracy, balanced accuracy, macro-F1 and macro one-vs-rest AUC with 95% bootstrap
intervals, per-class precision/recall/F1, the confusion matrix, the expected calibration error,
and for a ``--positive`` class the sensitivity at 90% and 95% specificity.
"""

from __future__ import annotations

import csv
import json
import math
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from skinsearch.errors import ResultsError
from skinsearch.results.export import SPLIT_FILE
from skinsearch.results.predict import Bundle, _probabilities, load_bundle
from skinsearch.training.metrics import Evaluation, evaluate

BOOTSTRAP_RESAMPLES = 1000
ECE_BINS = 15
SPECIFICITIES = (0.90, 0.95)
HEADLINE = ("acc", "balanced_acc", "macro_f1", "auc")


@dataclass(frozen=True)
class LabelledImages:
    """Images with their true class as an index into the bundle's classes."""

    files: list[Path]
    labels: np.ndarray
    source: str  # where they come from, in words


@dataclass(frozen=True)
class BundleEvaluation:
    """What ``evaluate`` found: the record (``evaluation.json``) and what it was computed from."""

    record: dict[str, Any]
    labels: np.ndarray
    probs: np.ndarray


def evaluate_bundle(
    bundle: Path,
    data: Path | None = None,
    positive: str | None = None,
    batch_size: int = 64,
) -> BundleEvaluation:
    """A bundle's evaluation on its search's test split, or on ``data``.

    Raises:
        ResultsError: for a bundle without a test split and no ``data``, labels the bundle does
            not know, an unknown ``positive`` class or an unreadable image, in one line each.
    """
    bundle = bundle.expanduser().resolve()
    checked = load_bundle(bundle)
    names = checked.config.class_names
    if positive is not None and positive not in names:
        raise ResultsError(
            f"--positive: {positive!r} is not a class of {bundle} ({', '.join(names)})"
        )
    images = test_split(bundle, names) if data is None else labelled_images(data, names)
    raw = bundle_probabilities(checked, images.files, batch_size, calibrated=False)
    calibration = checked.calibration
    probs = raw if calibration is None else calibration.apply(raw)
    record: dict[str, Any] = {"bundle": str(bundle), "data": images.source}
    record |= evaluation_record(images.labels, probs, names, positive)
    if calibration is not None:
        from skinsearch.results.calibrate import val_figures

        record["calibration"] = {
            "temperature": calibration.temperature,
            "decision": calibration.decision,
            "tau": calibration.tau,
            "fitted_on": calibration.fitted_on,
            "uncalibrated": val_figures(images.labels, raw, names),
        }
    return BundleEvaluation(record, images.labels, probs)


def test_split(bundle: Path, class_names: list[str]) -> LabelledImages:
    """The test rows of the ``split.csv`` an export copied into ``bundle``."""
    path = bundle / SPLIT_FILE
    if not (path.is_file() and has_test_rows(path)):
        raise ResultsError(
            f"{bundle}: its search held out no test split (set data.test_fraction, a "
            "split_column or a test/ folder and search again), or give labelled images with "
            "--data PATH"
        )
    return split_images(path, class_names, "test")


def split_images(
    split: Path, class_names: list[str], which: str, check_files: bool = True
) -> LabelledImages:
    """The ``which`` rows (train, val or test) of a ``split.csv``; with ``check_files``, an
    image that is no longer there is one line."""
    rows = [r for r in _split_rows(split) if r.get("split") == which]
    missing = [r["image"] for r in rows if check_files and not Path(r["image"]).is_file()]
    if missing:
        raise ResultsError(
            f"{split}: {len(missing)} {which} images are no longer where the search found them "
            f"(first: {missing[0]}); put them back, or evaluate on --data PATH"
        )
    items = [(Path(r["image"]), r["label"]) for r in rows]
    return _indexed(items, class_names, f"the held-out {which} split of {split}", split)


def has_test_rows(split: Path) -> bool:
    """Whether a ``split.csv`` holds out test images."""
    return any(r.get("split") == "test" for r in _split_rows(split))


def _split_rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def labelled_images(data: Path, class_names: list[str]) -> LabelledImages:
    """``--data``: every row of a labels table (CSV/TSV), every image of a folder of class
    folders, or the ``test/`` folder of a split data set."""
    from skinsearch.config.spec import DataSpec
    from skinsearch.data.folders import TEST_FOLDER, class_folder_files, scan_dataset
    from skinsearch.data.tables import TABLE_SUFFIXES, scan_table

    data = data.expanduser().resolve()
    if data.is_file() and data.name.lower().endswith(TABLE_SUFFIXES):
        files = scan_table(DataSpec(labels=str(data)), seed=0)
        items = [(f, files.class_names[y]) for f, y in files.train + files.val + files.test]
        return _indexed(items, class_names, f"every row of {data}", data)
    if (data / "train").is_dir():
        if not (data / TEST_FOLDER).is_dir():
            raise ResultsError(
                f"--data: {data} has train/ and val/ but no {TEST_FOLDER}/; point --data at "
                f"the class folders to evaluate on ({data / 'val'}, say)"
            )
        files = scan_dataset(data)
        items = [(f, files.class_names[y]) for f, y in files.test]
        return _indexed(items, class_names, str(data / TEST_FOLDER), data)
    if data.is_dir():
        classes = class_folder_files(data)
        items = [(f, name) for name in sorted(classes) for f in classes[name]]
        return _indexed(items, class_names, f"every image under {data}", data)
    raise ResultsError(
        f"--data: {data} is neither a folder of class folders nor a CSV/TSV labels table"
    )


def _indexed(
    items: list[tuple[Path, str]], class_names: list[str], source: str, where: Path
) -> LabelledImages:
    index = {name: i for i, name in enumerate(class_names)}
    unknown = sorted({label for _, label in items if label not in index})
    if unknown:
        raise ResultsError(
            f"{where}: label {unknown[0]!r} is not a class of the bundle ({', '.join(class_names)}); "
            "evaluate on images of the classes it was trained on"
        )
    files = [f for f, _ in items]
    return LabelledImages(files, np.array([index[label] for _, label in items]), source)


def bundle_probabilities(
    checked: Bundle, files: list[Path], batch_size: int, calibrated: bool = True
) -> np.ndarray:
    """``(N, C)`` class probabilities of ``files``, ``batch_size`` images at a time; with
    ``calibrated``, through the bundle's calibration when it has one."""
    parts = [
        _probabilities(checked, files[i : i + batch_size], calibrated)
        for i in range(0, len(files), batch_size)
    ]
    return np.concatenate(parts) if parts else np.zeros((0, len(checked.config.class_names)))


def evaluation_record(
    labels: np.ndarray, probs: np.ndarray, class_names: list[str], positive: str | None
) -> dict[str, Any]:
    """Every figure of an evaluation, JSON-ready: headline metrics with 95% bootstrap
    intervals, the calibration error, per-class rows, the confusion matrix and, for a
    positive class, its sensitivity at fixed specificities."""
    ev = evaluate(labels, probs, class_names)
    record: dict[str, Any] = {
        "images": len(labels),
        "metrics": {name: _finite(getattr(ev, name)) for name in HEADLINE}
        | {"ece": expected_calibration_error(labels, probs)},
        "intervals_95": bootstrap_intervals(labels, probs, class_names),
        "class_names": class_names,
        "per_class": {name: ev.report()[name] for name in class_names},
        "confusion_matrix": ev.confusion,
    }
    if positive is not None:
        record["positive"] = {
            "class": positive,
            **sensitivity_at_specificity(labels, probs, class_names.index(positive)),
        }
    return record


def _finite(value: float) -> float | None:
    return None if math.isnan(value) else round(float(value), 6)


def bootstrap_intervals(
    labels: np.ndarray, probs: np.ndarray, class_names: list[str], seed: int = 0
) -> dict[str, list[float | None]]:
    """The 2.5th and 97.5th percentiles of each headline metric over images drawn with
    replacement (``BOOTSTRAP_RESAMPLES`` times, seeded)."""
    rng = np.random.default_rng(seed)
    draws: dict[str, list[float]] = {name: [] for name in HEADLINE}
    for _ in range(BOOTSTRAP_RESAMPLES):
        pick = rng.integers(0, len(labels), len(labels))
        ev: Evaluation = evaluate(labels[pick], probs[pick], class_names)
        for name in HEADLINE:
            draws[name].append(getattr(ev, name))
    out: dict[str, list[float | None]] = {}
    for name, values in draws.items():
        finite = np.array([v for v in values if not math.isnan(v)])
        low, high = np.percentile(finite, [2.5, 97.5]) if len(finite) else (math.nan, math.nan)
        out[name] = [_finite(low), _finite(high)]
    return out


def expected_calibration_error(labels: np.ndarray, probs: np.ndarray) -> float:
    """How far the top-class probability is from the accuracy, weighted over ``ECE_BINS``
    equal-width confidence bins."""
    confidence, correct = probs.max(1), probs.argmax(1) == labels
    bins = np.minimum((confidence * ECE_BINS).astype(int), ECE_BINS - 1)
    gap = sum(
        abs(correct[bins == b].mean() - confidence[bins == b].mean()) * (bins == b).sum()
        for b in np.unique(bins)
    )
    return round(float(gap / len(labels)), 6)


def sensitivity_at_specificity(
    labels: np.ndarray, probs: np.ndarray, positive: int
) -> dict[str, float | None]:
    """The best sensitivity (recall of ``positive``) at which at least 90% and 95% of the other
    images are called negative, and the probability threshold that gives it."""
    from sklearn.metrics import roc_curve

    is_positive = labels == positive
    if is_positive.all() or not is_positive.any():
        return {f"sensitivity_at_{round(s * 100)}_specificity": None for s in SPECIFICITIES}
    fpr, tpr, thresholds = roc_curve(is_positive, probs[:, positive])
    out: dict[str, float | None] = {}
    for s in SPECIFICITIES:
        ok = fpr <= 1 - s + 1e-12
        best = int(np.flatnonzero(ok)[np.argmax(tpr[ok])])
        out[f"sensitivity_at_{round(s * 100)}_specificity"] = round(float(tpr[best]), 6)
        out[f"threshold_at_{round(s * 100)}_specificity"] = round(
            float(min(thresholds[best], 1)), 6
        )
    return out


def evaluation_lines(record: dict[str, Any]) -> list[str]:
    """The terminal's table: the headline figures with their intervals, then one row per
    class."""
    lines = [f"{record['images']} images: {record['data']}"]
    for name in HEADLINE:
        value, (low, high) = record["metrics"][name], record["intervals_95"][name]
        shown = "n/a" if value is None else f"{value:.3f}"
        interval = "" if low is None else f"   (95% CI {low:.3f}-{high:.3f})"
        lines.append(f"  {name:<14}{shown}{interval}")
    lines.append(f"  {'ece':<14}{record['metrics']['ece']:.3f}")
    if "calibration" in record:
        lines.extend(_calibration_lines(record["calibration"]))
    positive: dict[str, Any] = record.get("positive") or {}
    for s in SPECIFICITIES if positive else ():
        value = positive[f"sensitivity_at_{round(s * 100)}_specificity"]
        threshold = positive.get(f"threshold_at_{round(s * 100)}_specificity")
        shown = "n/a" if value is None else f"{value:.3f} (p >= {threshold:.3f})"
        lines.append(f"  {positive['class']}: sensitivity at {s:.0%} specificity {shown}")
    width = max(len(n) for n in record["class_names"])
    lines.append(f"  {'':<{width}}  precision  recall      f1  support")
    for name in record["class_names"]:
        r = record["per_class"][name]
        lines.append(
            f"  {name:<{width}}  {r['precision']:9.3f} {r['recall']:7.3f} {r['f1-score']:7.3f} "
            f"{r['support']:8d}"
        )
    return lines


def check_out_dir(out: Path) -> Path:
    """``--out`` is a new or empty folder: nothing of the user's is ever overwritten.

    Raises:
        ResultsError: for a file, or a folder that holds anything.
    """
    out = out.expanduser().resolve()
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        what = "is a file" if not out.is_dir() else "is not empty"
        raise ResultsError(f"--out: {out} {what}; give a new or empty folder")
    return out


def _calibration_lines(calibration: dict[str, Any]) -> list[str]:
    raw = calibration["uncalibrated"]
    lines = [
        f"  temperature {calibration['temperature']:.3f}, fitted on the "
        f"{calibration['fitted_on']}: ece {raw['ece']:.3f} before it"
    ]
    if calibration["decision"] == "prior_corrected":
        lines.append(
            f"  operating point: prior_corrected, tau {calibration['tau']:g} (chosen on val); "
            f"plain argmax: acc {raw['acc']:.3f}, balanced_acc {raw['balanced_acc']:.3f}"
        )
    return lines


def write_evaluation_dir(
    out: Path, record: dict[str, Any], labels: np.ndarray, probs: np.ndarray
) -> Path:
    """``evaluation.json``, ``confusion_matrix.png``, ``roc.png`` and ``reliability.png`` in a
    new (or empty) folder, written beside it and renamed into place when complete."""
    from skinsearch.results.figures import save_reliability_png, save_roc_png
    from skinsearch.training.plots import save_confusion_png

    out = check_out_dir(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    partial = Path(tempfile.mkdtemp(prefix=f".{out.name}.partial-", dir=out.parent))
    try:
        (partial / "evaluation.json").write_text(json.dumps(record, indent=1))
        names = record["class_names"]
        save_confusion_png(record["confusion_matrix"], names, str(partial / "confusion_matrix.png"))
        save_roc_png(labels, probs, names, partial / "roc.png")
        save_reliability_png(labels, probs, partial / "reliability.png", ECE_BINS)
        if out.exists():
            out.rmdir()  # empty: checked above
        partial.rename(out)
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)  # our own temporary folder
        raise
    return out
