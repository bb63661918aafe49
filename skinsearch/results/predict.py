"""Reading a bundle and predicting with it. ``load_bundle`` checks every file against a schema
(known model, class count, sizes, finite numbers, plain weights) before anything is allocated:
a bundle may come from elsewhere.
"""

from __future__ import annotations

import json
import math
import pickle
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import yaml
from pydantic import BaseModel, ConfigDict, ValidationError, field_validator

from skinsearch._yaml import YamlTooLarge, load_yaml
from skinsearch.errors import ResultsError
from skinsearch.results.export import BUNDLE_FILES, CALIBRATION_FILE
from skinsearch.store.records import BundleConfig

if TYPE_CHECKING:
    import torch

    from skinsearch.results.calibrate import Calibration


MAX_BUNDLE_TEXT = 1 << 20  # bytes: config.yaml, classes.json, preprocessing.json are far smaller


class Preprocessing(BaseModel):
    """``preprocessing.json``: how an image becomes the model's input."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    resize: tuple[int, int]
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    colour_constancy: str = "none"  # bundles written before it existed: none

    @field_validator("resize")
    @classmethod
    def _square_and_sane(cls, resize: tuple[int, int]) -> tuple[int, int]:
        if resize[0] != resize[1] or not 8 <= resize[0] <= 1024:
            raise ValueError(f"must be [N, N] with 8 <= N <= 1024, got {list(resize)}")
        return resize

    @field_validator("mean", "std")
    @classmethod
    def _finite(cls, values: tuple[float, ...]) -> tuple[float, ...]:
        if not all(math.isfinite(v) for v in values):
            raise ValueError(f"must be finite numbers, got {list(values)}")
        return values

    @field_validator("std")
    @classmethod
    def _positive(cls, values: tuple[float, ...]) -> tuple[float, ...]:
        if not all(v > 0 for v in values):
            raise ValueError(f"must be > 0, got {list(values)}")
        return values


@dataclass(frozen=True)
class Bundle:
    """A checked bundle, ready to predict."""

    folder: Path
    config: BundleConfig
    preprocessing: Preprocessing
    model: torch.nn.Module
    calibration: Calibration | None = None  # calibration.json, fitted on val at export


def load_bundle(folder: Path) -> Bundle:
    """Read and check a bundle: each file against its schema, classes.json against the config,
    the weights (plain tensors only) against the model the config describes, built on the meta
    device first so that a tampered config cannot make it allocate.

    Raises:
        ResultsError: one line naming the file and what is wrong with it.
    """
    import torch

    from skinsearch.data.decode import COLOUR_CONSTANCY
    from skinsearch.models import build_model, hparams_class, model_names

    missing = [f for f in BUNDLE_FILES if not (folder / f).is_file()]
    if missing:
        raise ResultsError(
            f"{folder} is not a skinsearch bundle (no {missing[0]}); "
            "export one with `skinsearch best --export DIR`"
        )
    config = _checked(folder / "config.yaml", BundleConfig, load_yaml)
    prep = _checked(folder / "preprocessing.json", Preprocessing, json.loads)
    if config.model not in model_names():
        raise _broken(folder / "config.yaml", f"unknown model {config.model!r}")
    if prep.colour_constancy not in COLOUR_CONSTANCY:
        raise ResultsError(
            f"{folder / 'preprocessing.json'}: unknown colour_constancy {prep.colour_constancy!r} "
            f"(this skinsearch knows {', '.join(COLOUR_CONSTANCY)}); predict with the version "
            "that exported it"
        )
    classes = _read_text(folder / "classes.json", json.loads)
    if classes != config.class_names:
        raise _broken(folder / "classes.json", "does not list the classes config.yaml names")
    try:
        hp = hparams_class(config.model).model_validate(config.hparams)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise _broken(folder / "config.yaml", f"hparams.{where}: {first['msg']}") from None
    size, n_classes = prep.resize[0], len(config.class_names)
    weights = _load_weights(folder / "model_state.pt")
    try:
        with torch.device("meta"):  # shapes only: nothing allocated yet
            shapes = build_model(config.model, hp, size, n_classes).state_dict()
    except ValueError as exc:
        raise _broken(folder / "config.yaml", str(exc)) from None
    _check_shapes(folder, shapes, weights)
    model = build_model(config.model, hp, size, n_classes)
    model.load_state_dict(weights)
    model.eval()
    return Bundle(folder, config, prep, model, _calibration(folder, n_classes))


def _calibration(folder: Path, n_classes: int) -> Calibration | None:
    from skinsearch.results.calibrate import Calibration

    path = folder / CALIBRATION_FILE
    if not path.is_file():  # exported before calibration, or its model trained on val
        return None
    calibration: Calibration = _checked(path, Calibration, json.loads)
    if calibration.prior is not None and len(calibration.prior) != n_classes:
        raise _broken(path, f"prior has {len(calibration.prior)} classes, the model {n_classes}")
    return calibration


def _read_text(path: Path, parse: Any) -> Any:
    try:
        if path.stat().st_size > MAX_BUNDLE_TEXT:
            raise _broken(path, f"is larger than {MAX_BUNDLE_TEXT >> 20} MiB")
        return parse(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise _broken(path, "is missing") from None
    except (OSError, UnicodeDecodeError, ValueError, yaml.YAMLError, YamlTooLarge) as exc:
        raise _broken(path, f"cannot be read ({exc.__class__.__name__})") from None


def _checked(path: Path, schema: type[Any], parse: Any) -> Any:
    raw = _read_text(path, parse)
    try:
        return schema.model_validate(raw)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "(top level)"
        raise _broken(path, f"{where}: {first['msg']}") from None


def _load_weights(path: Path) -> dict[str, Any]:
    import torch

    if path.stat().st_size == 0:
        raise _broken(path, "is empty")
    try:
        weights = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        if "Unsupported global" not in str(exc):  # not torch's format at all
            raise _broken(path, "is not a readable state_dict (UnpicklingError)") from None
        # PyTorch's own message suggests weights_only=False, which would run the file's code
        raise _broken(
            path, "holds objects other than plain tensors, refused unloaded (they could run code)"
        ) from None
    except (EOFError, RuntimeError, ValueError, OSError) as exc:
        raise _broken(path, f"is not a readable state_dict ({exc.__class__.__name__})") from None
    if not isinstance(weights, dict) or not all(
        isinstance(v, torch.Tensor) for v in weights.values()
    ):
        raise _broken(path, "is not a state_dict (a mapping of names to tensors)")
    return weights


def _check_shapes(folder: Path, expected: dict[str, Any], weights: dict[str, Any]) -> None:
    for name, tensor in expected.items():
        got = weights.get(name)
        if got is None:
            raise _broken(
                folder / "model_state.pt", f"has no {name} for the model config.yaml describes"
            )
        if tuple(got.shape) != tuple(tensor.shape):
            raise _broken(
                folder / "model_state.pt",
                f"{name} has shape {list(got.shape)} but config.yaml and classes.json describe "
                f"{list(tensor.shape)}",
            )
    extra = sorted(set(weights) - set(expected))
    if extra:
        raise _broken(folder / "model_state.pt", f"has {extra[0]}, which the model does not")


def _broken(path: Path, problem: str) -> ResultsError:
    return ResultsError(
        f"{path}: {problem}; this bundle cannot be used (export it again with "
        "`skinsearch best --export DIR`)"
    )


@dataclass(frozen=True)
class Prediction:
    """The top class of one image."""

    image: str
    label: str
    probability: float
    probabilities: dict[str, float]


#: images decoded and classified together: memory stays flat however many images are given
PREDICT_BATCH = 64


def image_files(paths: list[Path]) -> list[Path]:
    """The images to classify: each file as given, each folder's images (recursively, sorted,
    hidden files skipped).

    Raises:
        ResultsError: for a folder with no images in it.
    """
    from skinsearch.data.folders import IMAGE_SUFFIXES

    files: list[Path] = []
    for path in paths:
        if not path.is_dir():
            files.append(path)
            continue
        found = sorted(
            p
            for p in path.rglob("*")
            if p.suffix.lower() in IMAGE_SUFFIXES
            and not any(part.startswith(".") for part in p.relative_to(path).parts)
            and p.is_file()
        )
        if not found:
            raise ResultsError(
                f"{path}: a folder with no images in it ({', '.join(IMAGE_SUFFIXES)}, searched "
                "recursively)"
            )
        files.extend(found)
    return files


def predict(
    bundle: Path, images: list[Path], batch_size: int = PREDICT_BATCH
) -> Iterator[Prediction]:
    """Classify images (files or folders: ``image_files``) with an exported bundle (checked
    by ``load_bundle`` before this returns), ``batch_size`` images at a time, in order.

    Raises:
        ResultsError: for a folder that is not a usable bundle or holds no images; while
            iterating, for a file that is not a readable image.
    """
    checked = load_bundle(bundle)
    if builtin := checked.config.builtin_data:
        warnings.warn(
            f"{bundle} was trained on skinsearch's built-in data set ({builtin}: rendered "
            "lesion-like images, not photographs), so its predictions say nothing about real "
            "skin; train on your own images with --data DIR",
            stacklevel=2,
        )
    files = image_files(images)
    return _predictions(checked, files, batch_size)


def _predictions(checked: Bundle, files: list[Path], batch_size: int) -> Iterator[Prediction]:
    for start in range(0, len(files), batch_size):
        batch = files[start : start + batch_size]
        probs = _probabilities(checked, batch)
        names = checked.config.class_names
        for img, p in zip(batch, probs, strict=True):
            yield Prediction(
                str(img),
                names[int(p.argmax())],
                float(p.max()),
                dict(zip(names, map(float, p), strict=True)),
            )


def _probabilities(checked: Bundle, files: list[Path], calibrated: bool = True) -> np.ndarray:
    import torch
    from PIL import Image

    from skinsearch.data import load_image
    from skinsearch.training.trainer import tta_proba

    prep = checked.preprocessing
    arrays = []
    for image in files:
        try:
            arrays.append(load_image(image, [prep.resize[0]], prep.colour_constancy)[0])
        except (OSError, ValueError, Image.DecompressionBombError) as exc:
            reason = (
                "no such file"
                if isinstance(exc, FileNotFoundError)
                else "too many pixels to decode safely (PIL's limit)"
                if isinstance(exc, Image.DecompressionBombError)
                else "not a readable image"
            )
            raise ResultsError(f"{image}: {reason} (give JPEG, PNG, BMP or WebP files)") from None
    batch = torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).float() / 255.0
    mean = torch.tensor(prep.mean).view(1, 3, 1, 1)
    std = torch.tensor(prep.std).view(1, 3, 1, 1)
    with torch.inference_mode():
        probs = tta_proba(checked.model, (batch - mean) / std, checked.config.tta).numpy()
    if calibrated and checked.calibration is not None:
        return checked.calibration.apply(probs)
    return probs


def predictions_csv(rows: list[Prediction], class_names: list[str]) -> str:
    """``--csv``: one row per image with its top class and every class's probability."""
    import csv
    import io

    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["image", "label", "probability", *class_names])
    for p in rows:
        probabilities = (f"{p.probabilities[c]:.6f}" for c in class_names)
        writer.writerow([p.image, p.label, f"{p.probability:.6f}", *probabilities])
    return out.getvalue()


def new_csv_file(path: Path) -> Path:
    """``--csv`` names a new file in an existing folder: a user's file is never overwritten."""
    path = path.expanduser().resolve()
    if path.exists() or not path.parent.is_dir():
        problem = "exists" if path.exists() else "is in a folder that does not exist"
        raise ResultsError(
            f"--csv: {path} {problem}; give the name of a new file in an existing folder"
        )
    return path


def write_predictions_csv(path: Path, rows: list[Prediction]) -> None:
    """The whole table under a temporary name, then renamed: never a half-written CSV."""
    from skinsearch._files import write_atomic

    write_atomic(path, predictions_csv(rows, list(rows[0].probabilities) if rows else []))
