"""Bundles: exporting a trial's checkpoint as a self-contained folder, and predicting with one.

An export is written to a temporary folder beside its target and renamed into place only when
complete, so an interrupted export leaves the earlier bundle (or nothing), never half of one;
``--force`` replaces an earlier bundle and nothing else. A bundle is read back through
``load_bundle``, which checks every file against a schema (known model, class count, sizes,
finite numbers, plain weights) before anything is allocated: a bundle may come from elsewhere.
"""

from __future__ import annotations

import json
import math
import pickle
import shutil
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from skinsearch._files import signals_held
from skinsearch._yaml import YamlTooLarge, load_yaml
from skinsearch.errors import ResultsError
from skinsearch.store.layout import SEARCH_FILE
from skinsearch.training.checkpoints import write_evaluation

if TYPE_CHECKING:
    import torch

    from skinsearch.results.select import BestTrial

BUNDLE_FILES = ("config.yaml", "model_state.pt")  # what makes a folder a bundle
#: every file an export writes; ``--force`` replaces a folder that holds these and nothing else
BUNDLE_CONTENTS = frozenset(
    {
        *BUNDLE_FILES,
        "model_torchscript.pt",
        "classes.json",
        "preprocessing.json",
        "metrics.json",
        "confusion_matrix.png",
        "classification_report.txt",
        "classification_report.json",
    }
)
#: files that mark a folder as a results storage or a search: never exported into
STORAGE_MARKERS = ("mlflow.db", SEARCH_FILE)


def check_export_dir(export_dir: Path, force: bool, storage: Path | None = None) -> None:
    """Refuse an export folder that is a file, that is, holds or lies inside a results storage
    or a search, or that holds anything; with ``force``, one that holds an earlier bundle and
    nothing else is allowed (the export replaces it, and only it).

    Raises:
        ResultsError: naming the folder and what to do instead.
    """
    if export_dir.exists() and not export_dir.is_dir():
        raise ResultsError(f"--export: {export_dir} is a file, not a folder; choose a folder")
    for results in [storage] if storage is not None else []:
        if export_dir == results or results in export_dir.parents:
            raise ResultsError(
                f"--export: {export_dir} is inside the results storage {results}; export "
                "outside it (bundles/NAME, say)"
            )
        if export_dir in results.parents:
            raise ResultsError(
                f"--export: {export_dir} holds the results storage {results}; export "
                "to a folder of its own (bundles/NAME, say)"
            )
    for folder in (export_dir, *export_dir.parents):
        marker = next((folder / m for m in STORAGE_MARKERS if (folder / m).exists()), None)
        if marker is not None:
            raise ResultsError(
                f"--export: {export_dir} is inside a skinsearch search or storage ({marker} "
                "is there); export outside it (bundles/NAME, say)"
            )
    if not export_dir.is_dir() or not any(export_dir.iterdir()):
        return
    if not force:
        raise ResultsError(
            f"--export: {export_dir} is not empty; choose another folder or pass --force"
        )
    foreign = sorted(p.name for p in export_dir.iterdir() if not _bundle_file(p))
    if foreign or not all((export_dir / f).is_file() for f in BUNDLE_FILES):
        what = f"it holds {foreign[0]}" if foreign else f"it has no {BUNDLE_FILES[0]}"
        raise ResultsError(
            f"--export: {export_dir} is not a skinsearch bundle ({what}); --force replaces only "
            "an earlier bundle: choose another folder"
        )


def _bundle_file(path: Path) -> bool:
    return path.name in BUNDLE_CONTENTS and path.is_file() and not path.is_symlink()


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
    epoch of a single run). See the module docstring for how it replaces an earlier bundle."""
    storage = checkpoint.parents[2]  # <storage>/<search>/<trial>/<checkpoint>
    check_export_dir(export_dir, force, storage)
    export_dir.parent.mkdir(parents=True, exist_ok=True)
    partial = Path(tempfile.mkdtemp(prefix=f".{export_dir.name}.partial-", dir=export_dir.parent))
    try:
        _write_bundle(partial, checkpoint, state, best, protocol)
        _swap_in(partial, export_dir)
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)  # our own temporary folder, never the user's
        raise
    return export_dir


def _write_bundle(
    folder: Path,
    checkpoint: Path,
    state: dict[str, Any],
    best: BestTrial,
    protocol: dict[str, Any] | None,
) -> None:
    import torch

    from skinsearch.config.hparams import HParams
    from skinsearch.models import build_model

    hp = HParams.model_validate(state["hparams"])
    size = state["preprocessing"]["resize"][0]
    weights = torch.load(checkpoint / "model.pt", map_location="cpu", weights_only=True)
    model = build_model(state["model"], hp, size, len(state["class_names"]))
    model.load_state_dict(weights)
    model.eval()
    torch.save(weights, folder / "model_state.pt")
    with torch.no_grad(), warnings.catch_warnings():
        # TorchScript is deprecated in torch 2.13 but still the format most serving stacks load
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.filterwarnings("ignore", message=r".*torch\.jit.* is deprecated")
        traced = torch.jit.trace(model, torch.zeros(1, 3, size, size))
        traced.save(str(folder / "model_torchscript.pt"))
    search_doc = yaml.safe_load((checkpoint.parents[1] / SEARCH_FILE).read_text())
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
    (folder / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    (folder / "classes.json").write_text(json.dumps(state["class_names"], indent=1))
    (folder / "preprocessing.json").write_text(json.dumps(state["preprocessing"], indent=1))
    write_evaluation(folder, state, f"{best.score.trial_id}, epoch {state['epoch']}")


def _swap_in(partial: Path, export_dir: Path) -> None:
    # Two renames, with Ctrl-C held off between them: the folder holds the old bundle or the
    # new one. The old one is then removed file by file (only bundle files: checked before).
    old = None
    with signals_held() as held:
        if export_dir.exists():
            old = export_dir.with_name(f".{export_dir.name}.replaced-{partial.name[-8:]}")
            export_dir.rename(old)
        partial.rename(export_dir)
    if held:  # the export is complete: the Ctrl-C now stops the command
        raise KeyboardInterrupt
    if old is not None:
        for file in old.iterdir():
            if _bundle_file(file):
                file.unlink()
        old.rmdir()


# -- reading a bundle ----------------------------------------------------------------------------

MAX_BUNDLE_TEXT = 1 << 20  # bytes: config.yaml, classes.json, preprocessing.json are far smaller
MAX_CLASSES = 10_000


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


class BundleConfig(BaseModel):
    """The parts of ``config.yaml`` that predicting reads."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    model: str
    hparams: dict[str, Any]
    class_names: list[str] = Field(min_length=2, max_length=MAX_CLASSES)
    spec: dict[str, Any] = {}

    @property
    def tta(self) -> bool:
        """Whether the search evaluated (and so predicts) on the mean over flips."""
        train = self.spec.get("train")
        return isinstance(train, dict) and train.get("tta") is True


@dataclass(frozen=True)
class Bundle:
    """A checked bundle, ready to predict."""

    folder: Path
    config: BundleConfig
    preprocessing: Preprocessing
    model: torch.nn.Module


def load_bundle(folder: Path) -> Bundle:
    """Read and check a bundle: each file against its schema, classes.json against the config,
    the weights (plain tensors only) against the model the config describes, built on the meta
    device first so that a tampered config cannot make it allocate.

    Raises:
        ResultsError: one line naming the file and what is wrong with it.
    """
    import torch

    from skinsearch.config.hparams import HParams
    from skinsearch.data.decode import COLOUR_CONSTANCY
    from skinsearch.models import build_model, model_names

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
        hp = HParams.model_validate(config.hparams)
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
    return Bundle(folder, config, prep, model)


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


def predict(bundle: Path, images: list[Path]) -> list[Prediction]:
    """Classify images with an exported bundle (checked by ``load_bundle``).

    Raises:
        ResultsError: for a folder that is not a usable bundle or a file that is not a readable
            image.
    """
    import torch
    from PIL import Image

    from skinsearch.data import load_image
    from skinsearch.training.trainer import tta_proba

    checked = load_bundle(bundle)
    prep = checked.preprocessing
    arrays = []
    for image in images:
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
    names = checked.config.class_names
    return [
        Prediction(
            str(img),
            names[int(p.argmax())],
            float(p.max()),
            dict(zip(names, map(float, p), strict=True)),
        )
        for img, p in zip(images, probs, strict=True)
    ]
