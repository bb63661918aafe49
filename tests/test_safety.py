"""What skinsearch guarantees about users' files and about input it did not write, without Ray:
--force replaces only a bundle (atomically), searches claim distinct folders, broken
search.yaml files and tampered bundles are refused in one line, YAML cannot exhaust memory,
metric keys are safe for MLflow, and data layouts are recognised explicitly. The same
guarantees under a real search (a full disk, SIGTERM, simultaneous first runs) are in
test_faults.py."""

from __future__ import annotations

import hashlib
import json
import multiprocessing
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import yaml
from click.testing import CliRunner
from PIL import Image

from skinsearch.cli import main
from tests.conftest import cli, write_image_folder
from tests.test_bad_input import OK, one_line_error


def tree(root: Path) -> dict[str, str]:
    """Every file under ``root`` with a hash of its contents: what "nothing was touched" means."""
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


# -- export: --force replaces a bundle and nothing else ------------------------------------------


def fake_storage(root: Path) -> Path:
    """A storage as a search leaves it, as far as ``best --export`` looks before any work."""
    search = root / "s"
    search.mkdir(parents=True)
    (root / "mlflow.db").write_bytes(b"SQLite format 3\x00" + bytes(100))
    (search / "search.yaml").write_text(yaml.safe_dump({"spec": {"name": "s"}, "search": "s"}))
    (search / "trial_1" / "checkpoint_000001").mkdir(parents=True)
    (search / "trial_1" / "checkpoint_000001" / "model.pt").write_bytes(b"weights")
    return root


@pytest.mark.parametrize(
    ("where", "expected"),
    [
        (
            "{s}",
            "--export: {s} is inside the results storage {s}; export outside it (bundles/NAME, say)",
        ),
        (
            "{s}/s",
            "--export: {s}/s is inside the results storage {s}; export outside it (bundles/NAME, say)",
        ),
        (
            "{s}/s/trial_1/checkpoint_000001",
            "--export: {s}/s/trial_1/checkpoint_000001 is inside the results storage {s}; export "
            "outside it (bundles/NAME, say)",
        ),
        (
            "{t}",
            "--export: {t} holds the results storage {s}; export to a folder of its own "
            "(bundles/NAME, say)",
        ),
    ],
)
def test_force_never_exports_into_or_over_a_storage(
    where: str, expected: str, tmp_path: Path
) -> None:
    storage = fake_storage(tmp_path / "results")
    before = tree(tmp_path)
    target = where.format(s=storage, t=tmp_path)
    for force in ([], ["--force"]):
        message = one_line_error(["best", "--storage", str(storage), "--export", target, *force])
        assert message == expected.format(s=storage, t=tmp_path)
    assert tree(tmp_path) == before


def test_force_never_exports_inside_another_storage_or_search(tmp_path: Path) -> None:
    other = fake_storage(tmp_path / "other")
    storage = fake_storage(tmp_path / "results")
    before = tree(tmp_path)
    for target, marker in (
        (other / "bundles" / "b", other / "mlflow.db"),
        (other / "s" / "x", other / "s" / "search.yaml"),
    ):
        message = one_line_error(
            ["best", "--storage", str(storage), "--export", str(target), "--force"]
        )
        assert message == (
            f"--export: {target} is inside a skinsearch search or storage ({marker} is there); "
            "export outside it (bundles/NAME, say)"
        )
    assert tree(tmp_path) == before


def test_force_refuses_a_folder_that_is_not_a_bundle_and_a_file(tmp_path: Path) -> None:
    storage = fake_storage(tmp_path / "results")
    notes = tmp_path / "notes"
    notes.mkdir()
    (notes / "thesis.docx").write_bytes(b"four years")
    (notes / "config.yaml").write_text("mine: true\n")
    (tmp_path / "plain.txt").write_text("a file")
    before = tree(tmp_path)
    message = one_line_error(["best", "--storage", str(storage), "--export", str(notes), "--force"])
    assert message == (
        f"--export: {notes} is not a skinsearch bundle (it holds thesis.docx); --force replaces "
        "only an earlier bundle: choose another folder"
    )
    message = one_line_error(
        ["best", "--storage", str(storage), "--export", str(tmp_path / "plain.txt")]
    )
    assert message == f"--export: {tmp_path / 'plain.txt'} is a file, not a folder; choose a folder"
    assert tree(tmp_path) == before


def bundle_files(folder: Path, tag: str) -> None:
    folder.mkdir(parents=True)
    for name in ("config.yaml", "model_state.pt", "classes.json", "metrics.json"):
        (folder / name).write_text(f"{tag} {name}")


def test_an_interrupted_force_export_keeps_the_old_bundle(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from skinsearch.results import export as bundle

    storage = fake_storage(tmp_path / "results")
    checkpoint = storage / "s" / "trial_1" / "checkpoint_000001"
    old = tmp_path / "bundles" / "b"
    bundle_files(old, "old")
    before = tree(tmp_path / "bundles")

    def half_written(folder: Path, *args: Any) -> None:
        (folder / "model_state.pt").write_bytes(b"half")
        raise KeyboardInterrupt  # Ctrl-C in the middle of writing the new bundle

    monkeypatch.setattr(bundle, "_write_bundle", half_written)
    with pytest.raises(KeyboardInterrupt):
        bundle.export_bundle(checkpoint, {}, None, old, force=True)  # type: ignore[arg-type]
    assert tree(tmp_path / "bundles") == before  # the old bundle, whole, and nothing beside it
    assert sorted(p.name for p in (tmp_path / "bundles").iterdir()) == ["b"]

    def complete(folder: Path, *args: Any) -> None:
        for name in ("config.yaml", "model_state.pt"):
            (folder / name).write_text(f"new {name}")

    monkeypatch.setattr(bundle, "_write_bundle", complete)
    bundle.export_bundle(checkpoint, {}, None, old, force=True)  # type: ignore[arg-type]
    assert tree(old) == {
        "config.yaml": tree(old)["config.yaml"],
        "model_state.pt": tree(old)["model_state.pt"],
    }
    assert (old / "model_state.pt").read_text() == "new model_state.pt"
    assert sorted(p.name for p in (tmp_path / "bundles").iterdir()) == ["b"]
    assert (storage / "s" / "trial_1" / "checkpoint_000001" / "model.pt").read_bytes() == b"weights"


# -- search folders are claimed, never shared --------------------------------------------------


def _claim(storage: str, start: float, queue: Any) -> None:
    from skinsearch.store.searches import new_search_name
    from skinsearch.store.storage import Storage

    while time.time() < start:
        time.sleep(0.001)
    queue.put(new_search_name(Storage(Path(storage)), "quick", explicit=False))


def test_searches_started_at_once_claim_distinct_folders(tmp_path: Path) -> None:
    context = multiprocessing.get_context("spawn")
    queue = context.Queue()
    start = time.time() + 3
    procs = [context.Process(target=_claim, args=(str(tmp_path), start, queue)) for _ in range(4)]
    for proc in procs:
        proc.start()
    for proc in procs:
        proc.join(60)
    names = sorted(queue.get(timeout=5) for _ in procs)
    assert names == ["quick", "quick-2", "quick-3", "quick-4"]


def test_a_search_that_fails_before_writing_gives_its_name_back(tmp_path: Path) -> None:
    file = tmp_path / "space.yaml"
    file.write_text(OK.format(data=tmp_path / "nowhere"))
    one_line_error(["run", str(file), "--storage", str(tmp_path / "r")])
    assert not (tmp_path / "r" / "t").exists()


# -- search.yaml files skinsearch did not write ----------------------------------------------------


def good_search(storage: Path, name: str) -> None:
    folder = storage / name
    folder.mkdir(parents=True)
    spec = {"name": name, "model": "mlp"}
    (folder / "search.yaml").write_text(
        yaml.safe_dump({"spec": spec, "search": name, "classes": ["a", "b"], "trials": 1})
    )


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        ("", "empty"),
        ("- a list\n", "not a mapping"),
        ("spec: {name: x}\n", "has no search"),
        ("{{{", "not readable YAML (ParserError)"),
    ],
)
def test_a_broken_search_yaml_is_skipped_or_named(
    content: str, problem: str, tmp_path: Path
) -> None:
    storage = tmp_path / "r"
    good_search(storage, "good")
    broken = storage / "broken"
    broken.mkdir()
    (broken / "search.yaml").write_text(content)
    time.sleep(0.01)
    (broken / "search.yaml").touch()  # the newest: what `best` would pick without --name
    with pytest.warns(UserWarning) as caught:  # the CLI prints it as one "Warning:" line
        result = CliRunner().invoke(main, ["best", "--storage", str(storage)])
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    assert [str(w.message) for w in caught if "skipped search" in str(w.message)] == [
        f"skipped search broken ({broken / 'search.yaml'}: {problem})"
    ]
    # it went on to the good search, which has no results yet
    assert "Error: no trial of search 'good' has reported val_acc yet" in result.output
    for command in (["best"], ["report"], ["sync-mlflow"]):
        message = one_line_error([*command, "--storage", str(storage), "--name", "broken"])
        assert message == (
            f"{broken / 'search.yaml'}: {problem}, so search 'broken' cannot be read; restore "
            "the file from a backup, or choose another search with --name"
        )
    file = tmp_path / "space.yaml"
    file.write_text(OK.format(data=tmp_path).replace("name: t", "name: broken"))
    message = one_line_error(["run", str(file), "--storage", str(storage), "--resume"])
    assert message.startswith(f"{broken / 'search.yaml'}: {problem}, so search 'broken'")


@pytest.mark.parametrize("name", ["../outside", "/etc", "a/../b", ".."])
@pytest.mark.parametrize("command", ["best", "report", "sync-mlflow"])
def test_every_command_checks_the_search_name(name: str, command: str, tmp_path: Path) -> None:
    message = one_line_error([command, "--storage", str(tmp_path / "r"), "--name", name])
    assert message == (
        f"--name: {name!r} is not a folder name (use letters, digits, '.', '_' or '-', "
        "starting with a letter or digit)"
    )


# -- YAML that would exhaust the machine ---------------------------------------------------------


def alias_bomb(depth: int) -> str:
    lines = ['a0: &a0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    for i in range(1, depth):
        lines.append(f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 9) + "]")
    return "\n".join([*lines, "name: t", "model: mlp", f"params: {{lr: *a{depth - 1}}}", ""])


@pytest.mark.parametrize("depth", [7, 9])
def test_a_yaml_alias_bomb_is_refused_in_one_short_line(depth: int, tmp_path: Path) -> None:
    file = tmp_path / "bomb.yaml"
    file.write_text(alias_bomb(depth))
    assert len(file.read_bytes()) < 1000
    for command in ("validate", "run"):
        message = one_line_error(
            [command, str(file), "--storage", str(tmp_path / "r")][
                : 2 if command == "validate" else 4
            ]
        )
        assert message == (
            f"{file}: refused: the YAML expands to more than 100,000 values (through aliases); "
            "write the values out"
        )


def test_a_small_alias_is_still_fine(tmp_path: Path) -> None:
    file = tmp_path / "ok.yaml"
    file.write_text("name: t\nmodel: mlp\nparams:\n  hflip: &p 0.5\n  vflip: *p\n")
    cli(["validate", str(file)])


def test_yaml_nested_thousands_deep_is_one_line(tmp_path: Path) -> None:
    file = tmp_path / "deep.yaml"
    file.write_text("name: t\nmodel: mlp\nx: " + "[" * 5000 + "]" * 5000 + "\n")
    assert one_line_error(["validate", str(file)]) == (
        f"{file}: refused: the YAML is nested deeper than 64 levels"
    )


def test_a_long_wrong_value_is_quoted_short(tmp_path: Path) -> None:
    file = tmp_path / "long.yaml"
    file.write_text(f"name: t\nmodel: mlp\nparams:\n  optimizer: {'x' * 5000}\n")
    message = one_line_error(["validate", str(file)])
    assert message == (
        f"{file}: params.optimizer: must be one of 'adam', 'adamw' or 'sgd', got '{'x' * 56}..."
    )


# -- bundles skinsearch did not write ------------------------------------------------------------


@pytest.fixture
def image(tmp_path: Path) -> Path:
    path = tmp_path / "lesion.png"
    Image.fromarray(np.full((20, 20, 3), 120, np.uint8)).save(path)
    return path


class RunsCode:
    """Unpickling this runs code: what a weights file from a stranger may hold."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, ...]:
        return (Path.touch, (self.marker,))


def edit_json(path: Path, **changes: Any) -> None:
    path.write_text(json.dumps({**json.loads(path.read_text()), **changes}))


def edit_yaml(path: Path, **changes: Any) -> None:
    path.write_text(yaml.safe_dump({**yaml.safe_load(path.read_text()), **changes}))


TAMPERED = {
    "a huge resize": (
        lambda b: edit_json(b / "preprocessing.json", resize=[100000, 100000]),
        "preprocessing.json: resize: Value error, must be [N, N] with 8 <= N <= 1024, got [100000, 100000]",
    ),
    "a non-finite std": (
        lambda b: (b / "preprocessing.json").write_text(
            '{"resize": [16, 16], "mean": [0.5, 0.5, 0.5], "std": [NaN, 1, 1]}'
        ),
        "preprocessing.json: std: Value error, must be finite numbers, got [nan, 1.0, 1.0]",
    ),
    "an unknown model": (
        lambda b: edit_yaml(b / "config.yaml", model="resnet"),
        "config.yaml: unknown model 'resnet'",
    ),
    "classes.json unlike the config": (
        lambda b: (b / "classes.json").write_text('["a", "b", "c", "d"]'),
        "classes.json: does not list the classes config.yaml names",
    ),
    "more classes than the weights": (
        lambda b: (
            edit_yaml(b / "config.yaml", class_names=list("abcd")),
            (b / "classes.json").write_text('["a", "b", "c", "d"]'),
        ),
        "model_state.pt: 4.weight has shape [3, 16] but config.yaml and classes.json describe [4, 16]",
    ),
    "hidden sizes that would need 40 GB": (
        lambda b: edit_yaml(
            b / "config.yaml",
            hparams={
                **yaml.safe_load((b / "config.yaml").read_text())["hparams"],
                "hidden_sizes": [100000, 100000],
            },
        ),
        "model_state.pt: 1.weight has shape [16, 768] but config.yaml and classes.json describe [100000, 768]",
    ),
    "a config.yaml that is not YAML": (
        lambda b: (b / "config.yaml").write_text("{{{"),
        "config.yaml: cannot be read (ParserError)",
    ),
    "no classes.json": (lambda b: (b / "classes.json").unlink(), "classes.json: is missing"),
    "a broken preprocessing.json": (
        lambda b: (b / "preprocessing.json").write_text("{"),
        "preprocessing.json: cannot be read (JSONDecodeError)",
    ),
    "an empty model_state.pt": (
        lambda b: (b / "model_state.pt").write_bytes(b""),
        "model_state.pt: is empty",
    ),
    "a model_state.pt that is not torch's": (
        lambda b: (b / "model_state.pt").write_bytes(b"\x00junk" * 10),
        "model_state.pt: is not a readable state_dict (UnpicklingError)",
    ),
}


@pytest.mark.parametrize("case", list(TAMPERED))
def test_a_tampered_bundle_is_refused_before_anything_is_allocated(
    case: str, bundle: Path, image: Path
) -> None:
    tamper, problem = TAMPERED[case]
    tamper(bundle)
    file, _, what = problem.partition(": ")
    message = one_line_error(["predict", str(bundle), str(image)])
    assert message == (
        f"{bundle / file}: {what}; this bundle cannot be used (export it again with "
        "`skinsearch best --export DIR`)"
    )


def test_a_pickle_that_would_run_code_is_refused_and_nothing_runs(
    bundle: Path, image: Path, tmp_path: Path
) -> None:
    marker = tmp_path / "pwned"
    torch.save({"1.weight": RunsCode(marker)}, bundle / "model_state.pt")
    message = one_line_error(["predict", str(bundle), str(image)])
    assert message == (
        f"{bundle / 'model_state.pt'}: holds objects other than plain tensors, refused unloaded "
        "(they could run code); this bundle cannot be used (export it again with `skinsearch "
        "best --export DIR`)"
    )
    assert "weights_only=False" not in message
    assert not marker.exists()


def test_a_valid_bundle_still_predicts(bundle: Path, image: Path) -> None:
    result = cli(["predict", str(bundle), str(image)])
    assert result.output.startswith(f"{image}\t")


def test_a_bundle_trained_on_the_builtin_data_says_so_when_it_predicts(
    bundle: Path, image: Path
) -> None:
    from skinsearch.results.predict import predict

    config = yaml.safe_load((bundle / "config.yaml").read_text())
    (bundle / "config.yaml").write_text(
        yaml.safe_dump({**config, "spec": {"data": {"path": "builtin:synthetic"}}})
    )
    with pytest.warns(UserWarning, match=r"trained on skinsearch's built-in data set"):
        (prediction,) = predict(bundle, [image])
    assert prediction.label in "abc"
    (bundle / "config.yaml").write_text(
        yaml.safe_dump({**config, "spec": {"data": {"path": str(image.parent)}}})
    )
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a bundle of the user's own images: no warning
        predict(bundle, [image])


def test_a_decompression_bomb_image_is_one_line(bundle: Path, tmp_path: Path) -> None:
    bomb = tmp_path / "bomb.png"
    Image.new("L", (16000, 16000)).save(bomb)  # 256 Mpixel: past twice PIL's limit
    message = one_line_error(["predict", str(bundle), str(bomb)])
    assert message == (
        f"{bomb}: too many pixels to decode safely (PIL's limit) (give JPEG, PNG, BMP or WebP files)"
    )


def test_a_decompression_bomb_in_the_data_is_skipped_with_a_warning(tmp_path: Path) -> None:
    import warnings

    from skinsearch.data import decode_dataset, scan_dataset

    data = write_image_folder(tmp_path / "d", ["blue_grey", "small_pink"], train=3, val=2)
    bomb = data / "train" / "blue_grey" / "bomb.png"
    Image.new("L", (16000, 16000)).save(bomb)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        decoded = decode_dataset(scan_dataset(data), [16])
    assert len(decoded[16].x_train) == 6
    assert any(f"skipped 1 unreadable image(s): {bomb}" in str(w.message) for w in caught)


# -- metric keys and class names -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "key"),
    [
        ("melanoma", "melanoma"),
        ("nevus (benign)", "nevus_benign"),
        ("seb-keratosis", "seb-keratosis"),
        ("a+b & c's", "a_b_c_s"),
        ("line\nbreak", "line_break"),
        ("névus", "névus"),
        ("v1.2", "v1.2"),
        ("(((", "_"),
    ],
)
def test_class_names_map_to_metric_keys_mlflow_accepts(name: str, key: str) -> None:
    from mlflow.utils.validation import _validate_metric_name

    from skinsearch.training.metrics import class_key

    assert class_key(name) == key
    _validate_metric_name(f"val_recall_{key}")  # raises for a key MLflow would refuse


def test_two_classes_with_one_metric_key_are_an_error(tmp_path: Path) -> None:
    data = tmp_path / "d"
    for name in ("nevus (benign)", "nevus benign"):
        for split in ("train", "val"):
            (data / split / name).mkdir(parents=True)
            Image.new("RGB", (8, 8)).save(data / split / name / "1.png")
    file = tmp_path / "space.yaml"
    file.write_text(OK.format(data=data))
    message = one_line_error(["run", str(file), "--storage", str(tmp_path / "r")])
    assert message == (
        "data: classes 'nevus (benign)' and 'nevus benign' would both be reported as "
        "val_recall_nevus_benign; rename one of the two folders"
    )


# -- data layouts ---------------------------------------------------------------------------------


def layout(case: str, root: Path) -> Path:
    classes = ["blue_grey", "small_pink"]
    if case == "train without val":
        write_image_folder(root, classes, train=3, val=0)
        for name in classes:
            (root / "val" / name).rmdir()
        (root / "val").rmdir()
    elif case == "val without train":
        write_image_folder(root, classes, train=0, val=2)
        for name in classes:
            (root / "train" / name).rmdir()
        (root / "train").rmdir()
    elif case == "val and validation":
        write_image_folder(root, classes, train=3, val=2)
        (root / "validation").mkdir()
    elif case == "one class":
        write_image_folder(root, ["blue_grey"], train=3, val=2)
    elif case == "one class, no split":
        write_image_folder(root, ["blue_grey"], train=3, val=0)
        (root / "train" / "blue_grey").rename(root / "blue_grey")
        for leftover in ("val/blue_grey", "val", "train"):
            (root / leftover).rmdir()
    else:
        assert case == "a class too small to split"
        for name, count in (("blue_grey", 3), ("small_pink", 1)):
            (root / name).mkdir(parents=True)
            for i in range(count):
                Image.new("RGB", (8, 8)).save(root / name / f"{i}.png")
    return root


LAYOUTS = {
    "train without val": "data: {d} has train/ but no val/ (or validation/); add val/ with the "
    "same class folders, or put the class folders at the top level to hold out data.val_fraction",
    "val without train": "data: {d} has val/ but no train/; add train/ with the class folders",
    "val and validation": "data: {d} has both val/ and validation/; keep one val folder",
    "one class": "data: {d}/train has one class folder (blue_grey); a classifier needs two or "
    "more (one folder per class)",
    "one class, no split": "data: {d} has one class folder (blue_grey); a classifier needs two "
    "or more (one folder per class)",
    "a class too small to split": "data: class folder {d}/small_pink has 1 image, too few to "
    "split into train and val (add images, or give train/ and val/ folders)",
}


@pytest.mark.parametrize("case", list(LAYOUTS))
def test_data_layouts_are_recognised_explicitly(case: str, tmp_path: Path) -> None:
    data = layout(case, tmp_path / "d")
    file = tmp_path / "space.yaml"
    file.write_text(OK.format(data=data))
    message = one_line_error(["run", str(file), "--storage", str(tmp_path / "r")])
    assert message == LAYOUTS[case].format(d=data)


def test_validation_is_a_val_folder(tmp_path: Path) -> None:
    from skinsearch.data import scan_dataset

    data = write_image_folder(tmp_path / "d", ["blue_grey", "small_pink"], train=3, val=2)
    (data / "val").rename(data / "validation")
    files = scan_dataset(data)
    assert files.class_names == ["blue_grey", "small_pink"]
    assert (len(files.train), len(files.val)) == (6, 4)
    assert files.split == "train/ and validation/ folders"


# -- state files are written whole ----------------------------------------------------------------


def test_a_state_file_is_replaced_whole_or_not_at_all(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import errno
    import os

    from skinsearch._files import write_atomic

    path = tmp_path / "search.yaml"
    write_atomic(path, "old: true\n")
    real_fsync = os.fsync

    def disk_full(fd: int) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", disk_full)
    with pytest.raises(OSError, match="No space left"):
        write_atomic(path, "new: true\n" * 1000)
    monkeypatch.setattr(os, "fsync", real_fsync)
    assert path.read_text() == "old: true\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["search.yaml"]  # no temporary left


def test_a_storage_under_the_reserve_is_refused_before_ray(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SKINSEARCH_MIN_FREE_MIB", str(10**12))  # more than any disk has free
    file = tmp_path / "space.yaml"
    file.write_text(
        OK.format(data=write_image_folder(tmp_path / "d", ["blue_grey", "small_pink"], 3, 2))
    )
    message = one_line_error(["run", str(file), "--storage", str(tmp_path / "r")])
    assert message.startswith(f"--storage: {tmp_path / 'r'} has ")
    assert message.endswith(
        "MiB free, less than the 1000000000000 MiB a search keeps in reserve; free some space or "
        "choose another --storage (SKINSEARCH_MIN_FREE_MIB sets the reserve)"
    )
    monkeypatch.setenv("SKINSEARCH_MIN_FREE_MIB", "lots")
    assert one_line_error(["run", str(file), "--storage", str(tmp_path / "r")]) == (
        "SKINSEARCH_MIN_FREE_MIB=lots: must be a number of MiB >= 0 (default 256)"
    )


def test_a_symlink_loop_in_the_data_does_not_hang(tmp_path: Path) -> None:
    from skinsearch.data import scan_dataset

    data = write_image_folder(tmp_path / "d", ["blue_grey", "small_pink"], train=3, val=2)
    (data / "train" / "blue_grey" / "loop").symlink_to(data / "train" / "blue_grey")
    files = scan_dataset(data)
    assert len(files.train) == 6
