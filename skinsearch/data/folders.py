"""Folder data sets: find the images of each class, and the validation split."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from skinsearch.errors import DataError

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp")
DEFAULT_VAL_FRACTION = 0.2
TRAIN_FOLDER = "train"
TEST_FOLDER = "test"  # held out: listed, never decoded by a search
VAL_FOLDERS = ("val", "valid", "validation")  # the names people give a split's val folder


@dataclass(frozen=True)
class DatasetFiles:
    """The image files of a data set, split into train, val and a held-out test (listed only:
    a search never decodes it), with integer labels and, for a grouped table, each image's
    group."""

    root: Path
    class_names: list[str]
    train: list[tuple[Path, int]]
    val: list[tuple[Path, int]]
    split: str  # how val was chosen, for the log
    test: list[tuple[Path, int]] = field(default_factory=list)
    groups: dict[Path, str] = field(default_factory=dict)

    def split_rows(self) -> list[tuple[str, str, str, str]]:
        """``split.csv``'s rows: image, label, group (empty without one) and split."""
        return [
            (str(path), self.class_names[label], self.groups.get(path, ""), name)
            for name, items in (("train", self.train), ("val", self.val), ("test", self.test))
            for path, label in items
        ]


def scan_dataset(
    root: str | Path, val_fraction: float | None = None, seed: int = 0
) -> DatasetFiles:
    """Find a data set's images.

    ``root`` holds either ``train/`` and ``val/`` (or ``valid/``, ``validation/``) folders of
    class folders, or class folders directly, of which a seeded, stratified ``val_fraction``
    (default 0.2) becomes val.

    Raises:
        DataError: for a missing or empty folder, half a split layout, a single class, a class
            without images or too small to split, or val classes that train lacks.
    """
    root = Path(root).expanduser().resolve()
    if not root.is_dir():
        raise DataError(
            f"data.path: {root} is not a folder (point data.path or --data at a folder of class folders)"
        )
    splits = _split_folders(root)
    if splits is not None:
        train_dir, val_dir = splits
        if val_fraction is not None:
            raise DataError(
                f"data.val_fraction: {root} has its own {val_dir.name}/ folder; remove val_fraction"
            )
        train_classes = _class_files(train_dir)
        val_classes = _class_files(val_dir, need_two=False)
        extra = sorted(set(val_classes) - set(train_classes))
        if extra:
            raise DataError(
                f"data: {val_dir} has classes that train/ lacks: {', '.join(extra)} "
                "(add them to train/ or remove them from val/)"
            )
        names = sorted(train_classes)
        index = {name: i for i, name in enumerate(names)}
        train = [(f, index[c]) for c in names for f in train_classes[c]]
        val = [(f, index[c]) for c in sorted(val_classes) for f in val_classes[c]]
        test = _test_folder(root, index)
        how = f"train/ and {val_dir.name}/ folders" + (", test/ held out" if test else "")
        return DatasetFiles(root, names, train, val, how, test)
    classes = _class_files(root)
    small = [c for c, files in sorted(classes.items()) if len(files) < 2]
    if small:
        raise DataError(
            f"data: class folder {root / small[0]} has 1 image, too few to split into train and "
            "val (add images, or give train/ and val/ folders)"
        )
    fraction = DEFAULT_VAL_FRACTION if val_fraction is None else val_fraction
    names = sorted(classes)
    train, val = _stratified_split([classes[c] for c in names], fraction, seed)
    return DatasetFiles(
        root, names, train, val, f"{fraction:g} of each class held out (seed {seed})"
    )


def _test_folder(root: Path, index: dict[str, int]) -> list[tuple[Path, int]]:
    """A split data set's ``test/`` class folders (held out: no search reads them), if any."""
    if not (root / TEST_FOLDER).is_dir():
        return []
    classes = _class_files(root / TEST_FOLDER, need_two=False)
    extra = sorted(set(classes) - set(index))
    if extra:
        raise DataError(
            f"data: {root / TEST_FOLDER} has classes that train/ lacks: {', '.join(extra)} "
            "(add them to train/ or remove them from test/)"
        )
    return [(f, index[c]) for c in sorted(classes) for f in classes[c]]


def _split_folders(root: Path) -> tuple[Path, Path] | None:
    """``train/`` and the val folder (``val/``, ``valid/`` or ``validation/``) of a split data
    set, or None for a folder of class folders.

    Raises:
        DataError: for half a split layout (train/ without val/, or val/ without train/).
    """
    vals = [root / n for n in VAL_FOLDERS if (root / n).is_dir()]
    train = root / TRAIN_FOLDER
    if len(vals) > 1:
        raise DataError(
            f"data: {root} has both {vals[0].name}/ and {vals[1].name}/; keep one val folder"
        )
    if train.is_dir() and vals:
        return train, vals[0]
    if train.is_dir():
        raise DataError(
            f"data: {root} has train/ but no val/ (or validation/); add val/ with the same class "
            "folders, or put the class folders at the top level to hold out data.val_fraction"
        )
    if vals:
        raise DataError(
            f"data: {root} has {vals[0].name}/ but no train/; add train/ with the class folders"
        )
    return None


def class_folder_files(folder: Path) -> dict[str, list[Path]]:
    """Each class folder's images (one class is enough: this is for evaluation, not training).

    Raises:
        DataError: for a folder without class folders or a class folder without images.
    """
    return _class_files(folder, need_two=False)


def _class_files(folder: Path, need_two: bool = True) -> dict[str, list[Path]]:
    class_dirs = sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not class_dirs:
        raise DataError(f"data: {folder} has no class folders (expected {folder}/<class>/<image>)")
    if need_two and len(class_dirs) == 1:
        raise DataError(
            f"data: {folder} has one class folder ({class_dirs[0].name}); a classifier needs two "
            "or more (one folder per class)"
        )
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
