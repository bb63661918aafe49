"""``skinsearch evaluate``: a bundle's figures on labelled images nobody tuned on, each checked
against scikit-learn or a direct count; and its one-line errors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from skinsearch.results.evaluate import (
    BOOTSTRAP_RESAMPLES,
    bootstrap_intervals,
    evaluation_record,
    expected_calibration_error,
    sensitivity_at_specificity,
)
from tests.conftest import cli
from tests.test_bad_input import one_line_error


def _scores(n: int = 300, classes: int = 3, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    # informative but imperfect probabilities: the true class gets a boost
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, classes, n)
    logits = rng.normal(size=(n, classes))
    logits[np.arange(n), labels] += 1.5
    probs = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    return labels, probs


def test_sensitivity_at_specificity_is_the_best_recall_with_enough_negatives_below() -> None:
    labels, probs = _scores()
    got = sensitivity_at_specificity(labels, probs, positive=1)
    scores, positive = probs[:, 1], labels == 1
    for s in (90, 95):
        # brute force over every threshold: call positive at score >= t
        best = 0.0
        for t in np.unique(scores):
            specificity = (scores[~positive] < t).mean()
            if specificity >= s / 100:
                best = max(best, (scores[positive] >= t).mean())
        assert got[f"sensitivity_at_{s}_specificity"] == pytest.approx(best, abs=1e-6)
        t = got[f"threshold_at_{s}_specificity"]
        assert t is not None and (scores[~positive] < t).mean() >= s / 100


def test_the_calibration_error_is_the_weighted_gap_per_confidence_bin() -> None:
    labels = np.array([0, 0, 1, 1])
    # confidences 0.9, 0.9 (one right, one wrong) and 0.6, 0.6 (both right)
    probs = np.array([[0.9, 0.1], [0.1, 0.9], [0.4, 0.6], [0.4, 0.6]])
    assert expected_calibration_error(labels, probs) == pytest.approx(
        (2 * abs(0.5 - 0.9) + 2 * abs(1.0 - 0.6)) / 4
    )


def test_the_record_agrees_with_scikit_learn_and_its_intervals_hold_the_estimate() -> None:
    from sklearn.metrics import (
        accuracy_score,
        balanced_accuracy_score,
        f1_score,
        roc_auc_score,
    )

    labels, probs = _scores()
    record = evaluation_record(labels, probs, ["a", "b", "c"], positive="b")
    m = record["metrics"]
    assert m["acc"] == pytest.approx(accuracy_score(labels, probs.argmax(1)), abs=1e-6)
    assert m["balanced_acc"] == pytest.approx(
        balanced_accuracy_score(labels, probs.argmax(1)), abs=1e-6
    )
    assert m["macro_f1"] == pytest.approx(
        f1_score(labels, probs.argmax(1), average="macro"), abs=1e-6
    )
    assert m["auc"] == pytest.approx(roc_auc_score(labels, probs, multi_class="ovr"), abs=1e-6)
    for name, (low, high) in record["intervals_95"].items():
        assert low < m[name] < high, name
        assert high - low < 0.25  # 300 images: a few points either side, not the whole range
    assert record["intervals_95"] == bootstrap_intervals(labels, probs, ["a", "b", "c"])  # seeded
    assert record["positive"]["class"] == "b"
    assert sum(map(sum, record["confusion_matrix"])) == 300
    assert BOOTSTRAP_RESAMPLES >= 1000


@pytest.fixture
def labelled(tmp_path: Path) -> Path:
    """Class folders a/, b/, c/ of random 20x20 images (the bundle fixture's classes)."""
    rng = np.random.default_rng(0)
    for name in "abc":
        (tmp_path / "labelled" / name).mkdir(parents=True)
        for i in range(6):
            pixels = rng.integers(0, 256, (20, 20, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(tmp_path / "labelled" / name / f"{i}.png")
    return tmp_path / "labelled"


def test_evaluate_on_a_folder_prints_the_table_and_writes_json_and_figures(
    bundle: Path, labelled: Path, tmp_path: Path
) -> None:
    out = tmp_path / "eval"
    result = cli(["evaluate", str(bundle), "--data", str(labelled), "--out", str(out)])
    lines = result.output.splitlines()
    assert lines[0] == f"18 images: every image under {labelled}"
    record = json.loads((out / "evaluation.json").read_text())
    # the same figures as predict's labels against the folders
    predicted = cli(["predict", str(bundle), str(labelled)]).output.splitlines()
    right = sum(Path(line.split("\t")[0]).parent.name == line.split("\t")[1] for line in predicted)
    assert record["metrics"]["acc"] == pytest.approx(right / 18, abs=1e-6)
    acc = record["metrics"]["acc"]
    low, high = record["intervals_95"]["acc"]
    assert lines[1] == f"  acc           {acc:.3f}   (95% CI {low:.3f}-{high:.3f})"
    assert any(line.split()[:1] == ["a"] and line.split()[-1] == "6" for line in lines)
    for png in ("confusion_matrix.png", "roc.png", "reliability.png"):
        with Image.open(out / png) as image:
            assert image.size[0] > 200
    assert f"evaluation.json and figures written to {out}" in result.output


def test_positive_reports_sensitivity_at_fixed_specificity(bundle: Path, labelled: Path) -> None:
    output = cli(["evaluate", str(bundle), "--data", str(labelled), "--positive", "b"]).output
    assert "  b: sensitivity at 90% specificity " in output
    assert "  b: sensitivity at 95% specificity " in output


def test_evaluate_errors_are_one_line(bundle: Path, labelled: Path, tmp_path: Path) -> None:
    assert one_line_error(["evaluate", str(bundle)]) == (
        f"{bundle}: its search held out no test split (set data.test_fraction, a split_column "
        "or a test/ folder and search again), or give labelled images with --data PATH"
    )
    assert one_line_error(
        ["evaluate", str(bundle), "--data", str(labelled), "--positive", "z"]
    ) == (f"--positive: 'z' is not a class of {bundle} (a, b, c)")
    (labelled / "zebra").mkdir()
    Image.new("RGB", (8, 8)).save(labelled / "zebra" / "0.png")
    assert one_line_error(["evaluate", str(bundle), "--data", str(labelled)]) == (
        f"{labelled}: label 'zebra' is not a class of the bundle (a, b, c); evaluate on images "
        "of the classes it was trained on"
    )
    taken = tmp_path / "taken"
    taken.mkdir()
    (taken / "notes.txt").write_text("mine")
    assert one_line_error(
        ["evaluate", str(bundle), "--data", str(labelled), "--out", str(taken)]
    ) == (f"--out: {taken} is not empty; give a new or empty folder")
    assert (taken / "notes.txt").read_text() == "mine"
    split = tmp_path / "split"
    (split / "train" / "a").mkdir(parents=True)
    (split / "val" / "a").mkdir(parents=True)
    assert one_line_error(["evaluate", str(bundle), "--data", str(split)]) == (
        f"--data: {split} has train/ and val/ but no test/; point --data at the class folders "
        f"to evaluate on ({split / 'val'}, say)"
    )


def test_a_split_folder_holds_out_its_test_folder_and_evaluate_reads_it(
    bundle: Path, labelled: Path, tmp_path: Path
) -> None:
    import shutil

    from skinsearch.data import scan_dataset

    root = tmp_path / "split"
    for split in ("train", "val", "test"):
        shutil.copytree(labelled, root / split)
    files = scan_dataset(root)
    assert len(files.test) == 18 and files.split == "train/ and val/ folders, test/ held out"
    assert {p.parts[-3] for p, _ in files.test} == {"test"}
    output = cli(["evaluate", str(bundle), "--data", str(root)]).output
    assert output.splitlines()[0] == f"18 images: {root / 'test'}"
