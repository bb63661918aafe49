"""Typed records of what a search leaves on disk and what is known of each trial."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, Field

from skinsearch.config.plan import ConfirmPlan

if TYPE_CHECKING:
    from skinsearch.config.spec import SearchSpec

MAX_CLASSES = 10_000  # more class names than this in a bundle is a damaged or hostile file


class TrialEnd(StrEnum):
    """How a trial ended (the ``skinsearch.end`` tag of its MLflow run)."""

    COMPLETED = "completed"  # ran its max_epochs
    EARLY_STOPPED = "early_stopped"  # its patience ran out
    STOPPED_BY_ASHA = "stopped_by_asha"
    ERRORED = "errored"
    INTERRUPTED = "interrupted"  # Ctrl-C, SIGTERM, or the driver died
    STORAGE_FAILED = "storage_failed"  # the search stopped itself for a full or failing storage


#: ends after which a resumed search runs the trial on (None: it never ended)
UNFINISHED_ENDS = (None, TrialEnd.INTERRUPTED, TrialEnd.STORAGE_FAILED)


@dataclass
class TrialRecord:
    """What the tracker knows of one trial."""

    run_id: str
    name: str
    config: dict[str, Any]
    trial_dir: str = ""
    epochs: int = 0
    last: dict[str, float] = field(default_factory=dict)
    best: dict[str, float] = field(default_factory=dict)  # metrics of the best epoch
    end: str | None = None  # a TrialEnd
    error: str = ""
    closed: bool = False  # its MLflow run was ended
    open_tried: bool = False  # creating its MLflow run was attempted


@dataclass(frozen=True)
class SearchRecord:
    """``search.yaml``: a search as it was started, read back (``searches.load_search``)."""

    search: str  # its name: the folder under the storage, the MLflow parent run
    spec: SearchSpec  # the resolved spec it ran
    classes: list[str]
    trials: int  # how many it planned
    storage: str  # the folder or URI, as the user named it
    tracking_uri: str | None
    folds: int | None = None  # k-fold splits of train+val (a confirmation's)
    confirms: str | None = None  # a confirmation's: the search it confirms


class CheckpointState(BaseModel):
    """A checkpoint's ``state.json``: the loop's state at that epoch, the epoch's metrics and
    evaluation, and what rebuilds the model (its name, hyperparameters, classes, preprocessing).
    Written by ``Trainer.save``; read by resume, ``best``, export, report and tracking."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    epoch: int
    best: float | None  # the best score so far on the search's metric
    best_epoch: int
    bad_epochs: int  # epochs since the best, for patience
    ema_updates: int = 0  # optimizer steps in the moving average of the weights (hp.ema)
    metrics: dict[str, float | None]  # this epoch's; None for an undefined one (AUC, one class)
    evaluation: dict[str, Any]  # ``metrics.Evaluation`` as a dict
    model: str
    hparams: dict[str, Any]
    class_names: list[str]
    preprocessing: dict[str, Any]  # as ``DecodedData.preprocessing``


class ConfirmedWinner(BaseModel):
    """The configuration a confirmation chose, and its mean and std on the plan's metric."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    from_trial: str  # the search trial whose configuration it is
    mean: float | None  # None: no run of it reported a finite value
    std: float | None


class HeldOutRecord(BaseModel):
    """A search's ``test_evaluation.json``: the model last exported from it, scored once on the
    held-out test split after it was chosen. Written by ``export.record_held_out``; read by
    ``report``."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    bundle: str  # where it was exported
    trial_id: str
    epoch: int
    images: int
    metrics: dict[str, float | None]  # acc, balanced_acc, macro_f1, auc, ece
    intervals_95: dict[str, list[float | None]]  # bootstrap intervals of the headline metrics
    decision: str = "argmax"
    temperature: float | None = None  # None: the bundle has no calibration


class ConfirmationRecord(BaseModel):
    """A confirmed search's ``confirmation.json``: the plan it was confirmed by, the search the
    runs ran in, and the winner. Written by ``confirm.save_confirmation``; read by ``best``,
    ``report`` and a resumed ``run``."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    k: int
    seeds: int
    metric: str
    mode: str
    folds: int | None = None
    confirmed_in: str  # the confirmation search, beside the confirmed one
    winner: ConfirmedWinner
    representative: str  # the winner's run closest to its mean (a trial folder's name)

    @property
    def plan(self) -> ConfirmPlan:
        """The plan this confirmation followed."""
        return ConfirmPlan(self.k, self.seeds, self.metric, self.mode, self.folds)


class BundleConfig(BaseModel):
    """An exported bundle's ``config.yaml``: the model and how to rebuild it, where it came from
    and how it was chosen, and the resolved spec of its search. Written by ``export``; read (and
    checked) by ``predict``."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    model: str
    hparams: dict[str, Any]
    class_names: list[str] = Field(min_length=2, max_length=MAX_CLASSES)
    epoch: int | None = None  # the checkpoint's epoch
    search: str | None = None
    trial_id: str | None = None
    chosen_by: dict[str, Any] = {}  # metric, mode, protocol, source (and a confirmation's)
    spec: dict[str, Any] = {}

    @property
    def tta(self) -> bool:
        """Whether the search evaluated (and so predicts) on the mean over flips."""
        train = self.spec.get("train")
        return isinstance(train, dict) and train.get("tta") is True

    @property
    def builtin_data(self) -> str | None:
        """``builtin:NAME`` when the model was trained on a built-in data set (not real images)."""
        data = self.spec.get("data")
        path = data.get("path") if isinstance(data, dict) else None
        return path if isinstance(path, str) and path.startswith("builtin:") else None
