"""Exporting a trial's checkpoint as a bundle: a self-contained folder that ``predict`` reads.

An export is written to a temporary folder beside its target and renamed into place only when
complete, so an interrupted export leaves the earlier bundle (or nothing), never half of one;
``--force`` replaces an earlier bundle and nothing else.
"""

from __future__ import annotations

import json
import shutil
import tempfile
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from skinsearch._files import signals_held, write_atomic
from skinsearch.errors import ResultsError
from skinsearch.store.layout import HELD_OUT_FILE, SEARCH_FILE
from skinsearch.store.records import BundleConfig, CheckpointState, HeldOutRecord
from skinsearch.store.searches import load_search
from skinsearch.training.checkpoints import write_evaluation

if TYPE_CHECKING:
    from skinsearch.config.spec import TrainSpec
    from skinsearch.results.select import BestTrial

BUNDLE_FILES = ("config.yaml", "model_state.pt")  # what makes a folder a bundle
SPLIT_FILE = "split.csv"  # the search's split, copied into its bundles
TEST_METRICS_FILE = "test_metrics.json"  # the bundle's figures on that split's test images
CALIBRATION_FILE = "calibration.json"  # temperature and operating point, fitted on val
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
        SPLIT_FILE,
        TEST_METRICS_FILE,
        CALIBRATION_FILE,
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
    state: CheckpointState,
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
    state: CheckpointState,
    best: BestTrial,
    protocol: dict[str, Any] | None,
) -> None:
    import torch

    from skinsearch.models import build_model, hparams_class

    hp = hparams_class(state.model).model_validate(state.hparams)
    size = state.preprocessing["resize"][0]
    weights = torch.load(checkpoint / "model.pt", map_location="cpu", weights_only=True)
    model = build_model(state.model, hp, size, len(state.class_names))
    model.load_state_dict(weights)
    model.eval()
    torch.save(weights, folder / "model_state.pt")
    with torch.no_grad(), warnings.catch_warnings():
        # TorchScript is deprecated in torch 2.13 but still the format most serving stacks load
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.filterwarnings("ignore", message=r".*torch\.jit.* is deprecated")
        traced = torch.jit.trace(model, torch.zeros(1, 3, size, size))
        traced.save(str(folder / "model_torchscript.pt"))
    record = load_search(checkpoint.parents[1])  # <search>/<trial>/<checkpoint>
    config = BundleConfig(
        model=state.model,
        hparams=state.hparams,
        class_names=state.class_names,
        epoch=state.epoch,
        search=best.search,
        trial_id=best.score.trial_id,
        chosen_by={
            "metric": best.metric,
            "mode": best.mode,
            "protocol": "best epoch of a single run",
            "source": best.source,
            **(protocol or {}),
        },
        spec=record.spec.to_yaml_dict(),
    )
    (folder / "config.yaml").write_text(yaml.safe_dump(config.model_dump(), sort_keys=False))
    (folder / "classes.json").write_text(json.dumps(state.class_names, indent=1))
    (folder / "preprocessing.json").write_text(json.dumps(state.preprocessing, indent=1))
    write_evaluation(folder, state, f"{best.score.trial_id}, epoch {state.epoch}")
    folds = (protocol or {}).get("folds")
    _fit_on_val_and_score_on_test(folder, checkpoint.parents[1], record.spec.train, bool(folds))


def _fit_on_val_and_score_on_test(
    folder: Path, search_dir: Path, train: TrainSpec, trained_on_val: bool
) -> None:
    # The search's split goes with the bundle. Temperature (and the operating point) are fitted
    # on its val rows, unless the model trained on them (k-fold confirmation); then a held-out
    # test split is scored once, here, after the model was chosen
    from skinsearch.results.calibrate import calibrate_bundle
    from skinsearch.results.evaluate import evaluate_bundle, has_test_rows

    split = search_dir / SPLIT_FILE
    if not split.is_file():  # a search from before splits were written
        return
    shutil.copyfile(split, folder / SPLIT_FILE)
    if not trained_on_val:
        calibrate_bundle(folder, split, train)
    if has_test_rows(split):
        record = evaluate_bundle(folder).record
        # scored in the temporary folder the bundle is assembled in, which is gone after the
        # rename: name the split by its place in the bundle instead
        record.pop("bundle")
        record["data"] = f"the held-out test split of this bundle's {SPLIT_FILE}"
        (folder / TEST_METRICS_FILE).write_text(json.dumps(record, indent=1))


def exported_lines(bundle: Path) -> list[str]:
    """What to say after an export: where it went and, with a test split, its test figures."""
    lines = [f"exported to {bundle}   (try: skinsearch predict {bundle} IMAGE...)"]
    test = bundle / TEST_METRICS_FILE
    if test.is_file():
        record = json.loads(test.read_text())
        shown = "   ".join(
            f"{k} {'n/a' if v is None else f'{v:.3f}'}" for k, v in record["metrics"].items()
        )
        lines.append(
            f"held-out test ({record['images']} images, never searched on): {shown}   "
            f"(skinsearch evaluate {bundle} for the full table)"
        )
    return lines


def record_held_out(bundle: Path, search_dir: Path) -> list[str]:
    """After an export that scored a test split: its figures go into the search's store
    (``test_evaluation.json``, which ``report`` shows) and onto the trial's MLflow run as
    ``test_*`` metrics. Returns a note when MLflow could not take them; the bundle and the file
    are written either way."""
    from skinsearch.tracking.client import first_line, log_test_metrics

    test = bundle / TEST_METRICS_FILE
    if not test.is_file():
        return []
    scored = json.loads(test.read_text())
    config = yaml.safe_load((bundle / "config.yaml").read_text())
    calibration = scored.get("calibration") or {}
    held = HeldOutRecord(
        bundle=str(bundle),
        trial_id=config["trial_id"],
        epoch=config["epoch"],
        images=scored["images"],
        metrics=scored["metrics"],
        intervals_95=scored["intervals_95"],
        decision=calibration.get("decision", "argmax"),
        temperature=calibration.get("temperature"),
    )
    write_atomic(search_dir / HELD_OUT_FILE, held.model_dump_json(indent=1))
    saved = load_search(search_dir)
    if not saved.tracking_uri:
        return []
    try:
        found = log_test_metrics(
            saved.tracking_uri, saved.spec.name, saved.search, held.trial_id, held.metrics
        )
    except Exception as exc:  # MLflow unreachable: the figures are safe in the store
        return [
            f"note: MLflow did not take the test figures ({first_line(exc)}); they are in "
            f"{search_dir / HELD_OUT_FILE}"
        ]
    if not found:
        return [
            f"note: MLflow has no run of trial {held.trial_id}; the test figures are in "
            f"{search_dir / HELD_OUT_FILE} (skinsearch sync-mlflow adds the missing runs)"
        ]
    return []


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
