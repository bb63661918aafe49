"""The progress table printed during a search, and the mending of a resumed search's lost
checkpoints. Their input stands in for Tune's Trial objects: the table reads only their status,
name, metric analysis and last result; the mending their status and Tune's own checkpoint
bookkeeping, which is real here."""

from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from skinsearch.config.objective import Objective
from skinsearch.store.layout import CHECKPOINT_FILES, STATE_FILE
from skinsearch.tune.callbacks import _mend_lost_checkpoint, progress_table


@dataclass
class Trial:
    name: str
    status: str
    last_result: dict[str, Any] = field(default_factory=dict)
    metric_analysis: dict[str, dict[str, float]] = field(default_factory=dict)

    def __str__(self) -> str:
        return self.name

    @property
    def trial_id(self) -> str:
        return self.name


def test_running_trials_show_their_latest_epoch_or_that_they_are_starting() -> None:
    trials = [
        Trial("t0", "RUNNING", {"epoch": 3, "val_acc": 0.5}, {"val_acc": {"max": 0.6}}),
        Trial("t1", "RUNNING", {"trial_id": "t1"}),  # started, no epoch reported yet
        Trial("t2", "TERMINATED", {"epoch": 5, "val_acc": 0.7}, {"val_acc": {"max": 0.7}}),
        Trial("t3", "PENDING"),
    ]
    table = progress_table(trials, Objective.of("val_acc", "max"), 42.0).splitlines()
    assert table[0] == "[   42s] 4 trials: 1 pending, 2 running, 1 terminated"
    assert table[1] == "  best so far: t2 val_acc=0.7000"
    assert table[2:] == ["  t0  epoch   3  val_acc=0.5000", "  t1  starting"]


@dataclass
class RestoredTrial:
    """What a resumed search's trial holds of its checkpoints (Tune's own classes inside)."""

    name: str
    status: str
    run_metadata: Any

    @property
    def latest_checkpoint_result(self) -> Any:
        return self.run_metadata.checkpoint_manager.latest_checkpoint_result

    def __str__(self) -> str:
        return self.name


def restored_trial(tmp_path: Path, scores: list[float], status: str = "PENDING") -> RestoredTrial:
    from ray.train._internal.checkpoint_manager import _CheckpointManager
    from ray.train._internal.session import _TrainingResult
    from ray.tune import Checkpoint, CheckpointConfig
    from ray.tune.trainable.metadata import _TrainingRunMetadata

    # as tuner.py configures it: the 2 best by the metric, and always the latest
    manager = _CheckpointManager(
        CheckpointConfig(num_to_keep=2, checkpoint_score_attribute="val_acc")
    )
    for epoch, score in enumerate(scores, start=1):
        folder = tmp_path / f"checkpoint_{epoch - 1:06d}"
        folder.mkdir()
        for name in CHECKPOINT_FILES:
            (folder / name).write_text("{}")
        metrics = {"training_iteration": epoch, "val_acc": score}
        manager.register_checkpoint(_TrainingResult(Checkpoint.from_directory(folder), metrics))
    metadata = _TrainingRunMetadata()
    metadata.checkpoint_manager = manager
    return RestoredTrial("trial_a", status, metadata)


def test_a_trial_whose_last_checkpoint_is_gone_goes_on_from_the_newest_kept(
    tmp_path: Path,
) -> None:
    trial = restored_trial(tmp_path, [0.5, 0.7, 0.6])  # the first is deleted as the worst
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint_000001", "checkpoint_000002"]
    assert _mend_lost_checkpoint(trial) is None  # nothing lost: left as it is
    shutil.rmtree(tmp_path / "checkpoint_000002")  # superseded after the driver's last snapshot

    note = _mend_lost_checkpoint(trial)

    assert note == (
        "trial_a: its last checkpoint (checkpoint_000002) was deleted, whole or in part, after "
        "the search's last snapshot; it goes on from epoch 2"
    )
    assert Path(trial.latest_checkpoint_result.checkpoint.path).name == "checkpoint_000001"
    assert trial.run_metadata.checkpoint_manager.best_checkpoint_result.metrics["val_acc"] == 0.7


def test_a_checkpoint_folder_left_without_its_files_counts_as_lost(tmp_path: Path) -> None:
    # On S3 a folder is a marker object: a driver killed while Tune deleted a superseded
    # checkpoint can leave the marker without the files (CI saw a resumed trial fail on the
    # missing state.json). An empty folder here stands in for that marker, which a real S3
    # server shows as a directory; tests/test_s3_storage.py runs the whole resume against one.
    trial = restored_trial(tmp_path, [0.5, 0.7, 0.6])
    for name in CHECKPOINT_FILES:
        (tmp_path / "checkpoint_000002" / name).unlink()

    assert "(checkpoint_000002) was deleted" in (_mend_lost_checkpoint(trial) or "")
    assert Path(trial.latest_checkpoint_result.checkpoint.path).name == "checkpoint_000001"

    (tmp_path / "checkpoint_000001" / STATE_FILE).unlink()  # one file short is not whole either
    assert _mend_lost_checkpoint(trial) == (
        "trial_a: its last checkpoint (checkpoint_000001) was deleted, whole or in part, after "
        "the search's last snapshot; it starts again"
    )
    assert trial.latest_checkpoint_result is None


def test_a_trial_with_no_checkpoint_left_starts_again_and_ended_trials_are_left_alone(
    tmp_path: Path,
) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    pending = restored_trial(tmp_path / "a", [0.5, 0.7])
    ended = restored_trial(tmp_path / "b", [0.5, 0.7], status="TERMINATED")
    for folder in [*(tmp_path / "a").iterdir(), *(tmp_path / "b").iterdir()]:
        shutil.rmtree(folder)

    assert _mend_lost_checkpoint(pending) == (
        "trial_a: its last checkpoint (checkpoint_000001) was deleted, whole or in part, after "
        "the search's last snapshot; it starts again"
    )
    assert pending.latest_checkpoint_result is None
    assert _mend_lost_checkpoint(ended) is None  # Tune does not restore it
    assert ended.latest_checkpoint_result is not None
