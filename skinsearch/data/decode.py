"""Decode every image once per search and keep it as uint8 arrays, one set per input size.

The arrays are what trials share through Ray's object store; nothing here imports Ray.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import warnings
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from skinsearch.data.folders import DatasetFiles
from skinsearch.errors import DataError

log = logging.getLogger(__name__)
RESAMPLE = Image.Resampling.BILINEAR  # antialiased when shrinking
SHADES_OF_GRAY_P = 6  # the Minkowski norm of Finlayson & Trezzi (2004), as ISIC entries use it
_decoded = 0  # image files read by this process; benchmarks print it


@dataclass
class DecodedData:
    """One input size's images as ``(N, size, size, 3)`` uint8 arrays, with labels."""

    size: int
    class_names: list[str]
    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    mean: list[float] = field(default_factory=list)  # per channel, on the [0, 1] scale, train set
    std: list[float] = field(default_factory=list)
    colour_constancy: str = "none"  # applied to every image when decoded
    # each train then val image's group (lesion, patient) as an integer code, for grouped folds;
    # None where the data set has no group column
    groups: np.ndarray | None = None

    @property
    def nbytes(self) -> int:
        """Bytes of image data."""
        return int(self.x_train.nbytes + self.x_val.nbytes)

    @property
    def preprocessing(self) -> dict[str, object]:
        """How an image becomes model input; stored in exported bundles for ``predict``."""
        return {
            "color": "RGB",
            "exif_transpose": True,
            "resize": [self.size, self.size],
            "resample": "bilinear",
            "colour_constancy": self.colour_constancy,
            "scale": 1 / 255,
            "mean": self.mean,
            "std": self.std,
            "layout": "NCHW",
        }


def load_image(
    path: str | Path, sizes: list[int], colour_constancy: str = "none"
) -> list[np.ndarray]:
    """Read an image file as RGB (EXIF orientation applied), resize it to each size, and
    correct its colours by ``colour_constancy`` ("none" or "shades_of_gray").

    Raises:
        OSError, ValueError, UnidentifiedImageError: when the file is not a readable image.
    """
    global _decoded
    _decoded += 1
    with Image.open(path) as opened:
        img: Image.Image = ImageOps.exif_transpose(opened)
        if img.mode in ("I", "I;16", "I;16B", "F"):  # 16-bit or float grayscale
            arr = np.asarray(img, dtype=np.float64)
            span = float(arr.max() - arr.min()) or 1.0
            img = Image.fromarray(((arr - arr.min()) * (255.0 / span)).astype(np.uint8))
        if img.mode == "P" or "transparency" in img.info:
            img = img.convert("RGBA")
        rgb = img.convert("RGB")
        rgb.load()
    resized = [np.asarray(rgb.resize((s, s), RESAMPLE), dtype=np.uint8) for s in sizes]
    correct = COLOUR_CONSTANCY[colour_constancy]
    return resized if correct is None else [correct(a) for a in resized]


def shades_of_gray(image: np.ndarray, p: int = SHADES_OF_GRAY_P) -> np.ndarray:
    """Colour constancy by Shades of Gray: estimate the light's colour as each channel's
    Minkowski p-norm mean, and scale the channels so that it becomes neutral grey.

    Dermoscopes and cameras differ in their colour casts; with this, an image's colours depend
    less on which one took it. ``image`` is ``(H, W, 3)`` uint8; the result too.
    """
    pixels = image.reshape(-1, 3).astype(np.float64) / 255.0
    light = np.power(np.power(pixels, p).mean(0), 1.0 / p)
    if light.max() == 0:  # a black image has no light to correct
        return image
    light = light / np.linalg.norm(light)
    gain = 1.0 / (np.maximum(light, 1e-6) * np.sqrt(3.0))  # a grey light: 1 on each channel
    out = np.clip(image.astype(np.float64) * gain, 0.0, 255.0)
    return np.rint(out).astype(np.uint8)


#: ``data.colour_constancy`` -> the correction of one uint8 image (None: leave it as it is).
COLOUR_CONSTANCY: dict[str, Callable[[np.ndarray], np.ndarray] | None] = {
    "none": None,
    "shades_of_gray": shades_of_gray,
}


def decode_count() -> int:
    """How many image files this process has decoded (one per file per search, at every size)."""
    return _decoded


def decode_dataset(
    files: DatasetFiles, sizes: list[int], colour_constancy: str = "none"
) -> dict[int, DecodedData]:
    """Decode every image of ``files`` once, resized to each of ``sizes``, its colours
    corrected by ``colour_constancy`` (``load_image``).

    Unreadable files are skipped with one warning that counts them and names the first few.

    Raises:
        DataError: when a class, or the whole data set, is left with no readable image.
    """
    items = files.train + files.val
    with ThreadPoolExecutor(max_workers=min(8, os.cpu_count() or 1)) as pool:
        decoded = list(pool.map(lambda item: _try_load(item[0], sizes, colour_constancy), items))
    bad = [str(path) for (path, _), arrs in zip(items, decoded, strict=True) if arrs is None]
    if len(bad) == len(items):
        raise DataError(
            f"data: none of the {len(items)} images under {files.root} could be read (first: "
            f"{bad[0]}); check that they are JPEG, PNG, BMP or WebP files"
        )
    if bad:
        shown = ", ".join(bad[:3]) + (", ..." if len(bad) > 3 else "")
        warnings.warn(f"skipped {len(bad)} unreadable image(s): {shown}", stacklevel=2)
    n_train = len(files.train)
    train = [
        (a, y) for (_, y), a in zip(files.train, decoded[:n_train], strict=True) if a is not None
    ]
    val = [(a, y) for (_, y), a in zip(files.val, decoded[n_train:], strict=True) if a is not None]
    _check_classes(files, [y for _, y in train], "train")
    if not val:
        raise DataError(f"data: no readable validation image under {files.root}")
    groups = _group_codes(files, decoded)
    out = {}
    for i, size in enumerate(sizes):
        x_train = np.stack([a[i] for a, _ in train])
        x_val = np.stack([a[i] for a, _ in val])
        mean, std = _channel_stats(x_train)
        out[size] = DecodedData(
            size=size,
            class_names=list(files.class_names),
            x_train=x_train,
            y_train=np.array([y for _, y in train], dtype=np.int64),
            x_val=x_val,
            y_val=np.array([y for _, y in val], dtype=np.int64),
            mean=mean,
            std=std,
            colour_constancy=colour_constancy,
            groups=groups,
        )
    return out


def _group_codes(files: DatasetFiles, decoded: list[list[np.ndarray] | None]) -> np.ndarray | None:
    """The groups of the readable train then val images as integer codes (None: no groups)."""
    if not files.groups:
        return None
    kept = [p for (p, _), a in zip(files.train + files.val, decoded, strict=True) if a is not None]
    codes = {g: i for i, g in enumerate(dict.fromkeys(files.groups[p] for p in kept))}
    return np.array([codes[files.groups[p]] for p in kept], dtype=np.int64)


def _try_load(path: Path, sizes: list[int], colour_constancy: str) -> list[np.ndarray] | None:
    try:
        return load_image(path, sizes, colour_constancy)
    except (OSError, ValueError, UnidentifiedImageError, Image.DecompressionBombError):
        return None


def _check_classes(files: DatasetFiles, labels: list[int], split: str) -> None:
    present = set(labels)
    missing = [name for i, name in enumerate(files.class_names) if i not in present]
    if missing:
        raise DataError(
            f"data: class {missing[0]!r} has no readable {split} image under {files.root} "
            "(add images or remove the class folder)"
        )


def fold_splits(data: DecodedData, folds: int, seed: int) -> list[DecodedData]:
    """k-fold cross-validation sets drawn from train and val together: set ``f`` validates on
    the ``f``-th of ``folds`` class-stratified parts and trains on the others, with the mean and
    std of its own training part. Where the data has groups (``data.group_column``), the parts
    are drawn in whole groups (scikit-learn's StratifiedGroupKFold): no lesion is validated on
    in a fold that trained on it.

    Raises:
        DataError: when a class has fewer images, or the data fewer groups, than ``folds``.
    """
    from sklearn.model_selection import StratifiedGroupKFold, StratifiedKFold

    x = np.concatenate([data.x_train, data.x_val])
    y = np.concatenate([data.y_train, data.y_val])
    counts = np.bincount(y, minlength=len(data.class_names))
    if counts.min() < folds:
        name = data.class_names[int(counts.argmin())]
        raise DataError(
            f"--folds {folds}: class {name!r} has {int(counts.min())} images in train and val "
            f"together, fewer than the folds; use --folds {max(2, int(counts.min()))} or fewer"
        )
    if data.groups is None:
        splits = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed).split(x, y)
    else:
        n_groups = len(np.unique(data.groups))
        if n_groups < folds:
            raise DataError(
                f"--folds {folds}: train and val hold {n_groups} groups of data.group_column, "
                f"fewer than the folds; use --folds {max(2, n_groups)} or fewer"
            )
        splitter = StratifiedGroupKFold(n_splits=folds, shuffle=True, random_state=seed)
        splits = splitter.split(x, y, data.groups)
    out = []
    for train, val in splits:
        mean, std = _channel_stats(x[train])
        out.append(
            dataclasses.replace(
                data,
                x_train=x[train],
                y_train=y[train],
                x_val=x[val],
                y_val=y[val],
                mean=mean,
                std=std,
                groups=None if data.groups is None else data.groups[np.concatenate([train, val])],
            )
        )
    return out


def _channel_stats(x: np.ndarray) -> tuple[list[float], list[float]]:
    flat = x.reshape(-1, 3)
    # float64 sums in chunks: exact enough, and no float copy of the whole set
    total = np.zeros(3)
    total_sq = np.zeros(3)
    for start in range(0, len(flat), 1 << 20):
        chunk = flat[start : start + (1 << 20)].astype(np.float64) / 255.0
        total += chunk.sum(0)
        total_sq += (chunk**2).sum(0)
    mean = total / len(flat)
    std = np.sqrt(np.maximum(total_sq / len(flat) - mean**2, 1e-12))
    return [round(float(m), 6) for m in mean], [round(float(s), 6) for s in std]
