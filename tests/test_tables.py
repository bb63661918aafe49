"""Data sets as people download them: a labels table over a folder of images (HAM10000's
metadata with lesion ids, ISIC 2019's one-hot ground truth), split with no lesion in two splits.

The tables are written over real dermoscopic images copied from ``../shared/data/isic8_clean``
where it is present, and over rendered lesion images where it is not (a fresh clone without the
shared data), so that every test runs either way."""

from __future__ import annotations

import csv
import json
import re
import shutil
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml
from PIL import Image

from skinsearch.config.spec import DataSpec
from skinsearch.data.synthetic import CLASSES, render
from skinsearch.data.tables import scan_table
from skinsearch.errors import DataError
from tests.conftest import ISIC8, mlflow_runs

HAM_CLASSES = ["akiec", "bcc", "bkl", "df", "mel", "nv"]
ISIC8_OF = {  # HAM10000's dx codes for isic8's class folders
    "akiec": "actinic_keratosis",
    "bcc": "basal_cell_carcinoma",
    "bkl": "pigmented_benign_keratosis",
    "df": "dermatofibroma",
    "mel": "melanoma",
    "nv": "nevus",
}
PER_CLASS = 14  # images of each class: 7 lesions, 1 to 3 images each


def _image_sources(n: int) -> dict[str, list[Path | None]]:
    """Per class, ``n`` isic8 images to copy, or None (rendered instead) without isic8."""
    out: dict[str, list[Path | None]] = {}
    for dx in HAM_CLASSES:
        folder = ISIC8 / "train" / ISIC8_OF[dx]
        out[dx] = sorted(folder.iterdir())[:n] if folder.is_dir() else [None] * n  # type: ignore[misc]
    return out


def _write_image(source: Path | None, target: Path, dx: str, i: int) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    if source is not None:
        shutil.copyfile(source, target)
        return
    look = CLASSES[sorted(CLASSES)[HAM_CLASSES.index(dx)]]
    Image.fromarray(render(look, np.random.default_rng([HAM_CLASSES.index(dx), i]), 40)).save(
        target
    )


@pytest.fixture(scope="module")
def ham(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A HAM10000-style download: ``HAM10000_metadata.csv`` (lesion_id, image_id, dx, dx_type,
    age, sex, localization) and the images, without extension in the table, in two part
    folders."""
    root = tmp_path_factory.mktemp("ham")
    rows = []
    for dx, sources in _image_sources(PER_CLASS).items():
        lesion = 0
        for i, source in enumerate(sources):
            if i in (0, 1, 3, 6, 8, 11, 13):  # 7 lesions of 1 to 3 images
                lesion += 1
            image_id = f"ISIC_{HAM_CLASSES.index(dx)}{i:04d}"
            part = "HAM10000_images_part_1" if i % 2 else "HAM10000_images_part_2"
            _write_image(source, root / part / f"{image_id}.jpg", dx, i)
            lesion_id = f"HAM_{dx}{lesion:03d}"
            rows.append([lesion_id, image_id, dx, "histo", "55.0", "male", "back"])
    header = ["lesion_id", "image_id", "dx", "dx_type", "age", "sex", "localization"]
    _write_csv(root / "HAM10000_metadata.csv", header, rows)
    return root


def _write_csv(path: Path, header: list[str], rows: list[list[str]], delimiter: str = ",") -> None:
    with path.open("w", newline="") as f:
        writer = csv.writer(f, delimiter=delimiter)
        writer.writerow(header)
        writer.writerows(rows)


def data(**keys: Any) -> DataSpec:
    return DataSpec.model_validate(keys).resolved()


def test_a_ham10000_table_splits_by_lesion_with_a_held_out_test(ham: Path) -> None:
    spec = data(
        labels=str(ham / "HAM10000_metadata.csv"), group_column="lesion_id", test_fraction=0.15
    )
    files = scan_table(spec, seed=0)
    assert files.class_names == HAM_CLASSES
    assert files.root == ham
    total = len(files.train) + len(files.val) + len(files.test)
    assert total == PER_CLASS * len(HAM_CLASSES)
    assert files.test and files.val
    lesions_of: dict[str, set[str]] = {}
    for image, _, group, split in files.split_rows():
        lesions_of.setdefault(group, set()).add(split)
        assert Path(image).is_file()
    assert all(len(splits) == 1 for splits in lesions_of.values()), lesions_of
    assert len(lesions_of) == 7 * len(HAM_CLASSES)
    # stratified: every class in train; seeded: the same split again, another with seed 1
    assert {y for _, y in files.train} == set(range(len(HAM_CLASSES)))
    assert scan_table(spec, seed=0).split_rows() == files.split_rows()
    assert scan_table(spec, seed=1).split_rows() != files.split_rows()
    assert files.split == (
        "0.2 val, 0.15 test held out (whole groups of 'lesion_id', stratified by class, seed 0)"
    )


def test_without_groups_two_photos_of_a_lesion_may_split_and_with_them_never(ham: Path) -> None:
    table = str(ham / "HAM10000_metadata.csv")
    grouped = scan_table(data(labels=table, group_column="lesion_id"), seed=0)
    by_image = scan_table(data(labels=table), seed=0)
    assert not by_image.groups and grouped.groups
    lesion = {Path(i).stem: g for i, _, g, _ in grouped.split_rows()}
    splits_of: dict[str, set[str]] = {}
    for image, _, _, split in by_image.split_rows():
        splits_of.setdefault(lesion[Path(image).stem], set()).add(split)
    assert any(len(s) > 1 for s in splits_of.values())  # the leak a group column prevents


def test_confirmation_folds_of_a_grouped_table_keep_each_lesion_on_one_side(ham: Path) -> None:
    import dataclasses

    from skinsearch.data.decode import DecodedData, decode_dataset, fold_splits

    table = str(ham / "HAM10000_metadata.csv")
    whole = decode_dataset(scan_table(data(labels=table, group_column="lesion_id"), 0), [16])[16]
    assert whole.groups is not None and len(np.unique(whole.groups)) == 7 * len(HAM_CLASSES)
    x = np.concatenate([whole.x_train, whole.x_val])
    lesion_of = dict(zip((a.tobytes() for a in x), whole.groups, strict=True))

    def leaks(folds: list[DecodedData]) -> int:
        """Lesions validated on in a fold that also trained on them."""
        return sum(
            len(
                {lesion_of[a.tobytes()] for a in f.x_train}
                & {lesion_of[a.tobytes()] for a in f.x_val}
            )
            for f in folds
        )

    grouped = fold_splits(whole, 3, seed=0)
    assert leaks(grouped) == 0
    assert sum(len(f.y_val) for f in grouped) == len(x)  # every image validated on once
    assert all(set(f.y_val) == set(range(len(HAM_CLASSES))) for f in grouped)  # stratified
    assert leaks(fold_splits(dataclasses.replace(whole, groups=None), 3, seed=0)) > 0
    few = dataclasses.replace(whole, groups=np.arange(len(x)) % 2)
    with pytest.raises(DataError) as error:
        fold_splits(few, 3, seed=0)
    assert str(error.value) == (
        "--folds 3: train and val hold 2 groups of data.group_column, fewer than the folds; "
        "use --folds 2 or fewer"
    )


def test_a_split_column_is_used_as_it_is(ham: Path, tmp_path: Path) -> None:
    rows = list(csv.reader((ham / "HAM10000_metadata.csv").open()))
    header, body = rows[0] + ["split"], rows[1:]
    for row in body:
        row.append(["train", "train", "valid", "test"][int(row[0][-3:]) % 4])  # by lesion
    table = tmp_path / "with_split.tsv"
    _write_csv(table, header, body, delimiter="\t")
    files = scan_table(
        data(labels=str(table), images=str(ham), split_column="split", group_column="lesion_id"),
        seed=0,
    )
    counts = {
        k: len(v) for k, v in (("train", files.train), ("val", files.val), ("test", files.test))
    }
    assert sum(counts.values()) == len(body) and all(counts.values())
    assert files.split == "column 'split' of the table"


def test_an_isic2019_one_hot_table_is_detected_and_its_empty_unk_left_out(
    ham: Path, tmp_path: Path
) -> None:
    # ISIC 2019's ground truth: image,MEL,NV,BCC,AK,BKL,DF,VASC,SCC,UNK with 1.0/0.0 values
    columns = ["MEL", "NV", "BCC", "AK", "BKL", "DF", "VASC", "SCC", "UNK"]
    of_dx = {"mel": "MEL", "nv": "NV", "bcc": "BCC", "akiec": "AK", "bkl": "BKL", "df": "DF"}
    rows = []
    for row in list(csv.reader((ham / "HAM10000_metadata.csv").open()))[1:]:
        rows.append([row[1]] + ["1.0" if c == of_dx[row[2]] else "0.0" for c in columns])
    table = tmp_path / "ISIC_2019_Training_GroundTruth.csv"
    _write_csv(table, ["image", *columns], rows)
    files = scan_table(data(labels=str(table), images=str(ham)), seed=0)
    assert files.class_names == ["AK", "BCC", "BKL", "DF", "MEL", "NV"]  # VASC, SCC, UNK: none
    assert len(files.train) + len(files.val) == len(rows)
    ordered = scan_table(
        data(labels=str(table), images=str(ham), label_columns=columns[:6], classes=columns[:6]),
        seed=0,
    )
    assert ordered.class_names == columns[:6]


def test_class_map_merges_labels_and_null_leaves_a_label_out(ham: Path) -> None:
    table = str(ham / "HAM10000_metadata.csv")
    merged = {"akiec": "malignant", "bcc": "malignant", "mel": "malignant", "df": None}
    files = scan_table(data(labels=table, class_map=merged), seed=0)
    assert files.class_names == ["bkl", "malignant", "nv"]
    assert len(files.train) + len(files.val) == PER_CLASS * 5
    ordered = scan_table(
        data(labels=table, class_map=merged, classes=["nv", "bkl", "malignant"]), seed=0
    )
    assert ordered.class_names == ["nv", "bkl", "malignant"]


def _table(tmp_path: Path, header: list[str], rows: list[list[str]], images: int = 4) -> str:
    for i in range(images):
        Image.new("RGB", (8, 8), (i * 40, 0, 0)).save(tmp_path / f"im{i}.png")
    path = tmp_path / "labels.csv"
    _write_csv(path, header, rows)
    return str(path)


def _error(tmp_path: Path, header: list[str], rows: list[list[str]], **keys: Any) -> str:
    table = _table(tmp_path, header, rows)
    with pytest.raises(DataError) as error:
        scan_table(data(labels=table, **keys), seed=0)
    message = str(error.value)
    assert "\n" not in message
    return message.replace(table, "T").replace(str(tmp_path), "D")


OK = [["im0", "a"], ["im1", "a"], ["im2", "b"], ["im3", "b"]]


@pytest.mark.parametrize(
    ("header", "rows", "keys", "message"),
    [
        (
            ["name", "dx"],
            OK,
            {},
            "data.labels: T has no image column (looked for image_id, image, image_name, "
            "file_name, filename, path; columns: name, dx); name it with data.image_column",
        ),
        (
            ["image", "finding"],
            OK,
            {},
            "data.labels: T has no label column (looked for dx, label, diagnosis, class, or "
            "one-hot 0/1 columns; columns: image, finding); name it with data.label_column or "
            "data.label_columns",
        ),
        (
            ["image", "dx"],
            OK,
            {"group_column": "lesion_id"},
            "data.group_column: T has no column 'lesion_id' (columns: image, dx)",
        ),
        (
            ["image", "dx"],
            [*OK, ["im9", "b"], ["im8.jpg", "a"]],
            {},
            "data.labels: T: 2 of 6 rows name images not found under D (line 6: im9, im8.jpg); "
            "check data.images",
        ),
        (
            ["image", "dx"],
            [*OK, ["im1", "b"]],
            {},
            "data.labels: T, line 6: image 'im1' is listed twice (first on line 3); keep one "
            "row per image",
        ),
        (
            ["image", "dx"],
            [["im0", "a"], ["im1", ""], ["im2", "b"]],
            {},
            "data.labels: T, line 3: the label column 'dx' is empty for 'im1'",
        ),
        (
            ["image", "dx"],
            [*OK[:3], ["im3", "c"]],
            {"classes": ["a", "b"]},
            "data.labels: T, line 5: label 'c' is not in data.classes (a, b); add it, merge it "
            "with data.class_map, or leave its images out with data.class_map: {c: null}",
        ),
        (
            ["image", "dx"],
            OK,
            {"classes": ["a", "b", "c"]},
            "data.classes: class 'c' has no image in T (remove it from data.classes)",
        ),
        (
            ["image", "MEL", "NV"],
            [["im0", "1", "0"], ["im1", "0", "0"], ["im2", "0", "1"]],
            {},
            "data.labels: T, line 3: the one-hot columns (MEL, NV) hold no 1; each row needs "
            "exactly one",
        ),
        (
            ["image", "MEL", "NV"],
            [["im0", "1", "0"], ["im1", "1.0", "1.0"]],
            {},
            "data.labels: T, line 3: the one-hot columns (MEL, NV) hold 2 ones (MEL, NV); each "
            "row needs exactly one",
        ),
        (
            ["image", "dx", "lesion"],
            [["im0", "a", "L1"], ["im1", "a", "L2"], ["im2", "b", "L3"], ["im3", "b", "L4"]],
            {"group_column": "lesion", "test_fraction": 0.1},
            "data.test_fraction: T has 4 groups, too few to hold out 0.1 of them whole (add "
            "rows, or lower the fraction)",
        ),
        (
            ["image", "dx", "lesion", "split"],
            [
                ["im0", "a", "L1", "train"],
                ["im1", "a", "L1", "val"],
                ["im2", "b", "L2", "train"],
                ["im3", "b", "L3", "val"],
            ],
            {"group_column": "lesion", "split_column": "split"},
            "data.labels: T, lines 2 and 3: group 'L1' is in both train and val of column "
            "'split'; a group's images must share a split",
        ),
        (
            ["image", "dx", "split"],
            [["im0", "a", "train"], ["im1", "a", "holdout"]],
            {"split_column": "split"},
            "data.labels: T, line 3: split 'holdout' in column 'split' is not one of train, val "
            "(valid, validation) or test",
        ),
        (
            ["image", "dx"],
            [["im0", "a", "x"]],
            {},
            "data.labels: T, line 2: 3 fields where the header has 2",
        ),
    ],
)
def test_a_bad_table_is_one_line_with_its_row(
    tmp_path: Path, header: list[str], rows: list[list[str]], keys: dict[str, Any], message: str
) -> None:
    assert _error(tmp_path, header, rows, **keys) == message


def test_an_id_without_extension_that_matches_two_files_is_named(tmp_path: Path) -> None:
    (tmp_path / "sub").mkdir()
    Image.new("RGB", (8, 8)).save(tmp_path / "sub" / "im0.jpg")
    message = _error(tmp_path, ["image", "dx"], OK)
    assert message == (
        "data.labels: T, line 2: image 'im0' matches 2 files under D (im0.png, sub/im0.jpg); "
        "give its path in the table"
    )


@pytest.mark.parametrize(
    ("keys", "message"),
    [
        (
            {"group_column": "lesion_id", "path": "images"},
            "group_column applies to a labels table: give data.labels",
        ),
        (
            {"labels": "t.csv", "path": "images"},
            "give data.labels (a table, with data.images for its folder) or data.path",
        ),
        (
            {"labels": "t.csv", "split_column": "s", "test_fraction": 0.1},
            "split_column gives the split: remove test_fraction (or split_column)",
        ),
    ],
)
def test_table_keys_are_checked_in_the_spec(keys: dict[str, Any], message: str) -> None:
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match=message.replace("(", r"\(").replace(")", r"\)")):
        DataSpec.model_validate(keys)


def test_a_table_given_as_data_path_or_with_data_is_the_labels(ham: Path) -> None:
    from tests.conftest import spec_of

    table = ham / "HAM10000_metadata.csv"
    assert DataSpec.model_validate({"path": str(table)}).labels == str(table)
    from skinsearch.config.spec import with_overrides

    spec = with_overrides(spec_of("params: {channels: [8]}\n"), str(table), None)
    assert spec.data.labels == str(table) and spec.data.images is None
    back = with_overrides(spec, str(ham), None)
    assert back.data.labels is None and back.data.path == str(ham)


@pytest.mark.slow
def test_a_search_on_a_ham10000_table_writes_its_split_and_never_decodes_the_test(
    ham: Path, tmp_path: Path
) -> None:
    # a real search on a local Ray instance, the table given with --data
    from tests.conftest import cli

    space = tmp_path / "ham.yaml"
    space.write_text(
        "name: ham\nmodel: mlp\n"
        "data: {group_column: lesion_id, test_fraction: 0.15}\n"
        "train: {max_epochs: 1, patience: null}\n"
        "params: {input_size: 16, hidden_sizes: [16]}\n"
    )
    table = ham / "HAM10000_metadata.csv"
    storage = tmp_path / "results"
    run = cli(["run", str(space), "--data", str(table), "--storage", str(storage), "--cpus", "1"])
    files = scan_table(data(labels=str(table), group_column="lesion_id", test_fraction=0.15), 0)
    n_train, n_val, n_test = len(files.train), len(files.val), len(files.test)
    assert (
        f"data: {table} over {ham} (6 classes, {n_train} train / {n_val} val / {n_test} test "
        "images; split: 0.2 val, 0.15 test held out (whole groups of 'lesion_id', stratified by "
        "class, seed 0); no search reads the test images)"
    ) in run.output
    assert f"decoded {n_train + n_val} images once" in run.output
    with (storage / "ham" / "split.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert [tuple(r.values()) for r in rows] == files.split_rows()
    splits_of: dict[str, set[str]] = {}
    for r in rows:
        splits_of.setdefault(r["group"], set()).add(r["split"])
    assert all(len(s) == 1 for s in splits_of.values())

    # the winner is scored once on the test split at export, and evaluate gives the same table
    bundle = tmp_path / "bundle"
    exported = cli(
        ["best", "--storage", str(storage), "--metric", "val_acc", "--export", str(bundle)]
    )
    test = json.loads((bundle / "test_metrics.json").read_text())
    assert test["images"] == n_test
    assert test["data"] == "the held-out test split of this bundle's split.csv"
    assert ".partial-" not in (bundle / "test_metrics.json").read_text()
    assert (bundle / "split.csv").read_text() == (storage / "ham" / "split.csv").read_text()
    assert f"held-out test ({n_test} images, never searched on): acc " in exported.output
    evaluated = cli(["evaluate", str(bundle), "--positive", "mel"])
    lines = evaluated.output.splitlines()
    assert lines[0] == f"{n_test} images: the held-out test split of {bundle / 'split.csv'}"
    assert lines[1].startswith(f"  acc           {test['metrics']['acc']:.3f}   (95% CI ")
    assert "  mel: sensitivity at 95% specificity " in evaluated.output
    # calibrated on val at export (never on test), and evaluate says so
    calibration = json.loads((bundle / "calibration.json").read_text())
    assert calibration["fitted_on"] == f"val split ({n_val} images)"
    assert test["calibration"]["temperature"] == calibration["temperature"]
    assert f"  temperature {calibration['temperature']:.3f}, fitted on the val split ({n_val} " in (
        evaluated.output
    )
    # the test figures go into the search's store, onto the winner's MLflow run and the report
    held = json.loads((storage / "ham" / "test_evaluation.json").read_text())
    config = yaml.safe_load((bundle / "config.yaml").read_text())
    assert held["trial_id"] == config["trial_id"] and held["metrics"] == test["metrics"]
    (run,) = [
        r
        for r in mlflow_runs(storage, "ham")
        if r.data.tags.get("skinsearch.trial_id") == config["trial_id"]
    ]
    assert run.data.metrics["test_balanced_acc"] == pytest.approx(test["metrics"]["balanced_acc"])
    assert run.data.metrics["test_acc"] == pytest.approx(test["metrics"]["acc"])
    cli(["report", "--storage", str(storage), "--name", "ham"])
    page = (storage / "ham" / "report" / "index.html").read_text()
    assert f"<h2>Held-out test: {n_test} images no search read</h2>" in page
    assert f"<td>balanced_acc</td><td>{test['metrics']['balanced_acc']:.4f}</td>" in page


def test_a_tables_key_without_a_table_is_one_line_at_run(tmp_path: Path) -> None:
    from tests.test_bad_input import one_line_error

    space = tmp_path / "s.yaml"
    space.write_text("name: s\nmodel: mlp\ndata: {group_column: lesion_id}\n")
    assert one_line_error(["run", str(space), "--storage", str(tmp_path / "r")]) == (
        "data.group_column applies to a labels table: give data.labels (a CSV or TSV file, or "
        "--data FILE.csv)"
    )
    assert one_line_error(["run", str(space), "--data", str(tmp_path)]).endswith(
        "data: group_column applies to a labels table: give data.labels (a CSV or TSV file, "
        "or --data FILE.csv)"
    )


def test_validate_prints_the_table_and_its_split_per_class_without_ray(
    ham: Path, tmp_path: Path
) -> None:
    from tests.conftest import cli

    table = ham / "HAM10000_metadata.csv"
    space = tmp_path / "ham.yaml"
    space.write_text(
        f"name: ham\nmodel: mlp\ndata: {{labels: {table}, group_column: lesion_id, "
        "test_fraction: 0.15}\n"
    )
    out = cli(["validate", str(space)]).output
    assert f"model: mlp   data: {table}\n" in out
    files = scan_table(data(labels=str(table), group_column="lesion_id", test_fraction=0.15), 0)
    counts = {split: [0] * len(HAM_CLASSES) for split in ("train", "val", "test")}
    for _, label, _, split in files.split_rows():
        counts[split][HAM_CLASSES.index(label)] += 1
    lines = out.splitlines()
    start = lines.index(
        "split: 0.2 val, 0.15 test held out (whole groups of 'lesion_id', stratified by class, "
        "seed 0)"
    )
    assert lines[start + 1].split() == ["train", "val", "test"]
    for i, name in enumerate(HAM_CLASSES):
        row = [name, *(str(counts[s][i]) for s in ("train", "val", "test"))]
        assert lines[start + 2 + i].split() == row
    assert lines[start + 2 + len(HAM_CLASSES)].split()[0] == "total"


def test_the_spec_and_the_reader_agree_on_what_a_table_is() -> None:
    from skinsearch.config import spec
    from skinsearch.data import tables

    assert spec.TABLE_SUFFIXES == tables.TABLE_SUFFIXES


@pytest.mark.slow
def test_resume_refuses_data_whose_split_is_not_the_one_the_search_started_with(
    ham: Path, tmp_path: Path
) -> None:
    from tests.conftest import cli

    table = tmp_path / "metadata.csv"
    shutil.copyfile(ham / "HAM10000_metadata.csv", table)
    space = tmp_path / "ham.yaml"
    space.write_text(
        f"name: ham\nmodel: mlp\ndata: {{labels: {table}, images: {ham}, "
        "group_column: lesion_id, test_fraction: 0.15}\n"
        "train: {max_epochs: 1, patience: null}\nparams: {input_size: 16, hidden_sizes: [16]}\n"
    )
    storage = tmp_path / "results"
    args = ["run", str(space), "--storage", str(storage), "--cpus", "1"]
    cli(args)
    split = storage / "ham" / "split.csv"
    before = split.read_text()
    cli([*args, "--resume"])  # the same data: it carries on (here: nothing left to run)
    lines = table.read_text().splitlines()
    table.write_text("\n".join(lines[:-1]) + "\n")  # the user drops an image from the table
    result = cli([*args, "--resume"], code=2)
    error = result.output.strip().splitlines()[-1]
    assert error.startswith(
        f"Error: data: the data's split is not the one this search started with ({split}): "
    )
    assert re.search(
        r"\): \d+ images were added, dropped or moved, first /\S+\.jpg; restore the data as it "
        r"was, or start a new search without --resume$",
        error,
    ), error
    assert split.read_text() == before  # the record of the split is never rewritten


def test_the_builtin_table_is_a_ham10000_style_download_split_by_lesion(tmp_path: Path) -> None:
    from skinsearch.data.synthetic import synthetic_table
    from tests.conftest import cli

    table = synthetic_table(tmp_path / "one")
    assert table.read_text() == synthetic_table(tmp_path / "two").read_text()  # deterministic
    header, *rows = [line.split(",") for line in table.read_text().splitlines()]
    assert header == ["lesion_id", "image_id", "dx"]
    views = Counter(lesion for lesion, _, _ in rows)
    assert set(views.values()) == {1, 2, 3} and len(rows) == 9 * 72
    assert all((table.parent / "images" / f"{image}.png").is_file() for _, image, _ in rows)

    spec = data(path="builtin:synthetic_table", group_column="lesion_id", test_fraction=0.15)
    assert spec.is_table
    files = scan_table(spec, 0)
    assert len(files.class_names) == 9 and files.test
    split_of: dict[str, set[str]] = {}
    for split, items in (("train", files.train), ("val", files.val), ("test", files.test)):
        for path, _ in items:
            split_of.setdefault(files.groups[path], set()).add(split)
    assert all(len(s) == 1 for s in split_of.values())  # no lesion in two splits
    space = tmp_path / "st.yaml"
    space.write_text(
        "name: st\nmodel: mlp\ndata: {path: 'builtin:synthetic_table', group_column: lesion_id, "
        "test_fraction: 0.15}\nparams: {input_size: 16}\n"
    )
    out = cli(["validate", str(space)]).output
    assert "split: 0.2 val, 0.15 test held out (whole groups of 'lesion_id'" in out
    assert out.rstrip().splitlines()[-1].split() == [
        "total", str(len(files.train)), str(len(files.val)), str(len(files.test))
    ]  # fmt: skip
