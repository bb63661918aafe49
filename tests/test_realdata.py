"""The shipped MLP space on real dermoscopic images (../shared/data/isic8_clean)."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from skinsearch.cli import main
from tests.conftest import ISIC8, SEARCH_SPACES

pytestmark = [
    pytest.mark.slow,
    pytest.mark.realdata,
    pytest.mark.skipif(not ISIC8.is_dir(), reason=f"real data set not found at {ISIC8}"),
]


def test_mlp_space_runs_exports_and_predicts_on_isic8(tmp_path: Path) -> None:
    runner = CliRunner()
    storage = tmp_path / "results"
    run = runner.invoke(
        main,
        [
            "run",
            str(SEARCH_SPACES / "mlp.yaml"),
            "--data",
            str(ISIC8),
            "--storage",
            str(storage),
            "--cpus",
            "2",
            "--max-trials",
            "2",
            "--max-epochs",
            "2",
        ],
    )
    assert run.exit_code == 0, run.output
    assert "8 classes, 2085 train / 113 val images" in run.output
    assert "search mlp: 2 of 88 trials" in run.output
    bundle = tmp_path / "bundle"
    best = runner.invoke(
        main,
        [
            "best",
            "--storage",
            str(storage),
            "--metric",
            "val_balanced_acc",
            "--export",
            str(bundle),
        ],
    )
    assert best.exit_code == 0, best.output
    image = sorted((ISIC8 / "val" / "melanoma").glob("*.jpg"))[0]
    predicted = runner.invoke(main, ["predict", str(bundle), str(image)])
    assert predicted.exit_code == 0, predicted.output
    _, label, prob = predicted.output.strip().split("\t")
    assert label in {p.name for p in (ISIC8 / "train").iterdir()}
    assert 0 < float(prob) <= 1
