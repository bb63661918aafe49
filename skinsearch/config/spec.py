"""Search-space files: YAML -> a validated ``SearchSpec``, with one located line per problem.

A file is read with ``yaml.safe_load`` semantics (plus a duplicate-key check), its sections are
validated by pydantic models with ``extra="forbid"``, and every value each hyperparameter can take
is checked against ``HParams``. Problems come back as ``file: yaml.path: message`` lines.
"""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from skinsearch._messages import format_error, kind_of, shown
from skinsearch._yaml import YamlTooLarge, error_location, error_problem, load_yaml
from skinsearch.config.objective import Objective
from skinsearch.config.params import Param, param_to_yaml, parse_params
from skinsearch.errors import SkinsearchError, SpecError
from skinsearch.models import model_names
from skinsearch.models._registry import missing_requirement

BUILTIN_PREFIX = "builtin:"
BUILTIN_DATASETS = ("synthetic", "synthetic_table")
BUILTIN_TABLES = ("synthetic_table",)  # built-in data sets that come as a labels table
# a data.path ending so is a labels table (data.tables.TABLE_SUFFIXES: config is above data)
TABLE_SUFFIXES = (".csv", ".tsv")
TABLE_KEYS: tuple[str, ...] = ("images", "image_column", "label_column", "label_columns")
TABLE_KEYS += ("classes", "class_map", "group_column", "split_column", "test_fraction")
METRICS = (
    "val_acc",
    "val_balanced_acc",
    "val_macro_f1",
    "val_auc",
    "val_loss",
    "train_acc",
    "train_loss",
)
_STRICT = ConfigDict(extra="forbid", strict=True, frozen=True)


class DataSpec(BaseModel):
    """Where the images come from."""

    model_config = _STRICT

    # a folder (train/ and val/ of class folders, or class folders + val_fraction) or builtin:NAME
    path: str = "builtin:synthetic"
    val_fraction: float | None = Field(None, gt=0.0, lt=1.0)  # only for a folder without val/
    # per-image colour correction when images are decoded (and by `predict`): "shades_of_gray"
    # evens out the colour casts of different cameras and lights; "none" keeps the pixels
    colour_constancy: Literal["none", "shades_of_gray"] = "none"
    # a labels table (CSV or TSV) instead of class folders: see skinsearch/data/tables.py
    labels: str | None = None
    images: str | None = None  # the table's images (default: the table's folder, recursively)
    image_column: str | None = None  # default: the first of image_id, image, image_name, ...
    label_column: str | None = None  # default: the first of dx, label, diagnosis, class
    label_columns: list[str] | None = Field(None, min_length=2)  # one-hot label columns
    classes: list[str] | None = Field(None, min_length=2)  # the classes, in this order
    class_map: dict[str, str | None] | None = None  # label -> class (null: leave it out)
    group_column: str | None = None  # lesion_id, patient_id: no group in two splits
    split_column: str | None = None  # a train/val/test column used as it is
    test_fraction: float | None = Field(None, gt=0.0, lt=1.0)  # held out, never searched on

    @model_validator(mode="before")
    @classmethod
    def _table_as_path(cls, data: Any) -> Any:
        # data.path (or --data) naming a CSV/TSV file is that labels table
        path = data.get("path") if isinstance(data, dict) else None
        is_table = isinstance(path, str) and path.lower().endswith(TABLE_SUFFIXES)
        if is_table and data.get("labels") is None:
            data = {key: value for key, value in data.items() if key != "path"}
            data["labels"] = path
        return data

    @model_validator(mode="after")
    def _table_keys_need_a_table(self) -> DataSpec:
        if self.labels is None:
            # a file may hold a table's keys and take the table from --data; not with a folder
            given = self.table_key_given
            if given and self.builtin is None:
                raise ValueError(self.table_key_problem)
            return self
        if self.path != DataSpec.model_fields["path"].default:
            raise ValueError(
                "give data.labels (a table, with data.images for its folder) or data.path "
                "(class folders), not both"
            )
        if self.label_column is not None and self.label_columns is not None:
            raise ValueError("give label_column (one column) or label_columns (one-hot), not both")
        if self.split_column is not None:
            clash = "val_fraction" if self.val_fraction is not None else "test_fraction"
            if getattr(self, clash) is not None:
                raise ValueError(f"split_column gives the split: remove {clash} (or split_column)")
        return self

    @field_validator("path")
    @classmethod
    def _known_builtin(cls, path: str) -> str:
        if path.startswith(BUILTIN_PREFIX) and path[len(BUILTIN_PREFIX) :] not in BUILTIN_DATASETS:
            valid = ", ".join(BUILTIN_PREFIX + n for n in BUILTIN_DATASETS)
            raise ValueError(f"unknown built-in data set {shown(path)} (valid: {valid})")
        return path

    @property
    def table_key_given(self) -> str | None:
        """The first key of a labels table set, if any (they apply only with ``labels``)."""
        return next((k for k in TABLE_KEYS if getattr(self, k) is not None), None)

    @property
    def table_key_problem(self) -> str:
        """What to say when a table's key is given without a table."""
        return (
            f"{self.table_key_given} applies to a labels table: give data.labels (a CSV or TSV "
            "file, or --data FILE.csv)"
        )

    @property
    def source(self) -> str:
        """Where the images come from, in words: the labels table (and its images' folder), a
        folder or a built-in data set."""
        if self.labels is None:
            return self.path
        return self.labels + ("" if self.images is None else f" (images in {self.images})")

    @property
    def is_table(self) -> bool:
        """Whether the images come with a labels table (the user's, or a built-in one)."""
        return self.labels is not None or self.builtin in BUILTIN_TABLES

    @property
    def builtin(self) -> str | None:
        """The built-in data set's name, or None for a folder."""
        return self.path[len(BUILTIN_PREFIX) :] if self.path.startswith(BUILTIN_PREFIX) else None

    def resolved(self) -> DataSpec:
        """This spec with a folder's path made absolute, as ``search.yaml`` records it: trials
        run in other working folders, and ``best --confirm`` or ``--resume`` may run elsewhere."""

        def absolute(path: str | None) -> str | None:
            return None if path is None else str(Path(path).expanduser().resolve())

        if self.labels is not None:
            return self.model_copy(
                update={"labels": absolute(self.labels), "images": absolute(self.images)}
            )
        if self.builtin is not None:
            return self
        return self.model_copy(update={"path": absolute(self.path)})


class TrainSpec(BaseModel):
    """How each trial trains and what counts as better."""

    model_config = _STRICT

    max_epochs: int = Field(20, ge=1, le=10_000)
    patience: int | None = Field(5, ge=1)  # epochs without improvement before a trial stops itself
    metric: str = "val_acc"  # drives ASHA, early stopping, checkpoints and `best`
    mode: Literal["max", "min"] | None = None  # default: min for *_loss, else max
    class_weights: Literal["none", "balanced"] = "none"
    label_smoothing: float = Field(0.0, ge=0.0, lt=1.0)
    tta: bool = False  # evaluate on the mean of the image and its horizontal and vertical flips
    # bf16: forward passes under bfloat16 autocast (weights, optimizer and BatchNorm stay fp32);
    # faster on GPUs and on CPUs with AVX512-BF16 or AMX (see docs/BENCHMARKS.md), slower elsewhere
    precision: Literal["fp32", "bf16"] = "fp32"
    # how an exported model turns probabilities into a class (fitted on val at export, see
    # results/calibrate.py): argmax, or prior_corrected (logit adjustment by the train prior)
    decision: Literal["argmax", "prior_corrected"] = "argmax"

    @field_validator("metric")
    @classmethod
    def _known_metric(cls, metric: str) -> str:
        if metric not in METRICS and not re.fullmatch(r"val_recall_[\w.-]+", metric):
            raise ValueError(
                f"unknown metric {shown(metric)} (valid: {', '.join(METRICS)}, val_recall_<class>)"
            )
        return metric

    @property
    def resolved_mode(self) -> Literal["max", "min"]:
        """``mode``, or its default for the metric."""
        return self.objective.mode

    @property
    def objective(self) -> Objective:
        """The metric and its direction: what "better" means for this search."""
        return Objective.of(self.metric, self.mode)


class SamplerSpec(BaseModel):
    """How configurations are drawn from the space."""

    model_config = _STRICT

    # grid: every combination of `grid` values, num_samples times, ranges drawn each time;
    # random: num_samples draws, grid values drawn like choices; tpe: num_samples through Optuna
    sampler: Literal["grid", "random", "tpe"] = "grid"
    num_samples: int = Field(1, ge=1, le=100_000)
    seed: int = Field(0, ge=0, le=2**32 - 1)  # numpy's and torch's seeds are 32-bit


class SchedulerSpec(BaseModel):
    """Early stopping across trials."""

    model_config = _STRICT

    type: Literal["asha", "none"] = "asha"
    grace_period: int = Field(1, ge=1)  # epochs every trial runs before ASHA may stop it
    reduction_factor: float = Field(3.0, gt=1.0)  # 1/reduction_factor of trials go on at each rung
    # a trial at a rung (and for tpe) is judged on its best epoch so far, which a one-epoch dip of
    # a noisy val metric does not sink (as Optuna's pruners), or on the rung epoch's own (last)
    compare: Literal["best", "last"] = "best"

    @model_validator(mode="before")
    @classmethod
    def _from_name(cls, value: Any) -> Any:
        return {"type": value} if isinstance(value, str) else value


class ResourcesSpec(BaseModel):
    """What one trial asks Ray for."""

    model_config = _STRICT

    cpus_per_trial: float = Field(1.0, gt=0.0)
    gpus_per_trial: float = Field(0.0, ge=0.0)  # used when Ray has GPUs; fractions share one


class ConfirmSpec(BaseModel):
    """Retraining the search's best configurations after it, to choose a winner on a mean
    rather than on one lucky run (``skinsearch best --confirm`` does the same on demand)."""

    model_config = _STRICT

    top: int = Field(3, ge=1)  # configurations retrained, the best by train.metric
    seeds: int | None = Field(None, ge=1)  # fresh seeds each; default 3, or 1 with folds
    folds: int | None = Field(None, ge=2, le=50)  # also once per k-fold split of train+val

    @model_validator(mode="after")
    def _more_than_one_run(self) -> ConfirmSpec:
        if self.resolved_seeds * (self.folds or 1) < 2:
            raise ValueError(
                "seeds: 1 without folds retrains each configuration once; "
                "use seeds: 2 or more, or add folds: 5"
            )
        return self

    @property
    def resolved_seeds(self) -> int:
        """``seeds``, or its default: 3, or 1 when ``folds`` are given."""
        return self.seeds or (1 if self.folds else 3)


class SearchSpec(BaseModel):
    """A validated search-space file."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$", max_length=100)
    model: str
    data: DataSpec = DataSpec()
    train: TrainSpec = TrainSpec()
    search: SamplerSpec = SamplerSpec()
    scheduler: SchedulerSpec = SchedulerSpec()
    resources: ResourcesSpec = ResourcesSpec()
    confirm: ConfirmSpec | None = None  # run after the search; none: choose on single runs
    params: dict[str, Param] = {}

    @field_validator("model")
    @classmethod
    def _registered(cls, model: str) -> str:
        if model not in model_names():
            raise ValueError(f"unknown model {shown(model)} (valid: {', '.join(model_names())})")
        hint = missing_requirement(model)
        if hint:
            raise ValueError(f"{model} needs a package that is not installed: {hint}")
        return model

    def to_yaml_dict(self) -> dict[str, Any]:
        """The spec in the YAML form it was read from, with every default filled in."""
        out = self.model_dump(mode="json", exclude={"params", "confirm"})
        if self.confirm is not None:  # absent otherwise, as in files written before it existed
            out["confirm"] = self.confirm.model_dump(mode="json")
        out["scheduler"] = self.scheduler.model_dump(mode="json")
        out["params"] = {name: param_to_yaml(p) for name, p in self.params.items()}
        return out


def load_spec(path: str | Path) -> SearchSpec:
    """Read and validate a search-space file.

    Raises:
        SpecError: with one ``file: yaml.path: message`` line per problem.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise SpecError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise SpecError(
            f"{path}: is a folder, not a search-space file; pass a YAML file "
            "(search_spaces/quick.yaml, say)"
        ) from None
    except (PermissionError, UnicodeDecodeError) as exc:
        raise SpecError(f"{path}: cannot read search space ({exc.__class__.__name__})") from None
    return loads_spec(text, source=str(path))


def loads_spec(text: str, source: str = "<spec>") -> SearchSpec:
    """Validate a search space given as YAML text (see ``load_spec``)."""
    try:
        raw = load_yaml(text)  # a SafeLoader subclass: safe
    except yaml.YAMLError as exc:
        raise SpecError(
            f"{source}:{error_location(exc)} invalid YAML: {error_problem(exc)}"
        ) from None
    except YamlTooLarge as exc:
        raise SpecError(f"{source}: refused: the YAML {exc}") from None
    return parse_spec(raw, source=source)


def parse_spec(raw: Any, source: str = "<spec>") -> SearchSpec:
    """Validate an already-parsed YAML document (see ``load_spec``)."""
    if not isinstance(raw, dict):
        raise SpecError(
            f"{source}: expected a mapping of sections (name, model, data, ...), got {kind_of(raw)}"
        )
    problems: list[str] = [
        f"{where}: must be a finite number, got {value}" for where, value in _non_finite(raw)
    ]
    if problems:  # before pydantic, which would name them less plainly (or take them)
        raise SpecError(*(f"{source}: {p}" for p in problems))
    raw_params = raw.get("params", {})
    try:
        spec = SearchSpec.model_validate({**raw, "params": {}})
    except ValidationError as exc:
        problems += [format_error(err, SearchSpec) for err in exc.errors()]
        spec = None
    model = raw.get("model") if raw.get("model") in model_names() else None
    params: dict[str, Param] = {}
    if not isinstance(raw_params, dict):
        problems.append(f"params: expected a mapping of hyperparameters, got {kind_of(raw_params)}")
    elif model is not None:
        params = parse_params(raw_params, model, problems)
    if problems:
        raise SpecError(*(f"{source}: {p}" for p in problems))
    assert spec is not None
    return spec.model_copy(update={"params": params})


def _non_finite(value: Any, where: str = "") -> list[tuple[str, float]]:
    # every .inf and .nan in the document, with its YAML path
    if isinstance(value, float) and not math.isfinite(value):
        return [(where or "(top level)", value)]
    if isinstance(value, dict):
        return [
            found
            for k, v in value.items()
            for found in _non_finite(v, f"{where}.{k}" if where else str(k))
        ]
    if isinstance(value, list):
        return [found for i, v in enumerate(value) for found in _non_finite(v, f"{where}[{i}]")]
    return []


# -- hyperparameters ---------------------------------------------------------------------------


def with_overrides(
    spec: SearchSpec, data_path: str | None, max_epochs: int | None, seed: int | None = None
) -> SearchSpec:
    """The spec with ``--data``, ``--max-epochs`` and ``--seed`` applied, its data path resolved.

    Raises:
        SkinsearchError: for a ``--data`` value that names no usable data set.
    """

    if data_path is not None:
        try:
            # --data replaces the file's data source: a folder, builtin:NAME, or a labels table
            source: dict[str, Any] = {"path": data_path, "labels": None, "images": None}
            if data_path.lower().endswith(TABLE_SUFFIXES):
                source = {"path": DataSpec.model_fields["path"].default, "labels": data_path}
                source["images"] = None
            data = spec.data.model_validate({**spec.data.model_dump(), **source})
        except ValidationError as exc:
            raise SkinsearchError(f"--data: {exc.errors()[0]['ctx']['error']}") from None
        spec = spec.model_copy(update={"data": data})
    if max_epochs is not None:
        spec = spec.model_copy(
            update={"train": spec.train.model_copy(update={"max_epochs": max_epochs})}
        )
    if seed is not None:
        spec = spec.model_copy(update={"search": spec.search.model_copy(update={"seed": seed})})
    return spec.model_copy(update={"data": spec.data.resolved()})
