"""Folder data sets: find the images of each class, and the validation split."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from skinsearch.errors import DataError

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp")
DEFAULT_VAL_FRACTION = 0.2


@dataclass(frozen=True)
class DatasetFiles:
    """The image files of a data set, split into train and val, with integer labels."""

    root: Path
    class_names: list[str]
    train: list[tuple[Path, int]]
    val: list[tuple[Path, int]]
    split: str  # how val was chosen, for the log


def scan_dataset(
    root: str | Path, val_fraction: float | None = None, seed: int = 0
) -> DatasetFiles:
    """Find a data set's images.

    ``root`` holds either ``train/`` and ``val/`` folders of class folders, or class folders
    directly, of which a seeded, stratified ``val_fraction`` (default 0.2) becomes val.

    Raises:
        DataError: for a missing or empty folder, a class without images, or val classes that
            train lacks.
    """
    root = Path(root).expanduser().resolve()
    if not root.is_dir():
        raise DataError(
            f"data.path: {root} is not a folder (point data.path or --data at a folder of class folders)"
        )
    if (root / "train").is_dir() and (root / "val").is_dir():
        if val_fraction is not None:
            raise DataError(
                f"data.val_fraction: {root} has its own val/ folder; remove val_fraction"
            )
        train_classes = _class_files(root / "train")
        val_classes = _class_files(root / "val")
        extra = sorted(set(val_classes) - set(train_classes))
        if extra:
            raise DataError(
                f"data: {root / 'val'} has classes that train/ lacks: {', '.join(extra)} "
                "(add them to train/ or remove them from val/)"
            )
        names = sorted(train_classes)
        index = {name: i for i, name in enumerate(names)}
        train = [(f, index[c]) for c in names for f in train_classes[c]]
        val = [(f, index[c]) for c in sorted(val_classes) for f in val_classes[c]]
        return DatasetFiles(root, names, train, val, "train/ and val/ folders")
    classes = _class_files(root)
    fraction = DEFAULT_VAL_FRACTION if val_fraction is None else val_fraction
    names = sorted(classes)
    train, val = _stratified_split([classes[c] for c in names], fraction, seed)
    return DatasetFiles(
        root, names, train, val, f"{fraction:g} of each class held out (seed {seed})"
    )


def _class_files(folder: Path) -> dict[str, list[Path]]:
    class_dirs = sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not class_dirs:
        raise DataError(f"data: {folder} has no class folders (expected {folder}/<class>/<image>)")
    classes = {}
    for class_dir in class_dirs:
        files = sorted(
            p
            for p in class_dir.rglob("*")
            if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file() and not p.name.startswith(".")
        )
        if not files:
            raise DataError(
                f"data: class folder {class_dir} has no images ({', '.join(IMAGE_SUFFIXES)}); "
                "add images or remove the folder"
            )
        classes[class_dir.name] = files
    return classes


def _stratified_split(
    per_class: list[list[Path]], fraction: float, seed: int
) -> tuple[list[tuple[Path, int]], list[tuple[Path, int]]]:
    rng = np.random.default_rng(seed)
    train, val = [], []
    for label, files in enumerate(per_class):
        order = rng.permutation(len(files))
        # every class keeps at least one training image and, where it has two, one val image
        n_val = min(max(round(len(files) * fraction), 1), len(files) - 1)
        val += [(files[i], label) for i in sorted(order[:n_val])]
        train += [(files[i], label) for i in sorted(order[n_val:])]
    return train, val
