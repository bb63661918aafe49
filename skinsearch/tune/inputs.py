"""What a search feeds its trials, prepared on the driver before any trial starts: the images
listed and checked, the memory the largest trial needs, the images decoded once per input size
(and fold), the trained weights pretrained trials start from read and checked once, and both put
once in Ray's object store for every trial to share (a cluster node needs neither the images nor
the weights package)."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from skinsearch._files import write_atomic
from skinsearch.config.plan import SearchPlan
from skinsearch.config.spec import SearchSpec
from skinsearch.data import decode_dataset, scan_dataset
from skinsearch.data.decode import fold_splits
from skinsearch.data.folders import DatasetFiles
from skinsearch.data.synthetic import synthetic_root
from skinsearch.data.tables import scan_table
from skinsearch.errors import DataError, SkinsearchError
from skinsearch.models import hparams_class
from skinsearch.models._registry import StateDict, read_weights, weights_source
from skinsearch.training.footprint import Footprint, largest_trial
from skinsearch.training.metrics import class_keys
from skinsearch.tune.cluster import machine_memory, trial_memory_problem

Echo = Callable[[str], None]


def scan(plan: SearchPlan, echo: Echo) -> DatasetFiles:
    """The search's images, listed and split (none decoded yet), with what they are in a line."""
    spec = plan.spec
    if spec.data.is_table:
        files = scan_table(spec.data, spec.search.seed)
        source = f"{spec.data.labels or spec.data.path} over {files.root}"
    else:
        if spec.data.table_key_given:
            raise DataError(f"data.{spec.data.table_key_problem}")
        files = scan_dataset(_data_root(spec), spec.data.val_fraction, spec.search.seed)
        source = str(files.root)
    _check_metric(spec, files.class_names)
    test = f" / {len(files.test)} test" if files.test else ""
    split = "split" if spec.data.is_table else "val"
    held = "; no search reads the test images" if files.test else ""
    echo(
        f"data: {source} ({len(files.class_names)} classes, {len(files.train)} train / "
        f"{len(files.val)} val{test} images; {split}: {files.split}{held})"
    )
    _note_large_batches(plan, len(files.train), echo)
    return files


def write_split(folder: Path, files: DatasetFiles) -> Path:
    """``<search>/split.csv``: every image with its label, group and split (train, val, test),
    written once when a search starts, so that anyone can check that no image or group is in
    two splits."""
    import csv
    import io

    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["image", "label", "group", "split"])
    writer.writerows(files.split_rows())
    path = folder / "split.csv"
    write_atomic(path, out.getvalue())
    return path


def check_split(folder: Path, files: DatasetFiles) -> None:
    """On ``--resume``: the split made now must be the one ``split.csv`` recorded when the
    search started (a table edited since would move images between train, val and test).

    Raises:
        DataError: naming ``split.csv``, how many images differ and the first of them.
    """
    import csv

    path = folder / "split.csv"
    if not path.is_file():  # a search from before splits were written
        return
    with path.open(newline="", encoding="utf-8") as f:
        saved = {tuple(row) for row in list(csv.reader(f))[1:]}
    now = set(files.split_rows())
    changed = sorted({row[0] for row in saved ^ now})
    if changed:
        raise DataError(
            f"data: the data's split is not the one this search started with ({path}): "
            f"{len(changed)} images were added, dropped or moved, first {changed[0]}; restore "
            "the data as it was, or start a new search without --resume"
        )


def largest_trial_of(
    plan: SearchPlan, classes: int, address: str | None, cpus: int | None
) -> tuple[Footprint, int]:
    """The memory the search's largest trial needs, and its trial count; refused at once when it
    exceeds this machine's memory for a Ray started here (``start_ray`` checks Ray's own share
    once it runs).

    Raises:
        SkinsearchError: one line with the estimate and what to change.
    """
    largest = (largest_trial(plan, classes), plan.trials)
    if address is None:
        cpus = cpus or os.cpu_count() or 1
        problem = trial_memory_problem(plan.spec, *largest, machine_memory(), cpus, "this machine")
        if problem:
            raise SkinsearchError(problem)
    return largest


def _note_large_batches(plan: SearchPlan, images: int, echo: Echo) -> None:
    batch = plan.domains["batch_size"]
    largest = int(max(batch.values) if batch.is_discrete else batch.high)
    if largest > images:
        echo(
            f"note: batch_size {largest} is more than the {images} training images: each epoch "
            f"of a trial with it is one batch of {images}"
        )


def decode(plan: SearchPlan, files: DatasetFiles, folds: int | None) -> dict[Any, Any]:
    """(input size, fold) -> the decoded data: each size the trials use once, split into folds
    if asked."""
    spec = plan.spec
    decoded = decode_dataset(files, list(plan.input_sizes), spec.data.colour_constancy)
    return {
        (size, fold): d
        for size, whole in decoded.items()
        for fold, d in (
            enumerate(fold_splits(whole, folds, spec.search.seed)) if folds else [(None, whole)]
        )
    }


def put(datasets: dict[Any, Any], images: int, folds: int | None, echo: Echo) -> dict[Any, Any]:
    """Each decoded data set into Ray's object store, once, for every trial to share."""
    import ray

    refs = {key: ray.put(d) for key, d in datasets.items()}
    stored = sum(d.nbytes for d in datasets.values())
    sizes = sorted({size for size, _ in datasets})
    split = f" as {folds} k-fold splits of train+val" if folds else ""
    echo(
        f"decoded {images} images once, at {', '.join(f'{s}x{s}' for s in sizes)}{split}; "
        f"{_amount(stored)} in Ray's object store, shared by all trials"
    )
    return refs


def read_start_weights(plan: SearchPlan) -> dict[str, StateDict]:
    """Weights source -> its checked state dict, for each source the plan's ``pretrained``
    values ask for (none for a model trained from scratch).

    Raises:
        SkinsearchError: one line naming the file and what is wrong with it.
    """
    model = plan.spec.model
    domain = plan.domains.get("pretrained")
    if domain is None:
        return {}
    fields, weights = hparams_class(model), {}
    for value in domain.values:
        source = weights_source(model, fields.model_validate({"pretrained": value}))
        if source is not None and source not in weights:
            try:
                weights[source] = read_weights(model, source)
            except ValueError as exc:
                raise SkinsearchError(f"params.pretrained: {exc}") from None
    return weights


def put_weights(weights: dict[str, StateDict], model: str, echo: Echo) -> dict[str, Any]:
    """Each weights source's state dict into Ray's object store, once, for every trial."""
    import ray

    refs = {source: ray.put(dict(w)) for source, w in weights.items()}
    for source, w in weights.items():
        count = sum(t.numel() for t in w.values())
        nbytes = sum(t.numel() * t.element_size() for t in w.values())
        echo(
            f"weights: {model} from {_named(source)} ({count / 1e6:.2f} M backbone parameters) read "
            f"once; {_amount(nbytes)} in Ray's object store, shared by all trials"
        )
    return refs


def _named(source: str) -> str:
    return "its packaged ImageNet weights" if source == "imagenet" else source


def _amount(nbytes: int) -> str:
    return f"{nbytes / 2**20:.0f} MiB" if nbytes >= 2**20 else f"{max(nbytes, 1) / 2**10:.0f} KiB"


def _data_root(spec: SearchSpec) -> Path:
    if spec.data.builtin == "synthetic":
        return synthetic_root()
    return Path(spec.data.path).expanduser().resolve()


def _check_metric(spec: SearchSpec, class_names: list[str]) -> None:
    try:
        keys = class_keys(class_names)
    except ValueError as exc:
        raise DataError(f"data: {exc}") from None
    metric = spec.train.metric
    if metric.startswith("val_recall_") and metric[len("val_recall_") :] not in keys.values():
        raise DataError(
            f"train.metric: {metric} names no class of the data (classes: "
            f"{', '.join(keys.values())})"
        )
