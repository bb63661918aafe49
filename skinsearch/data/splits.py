"""Splitting a labels table's rows into train, val and test without leaks: a split column as
it is (a group in two splits is an error), else the test then the val share held out, stratified
by class and seeded, in whole groups where there is a group column (scikit-learn's
``StratifiedGroupKFold``), per class otherwise.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from skinsearch.errors import DataError

if TYPE_CHECKING:
    from skinsearch.data.folders import DatasetFiles


@dataclass(frozen=True)
class Row:
    """One labelled image of the table: its line in the file, id, label, group and split."""

    line: int
    image_id: str
    label: str
    group: str | None
    split: str | None


@dataclass(frozen=True)
class Fractions:
    """The shares of the whole table held out for val and (if given) test, and the seed."""

    val: float
    test: float | None
    seed: int


def split_table(files: DatasetFiles) -> list[str]:
    """The split's images per class and split, as ``validate`` prints it."""
    splits = [("train", files.train), ("val", files.val), ("test", files.test)]
    width = max(len(n) for n in [*files.class_names, "total"])
    lines = [f"split: {files.split}", f"  {'':<{width}}  {'train':>6} {'val':>6} {'test':>6}"]
    counts = [
        np.bincount([y for _, y in items], minlength=len(files.class_names)) for _, items in splits
    ]
    for i, name in enumerate(files.class_names):
        lines.append(f"  {name:<{width}}  " + " ".join(f"{c[i]:>6}" for c in counts))
    lines.append(f"  {'total':<{width}}  " + " ".join(f"{len(items):>6}" for _, items in splits))
    return lines


def split_rows(
    table: Path,
    rows: list[Row],
    index: dict[str, int],
    fractions: Fractions,
    group_column: str | None,
    split_column: str | None,
) -> tuple[dict[int, str], str]:
    """Each row's split (by its line in the table) and how it was drawn, in words: the split
    column as given, else test then val held out, stratified by class, in whole groups."""
    if split_column is not None:
        first: dict[str, Row] = {}
        for r in rows:
            other = first.setdefault(r.group, r) if r.group is not None else r
            if other.split != r.split:
                raise DataError(
                    f"data.labels: {table}, lines {other.line} and {r.line}: group {r.group!r} "
                    f"is in both {other.split} and {r.split} of column {split_column!r}; "
                    "a group's images must share a split"
                )
        given = {r.line: r.split or "train" for r in rows}
        return given, f"column {split_column!r} of the table"
    y = np.array([index[r.label] for r in rows])
    groups = None
    if group_column is not None:
        ids = {g: i for i, g in enumerate(dict.fromkeys(r.group for r in rows))}
        groups = np.array([ids[r.group] for r in rows])
    drawn = np.array(["train"] * len(rows), dtype=object)
    remaining = np.arange(len(rows))
    parts = []
    if fractions.test is not None:
        held = _hold_out(
            y[remaining],
            None if groups is None else groups[remaining],
            fractions.test,
            fractions.seed,
            "test_fraction",
            table,
        )
        drawn[remaining[held]] = "test"
        remaining = remaining[~held]
        parts.append(f"{fractions.test:g} test")
    val_fraction = fractions.val
    # the fraction of what is left that makes val its share of the whole
    share = val_fraction / (1 - (fractions.test or 0.0))
    if share >= 1:
        raise DataError("data.val_fraction: with data.test_fraction leaves nothing to train on")
    held = _hold_out(
        y[remaining],
        None if groups is None else groups[remaining],
        share,
        fractions.seed + 1,
        "val_fraction",
        table,
    )
    drawn[remaining[held]] = "val"
    parts.append(f"{val_fraction:g} val")
    by = f"whole groups of {group_column!r}, " if groups is not None else ""
    how = f"{', '.join(reversed(parts))} held out ({by}stratified by class, seed {fractions.seed})"
    return {r.line: str(s) for r, s in zip(rows, drawn, strict=True)}, how


def _hold_out(
    y: np.ndarray, groups: np.ndarray | None, fraction: float, seed: int, key: str, table: Path
) -> np.ndarray:
    """A boolean mask of about ``fraction`` of the rows, stratified by class, whole groups."""
    from sklearn.model_selection import StratifiedGroupKFold

    if groups is None:
        return _per_class(y, fraction, seed)
    n_groups = len(np.unique(groups))
    folds = max(2, round(1 / fraction))
    if n_groups < folds:
        raise DataError(
            f"data.{key}: {table} has {n_groups} groups, too few to hold out {fraction:g} of "
            "them whole (add rows, or lower the fraction)"
        )
    splitter = StratifiedGroupKFold(n_splits=folds, shuffle=True, random_state=seed)
    _, held_idx = next(splitter.split(np.zeros(len(y)), y, groups))
    mask = np.zeros(len(y), dtype=bool)
    mask[held_idx] = True
    return mask


def _per_class(y: np.ndarray, fraction: float, seed: int) -> np.ndarray:
    # as a folder's val split: every class keeps one image and, where it has two, gives one
    rng = np.random.default_rng(seed)
    mask = np.zeros(len(y), dtype=bool)
    for label in np.unique(y):
        rows = np.flatnonzero(y == label)
        n = min(max(round(len(rows) * fraction), 1), len(rows) - 1)
        mask[rng.permutation(rows)[:n]] = True
    return mask
