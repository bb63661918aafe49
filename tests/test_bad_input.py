"""Bad input, case by case: the exact one-line message (what, where, how to fix), exit code 2,
no traceback, and no Ray started. Covered elsewhere with the same strictness: --gpus, --address,
--storage and a folder that is not a bundle (test_cli.py), export into a non-empty folder and
predict on a file that is not an image (test_search.py); a bundle whose weights hold a pickle
that would run code, a decompression-bomb image (to predict, and in the data), a symlink loop
in the data, an export interrupted by Ctrl-C, YAML alias bombs and an unsafe --name for every
command (test_safety.py); a grid too large to list (test_space.py); a model that cannot fit in
memory (test_footprint.py)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from skinsearch.cli import main
from tests.conftest import write_image_folder

OK = "name: t\nmodel: mlp\ndata: {{path: {data}}}\nparams:\n  input_size: 16\n"

SPEC_CASES = {
    "malformed YAML": (
        "name: t\nmodel: [mlp\n",
        "{file}:3:1: invalid YAML: expected ',' or ']', but got '<stream end>'",
    ),
    "unknown key": (
        OK + "colour: red\n",
        "{file}: colour: unknown key (valid: name, model, data, train, search, scheduler, "
        "resources, confirm, params)",
    ),
    "a confirm block of one run": (
        OK + "confirm: {{top: 3, seeds: 1}}\n",
        "{file}: confirm: seeds: 1 without folds retrains each configuration once; use seeds: 2 "
        "or more, or add folds: 5",
    ),
    "wrong type": (
        OK.replace("input_size: 16", "batch_size: lots"),
        "{file}: params.batch_size: must be an integer, got 'lots'",
    ),
    "value out of range": (OK + "  dropout: 1.5\n", "{file}: params.dropout: must be < 1, got 1.5"),
    "hyperparameter not valid for the model": (
        OK + "  channels: [8, 16]\n",
        "{file}: params.channels: not a hyperparameter of model 'mlp' (it takes: activation, "
        "affine, batch_size, batchnorm, colour, dropout, ema, hflip, hidden_sizes, init, input_size, "
        "lr, momentum, optimizer, rbcontrast, rotate90, schedule, vflip, warmup_epochs, weight_decay)",
    ),
    "empty grid": (
        OK + "  lr: {{grid: []}}\n",
        "{file}: params.lr.grid: must be a non-empty list of values, got an empty list",
    ),
    "unknown model": (
        OK.replace("model: mlp", "model: resnet"),
        "{file}: model: unknown model 'resnet' (valid: cnn, efficientnet_lite0, efficientnet_lite1, efficientnet_lite2, mlp)",
    ),
    "unknown optimizer": (
        OK + "  optimizer: lion\n",
        "{file}: params.optimizer: must be one of 'adam', 'adamw' or 'sgd', got 'lion'",
    ),
    "unknown sampler": (
        OK + "search: {{sampler: bayes}}\n",
        "{file}: search.sampler: must be one of 'grid', 'random' or 'tpe', got 'bayes'",
    ),
    "unknown scheduler": (
        OK + "scheduler: {{type: pbt}}\n",
        "{file}: scheduler.type: must be one of 'asha' or 'none', got 'pbt'",
    ),
    "a YAML list": (
        "- name: t\n- model: mlp\n",
        "{file}: expected a mapping of sections (name, model, data, ...), got a list",
    ),
    "an infinite float": (
        OK + "  lr: .inf\n",
        "{file}: params.lr: must be a finite number, got inf",
    ),
}


def one_line_error(args: list[str]) -> str:
    import ray

    result = CliRunner().invoke(main, args)
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 or all(not ln.startswith("Error") for ln in lines[:-1]), lines
    assert not ray.is_initialized()
    assert lines[-1].startswith("Error: ")
    return lines[-1][len("Error: ") :]


@pytest.mark.parametrize("case", list(SPEC_CASES))
def test_a_bad_search_space_file(case: str, tmp_path: Path) -> None:
    text, message = SPEC_CASES[case]
    file = tmp_path / "space.yaml"
    file.write_text(text.format(data=tmp_path))
    for command in ("validate", "run"):
        args = [command, str(file)] + (
            ["--storage", str(tmp_path / "r")] if command == "run" else []
        )
        assert one_line_error(args) == message.format(file=file)


def make_data(case: str, root: Path) -> Path:
    if case == "data path missing":
        return root / "nowhere"
    if case == "data folder empty":
        root.mkdir()
        return root
    if case == "class folder without images":
        data = write_image_folder(root, ["blue_grey", "small_pink"], train=3, val=2)
        for image in (data / "train" / "small_pink").iterdir():
            image.unlink()
        return data
    if case == "every image corrupt":
        for name in ("a", "b"):
            (root / name).mkdir(parents=True)
            for i in (1, 2):
                (root / name / f"{i}.jpg").write_bytes(b"not a jpeg")
        return root
    assert case == "val classes not in train"
    data = write_image_folder(root, ["blue_grey", "small_pink"], train=3, val=2)
    shutil.move(data / "val" / "small_pink", data / "val" / "ragged")
    return data


DATA_CASES = {
    "data path missing": "data.path: {data} is not a folder (point data.path or --data at a "
    "folder of class folders)",
    "data folder empty": "data: {data} has no class folders (expected {data}/<class>/<image>)",
    "class folder without images": "data: class folder {data}/train/small_pink has no images "
    "(.jpg, .jpeg, .png, .bmp, .webp); add images or remove the folder",
    "every image corrupt": "data: none of the 4 images under {data} could be read (first: "
    "{data}/a/2.jpg); check that they are JPEG, PNG, BMP or WebP files",
    "val classes not in train": "data: {data}/val has classes that train/ lacks: ragged (add "
    "them to train/ or remove them from val/)",
}


@pytest.mark.parametrize("case", list(DATA_CASES))
def test_bad_data(case: str, tmp_path: Path) -> None:
    data = make_data(case, tmp_path / "data")
    file = tmp_path / "space.yaml"
    file.write_text(OK.format(data=data))
    message = one_line_error(["run", str(file), "--storage", str(tmp_path / "r")])
    assert message == DATA_CASES[case].format(data=data)
    assert not list((tmp_path / "r").glob("*/trial_*"))


def test_a_folder_given_as_the_search_space_file(tmp_path: Path) -> None:
    for command in ("validate", "run"):
        assert one_line_error([command, str(tmp_path)]) == (
            f"{tmp_path}: is a folder, not a search-space file; pass a YAML file "
            "(search_spaces/quick.yaml, say)"
        )


def test_a_storage_or_an_export_that_is_a_regular_file(tmp_path: Path) -> None:
    file = tmp_path / "space.yaml"
    file.write_text(OK.format(data="builtin:synthetic"))
    regular = tmp_path / "notes.txt"
    regular.write_text("mine")
    expected = f"--storage: {regular} is a file, not a folder; choose a folder"
    for args in (["run", str(file)], ["best"], ["report"], ["sync-mlflow"]):
        assert one_line_error([*args, "--storage", str(regular)]) == expected
    export = ["best", "--storage", str(tmp_path / "r"), "--export", str(regular)]
    assert one_line_error(export) == f"--export: {regular} is a file, not a folder; choose a folder"
    assert regular.read_text() == "mine"


def test_best_before_any_trial_finished(tmp_path: Path) -> None:
    search = tmp_path / "results" / "s"
    search.mkdir(parents=True)
    (search / "search.yaml").write_text(
        yaml.safe_dump(
            {
                "spec": {"name": "s", "model": "mlp"},
                "search": "s",
                "classes": ["a", "b"],
                "trials": 2,
                "storage": str(search.parent),
                "tracking_uri": f"sqlite:///{search.parent / 'mlflow.db'}",
            }
        )
    )
    message = one_line_error(["best", "--storage", str(search.parent)])
    assert message == (
        f"no trial of search 's' has reported val_acc yet (under {search}); wait for a trial "
        "to finish an epoch, or check --metric"
    )


@pytest.mark.parametrize("name", ["../outside", "a/b", ".hidden"])
def test_a_search_name_cannot_leave_the_storage_folder(name: str, tmp_path: Path) -> None:
    file = tmp_path / "space.yaml"
    file.write_text(OK.format(data=tmp_path))
    message = one_line_error(["run", str(file), "--storage", str(tmp_path / "r"), "--name", name])
    assert message == (
        f"--name: {name!r} is not a folder name (use letters, digits, '.', '_' or '-', "
        "starting with a letter or digit)"
    )
    assert not (tmp_path / "outside").exists()


def test_resume_needs_the_search_and_the_same_file(tmp_path: Path) -> None:
    from skinsearch.config.spec import loads_spec

    file = tmp_path / "space.yaml"
    file.write_text(OK.format(data=tmp_path) + "train: {max_epochs: 3}\n")
    storage = tmp_path / "r"
    message = one_line_error(["run", str(file), "--storage", str(storage), "--resume"])
    assert message == f"--resume: no search named 't' under {storage}; check --name and --storage"

    started_with = loads_spec(OK.format(data=tmp_path) + "train: {max_epochs: 4}\n")
    (storage / "t").mkdir(parents=True)
    (storage / "t" / "search.yaml").write_text(
        yaml.safe_dump({"spec": started_with.to_yaml_dict(), "search": "t", "trials": 1})
    )
    message = one_line_error(["run", str(file), "--storage", str(storage), "--resume"])
    assert message == (
        f"--resume: {file} (train) differs from the search 't' was started with; resume with "
        "the same file and options, or start a new search without --resume"
    )


@pytest.mark.parametrize(
    ("storage", "expected"),
    [
        (
            "ftp://host/results",
            "--storage: ftp://host/results is not a storage URI pyarrow can open (Unrecognized "
            "filesystem type in URI: ftp://host/results); use a folder or s3://BUCKET/PREFIX",
        ),
        ("s3://", "--storage: s3:// names no bucket; use s3://BUCKET[/PREFIX]"),
    ],
)
def test_a_storage_uri_that_cannot_be_used(storage: str, expected: str, tmp_path: Path) -> None:
    # a bucket that does not exist is tested against a real S3 server in test_s3_storage.py
    file = tmp_path / "space.yaml"
    file.write_text(OK.format(data=tmp_path))
    for command in (["run", str(file)], ["best"], ["report"], ["sync-mlflow"]):
        assert one_line_error([*command, "--storage", storage]) == expected


@pytest.mark.parametrize(
    ("options", "expected"),
    [
        (["--folds", "3"], "--seeds and --folds go with --confirm K; add --confirm 3, say"),
        (
            ["--confirm", "2", "--seeds", "1"],
            "--seeds 1 without --folds retrains each configuration once; use --seeds 2 or more",
        ),
    ],
)
def test_confirm_options_that_do_not_fit(options: list[str], expected: str, tmp_path: Path) -> None:
    assert one_line_error(["best", "--storage", str(tmp_path), *options]) == expected


def test_resume_accepts_a_search_saved_before_a_setting_existed(tmp_path: Path) -> None:
    from skinsearch.config.spec import loads_spec
    from skinsearch.store.searches import resumable
    from skinsearch.store.storage import Storage

    spec = loads_spec(OK.format(data=tmp_path))
    older = spec.to_yaml_dict()
    del older["train"]["precision"]  # as a search.yaml written before train.precision existed
    (tmp_path / "t").mkdir()
    (tmp_path / "t" / "search.yaml").write_text(
        yaml.safe_dump({"spec": older, "search": "t", "trials": 1, "tracking_uri": "sqlite:///x"})
    )
    found = resumable(Storage(tmp_path, None), "t", spec, tmp_path / "space.yaml")
    assert found == ("t", "sqlite:///x", 1)
