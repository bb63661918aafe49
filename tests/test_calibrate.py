"""Temperature scaling and the prior-corrected operating point, fitted on val at export: they
recover what was built into synthetic scores, and a bundle's ``calibration.json`` is checked
before ``predict`` uses it."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from skinsearch.results.calibrate import Calibration, fit_calibration, fit_temperature, val_figures
from tests.conftest import cli
from tests.test_bad_input import one_line_error

NAMES = ["a", "b", "c"]


def _softmax(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max(1, keepdims=True))
    return e / e.sum(1, keepdims=True)


def _overconfident(n: int, temperature: float, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    # labels drawn from softmax(z / T): a model that reports softmax(z) is T times too sharp
    rng = np.random.default_rng(seed)
    z = rng.normal(scale=3.0, size=(n, 3))
    truth = _softmax(z / temperature)
    labels = np.array([rng.choice(3, p=p) for p in truth])
    return labels, _softmax(z)


def test_the_fitted_temperature_is_the_one_built_into_the_scores() -> None:
    labels, probs = _overconfident(6000, temperature=2.0)
    assert fit_temperature(labels, probs) == pytest.approx(2.0, rel=0.08)
    fitted = fit_calibration(labels, probs, NAMES, "argmax", [1 / 3] * 3, "val_acc", "max")
    before, after = fitted.val["before"], fitted.val["after"]
    assert after["nll"] < before["nll"] and after["ece"] < before["ece"] / 2  # type: ignore[operator]
    assert after["acc"] == before["acc"]  # a temperature never changes the argmax
    assert fitted.decision == "argmax" and fitted.tau == 0.0


def _imbalanced(seed: int = 0) -> tuple[np.ndarray, np.ndarray, list[float]]:
    # a calibrated model of a 80/10/10 population: argmax favours the common class
    rng = np.random.default_rng(seed)
    prior = np.array([0.8, 0.1, 0.1])
    labels = rng.choice(3, size=4000, p=prior)
    likelihood = rng.normal(scale=1.0, size=(4000, 3))
    likelihood[np.arange(4000), labels] += 1.0
    return labels, _softmax(likelihood + np.log(prior)), prior.tolist()


def test_prior_corrected_trades_accuracy_for_balanced_accuracy_on_the_chosen_metric() -> None:
    labels, probs, prior = _imbalanced()
    balanced = fit_calibration(
        labels, probs, NAMES, "prior_corrected", prior, "val_balanced_acc", "max"
    )
    assert balanced.tau > 0.5
    before, after = balanced.val["before"], balanced.val["after"]
    assert after["balanced_acc"] > before["balanced_acc"] + 0.05  # type: ignore[operator]
    assert after["acc"] < before["acc"]  # type: ignore[operator]
    accurate = fit_calibration(labels, probs, NAMES, "prior_corrected", prior, "val_acc", "max")
    assert abs(accurate.tau) <= 0.25  # argmax of calibrated scores is already the accurate one
    assert accurate.val["after"]["acc"] >= accurate.val["before"]["acc"] - 0.002  # type: ignore[operator]


def test_apply_is_temperature_then_prior() -> None:
    probs = np.array([[0.7, 0.2, 0.1]])
    c = Calibration(temperature=2.0, decision="prior_corrected", tau=1.0, prior=[0.5, 0.25, 0.25])
    expected = _softmax(np.log(probs) / 2.0 - np.log([0.5, 0.25, 0.25]))
    np.testing.assert_allclose(c.apply(probs), expected)
    assert val_figures(np.array([0]), probs, NAMES)["acc"] == 1.0


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        ({"temperature": -1.0}, "temperature: Input should be greater than 0"),
        ({"temperature": 1.0, "tau": float("nan")}, "tau: Value error, must be a finite number"),
        ({"temperature": 1.0, "prior": [0.5, 0.5]}, "prior has 2 classes, the model 3"),
        ({"temperature": 1.0, "decision": "vote"}, "decision: Input should be 'argmax' or "),
    ],
)
def test_a_tampered_calibration_is_one_line(
    bundle: Path, tmp_path: Path, content: dict[str, object], problem: str
) -> None:
    (bundle / "calibration.json").write_text(json.dumps(content))  # NaN as Python writes it
    image = tmp_path / "x.png"
    Image.new("RGB", (16, 16)).save(image)
    message = one_line_error(["predict", str(bundle), str(image)])
    assert message.startswith(f"{bundle / 'calibration.json'}: ")
    assert problem in message


def test_predict_uses_the_bundles_calibration(bundle: Path, tmp_path: Path) -> None:
    image = tmp_path / "x.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (16, 16, 3), np.uint8)).save(image)
    plain = float(cli(["predict", str(bundle), str(image)]).output.split("\t")[2])
    (bundle / "calibration.json").write_text(json.dumps({"temperature": 50.0}))
    flattened = float(cli(["predict", str(bundle), str(image)]).output.split("\t")[2])
    assert flattened < plain and flattened == pytest.approx(1 / 3, abs=0.02)


def test_validate_names_the_operating_point(tmp_path: Path) -> None:
    space = tmp_path / "s.yaml"
    space.write_text("name: s\nmodel: mlp\ntrain: {decision: prior_corrected}\n")
    output = cli(["validate", str(space)]).output
    assert ", decision prior_corrected (tau fitted on val at export)\n" in output
    space.write_text("name: s\nmodel: mlp\ntrain: {decision: vote}\n")
    assert "train.decision" in one_line_error(["validate", str(space)])
