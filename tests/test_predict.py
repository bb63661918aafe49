"""``skinsearch predict``: files and folders, in batches, with every probability in ``--csv``."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from skinsearch.errors import ResultsError
from skinsearch.results.predict import image_files, predict
from tests.conftest import cli
from tests.test_bad_input import one_line_error


@pytest.fixture
def images(tmp_path: Path) -> Path:
    """Seven images of different colours in a folder tree, with a hidden file and a note."""
    root = tmp_path / "photos"
    rng = np.random.default_rng(0)
    for i, rel in enumerate(["a.png", "b.jpg", "sub/c.PNG", "sub/d.bmp", "sub/deep/e.webp"]):
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 255, (20 + i, 20, 3), dtype=np.uint8)).save(path)
    (root / "notes.txt").write_text("not an image")
    (root / ".hidden").mkdir()
    Image.new("RGB", (20, 20)).save(root / ".hidden" / "x.png")
    return root


def test_a_folder_is_its_images_recursively_in_order(images: Path) -> None:
    names = [p.relative_to(images).as_posix() for p in image_files([images])]
    assert names == ["a.png", "b.jpg", "sub/c.PNG", "sub/d.bmp", "sub/deep/e.webp"]
    one = images / "a.png"
    assert image_files([one, images / "sub" / "deep"]) == [one, images / "sub/deep/e.webp"]


def test_batches_give_the_probabilities_of_one_batch(bundle: Path, images: Path) -> None:
    whole = list(predict(bundle, [images], batch_size=64))
    for size in (1, 2, 3):
        batched = list(predict(bundle, [images], batch_size=size))
        assert [p.image for p in batched] == [p.image for p in whole]
        for a, b in zip(batched, whole, strict=True):
            assert a.probabilities == pytest.approx(b.probabilities, abs=1e-6)


def test_csv_has_every_class_probability_per_image(
    bundle: Path, images: Path, tmp_path: Path
) -> None:
    out = tmp_path / "probabilities.csv"
    result = cli(["predict", str(bundle), str(images), "--csv", str(out), "--batch-size", "2"])
    printed = [line.split("\t") for line in result.output.strip().splitlines()[:-1]]
    assert len(printed) == 5
    assert result.output.strip().splitlines()[-1] == f"probabilities of 5 images written to {out}"
    with out.open() as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0]) == ["image", "label", "probability", "a", "b", "c"]
    for row, (image, label, probability) in zip(rows, printed, strict=True):
        assert row["image"] == image and row["label"] == label
        probabilities = [float(row[c]) for c in "abc"]
        assert sum(probabilities) == pytest.approx(1.0, abs=1e-5)
        assert max(probabilities) == pytest.approx(float(probability), abs=1e-3)
        assert row[label] == row["probability"]


def test_csv_never_overwrites_a_file_and_folders_without_images_are_named(
    bundle: Path, images: Path, tmp_path: Path
) -> None:
    mine = tmp_path / "mine.csv"
    mine.write_text("my own notes\n")
    assert one_line_error(["predict", str(bundle), str(images), "--csv", str(mine)]) == (
        f"--csv: {mine} exists; give the name of a new file in an existing folder"
    )
    assert mine.read_text() == "my own notes\n"
    nowhere = tmp_path / "no" / "such" / "p.csv"
    assert one_line_error(["predict", str(bundle), str(images), "--csv", str(nowhere)]) == (
        f"--csv: {nowhere} is in a folder that does not exist; give the name of a new "
        "file in an existing folder"
    )
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "readme.txt").write_text("no images here")
    assert one_line_error(["predict", str(bundle), str(empty)]) == (
        f"{empty}: a folder with no images in it (.jpg, .jpeg, .png, .bmp, .webp, "
        "searched recursively)"
    )
    with pytest.raises(ResultsError, match="a folder with no images"):
        predict(bundle, [empty])


def test_an_unreadable_image_in_a_later_batch_leaves_no_csv(
    bundle: Path, images: Path, tmp_path: Path
) -> None:
    broken = images / "sub" / "z_broken.png"
    broken.write_text("not a png")
    out = tmp_path / "p.csv"
    args = ["predict", str(bundle), str(images), "--csv", str(out), "--batch-size", "2"]
    assert one_line_error(args) == (
        f"{broken}: not a readable image (give JPEG, PNG, BMP or WebP files)"
    )
    assert not out.exists() and list(tmp_path.glob(".p.csv*")) == []
