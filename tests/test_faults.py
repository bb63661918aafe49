"""Real searches under faults: a full disk (a small tmpfs), SIGTERM, simultaneous first runs on
one new storage, a search whose every trial errors, and class names MLflow would refuse as
metric keys. Each asserts what the user sees (the line, the exit code) and what is left on disk
and in MLflow."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from skinsearch.cli import main
from tests.conftest import cli, mlflow_runs, read_until, spawn_skinsearch, storage_client

pytestmark = pytest.mark.slow


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def run_cli(*args: str, env: dict[str, str] | None = None, timeout: int = 300) -> tuple[int, str]:
    proc = subprocess.run(
        [sys.executable, "-m", "skinsearch", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})},
    )
    return proc.returncode, proc.stdout + proc.stderr


# -- a full disk -----------------------------------------------------------------------------------


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 64 MiB tmpfs of this test's own, unmounted after it."""
    mount = tmp_path / "disk"
    mount.mkdir()
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("mounting a small tmpfs needs root (CI and the developers' machines are)")
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=64m", "tmpfs", str(mount)], capture_output=True
    )
    if done.returncode != 0:
        pytest.skip(f"this machine does not allow mounting a tmpfs: {done.stderr.decode()[:200]}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def fill(disk: Path, leave_mib: int) -> Path:
    """A user's own file that leaves ``leave_mib`` free."""
    free = shutil.disk_usage(disk).free
    filler = disk / "my-data.bin"
    filler.write_bytes(os.urandom(free - leave_mib * 2**20))
    return filler


def cnn_space(tmp_path: Path, data: Path) -> Path:
    # checkpoints of about 1.5 MiB each (two kept per trial), so the disk fills within a few
    # epochs; 20 epochs keep the trials running past several of the guard's checks (one a
    # second) even on a fast machine
    space = tmp_path / "disk.yaml"
    space.write_text(
        f"name: disk\nmodel: cnn\ndata: {{path: {data}}}\n"
        "train: {max_epochs: 20, patience: null, metric: val_loss}\nscheduler: none\n"
        "params:\n  input_size: 32\n  channels: [16, 32]\n  fc_size: 64\n"
        "  lr: {grid: [0.0003, 0.001, 0.003, 0.01]}\n"
    )
    return space


def cut_short_files(storage: Path) -> list[str]:
    """The files under ``storage`` that are cut short: empty state files, unparsable JSON."""
    broken = []
    for path in storage.rglob("*"):
        if not path.is_file():
            continue
        if path.name in ("state.json", "search.yaml", "params.json") and path.stat().st_size == 0:
            broken.append(str(path))
        elif path.suffix == ".json" and path.name.startswith(
            ("experiment_state", "state", "params")
        ):
            try:
                json.loads(path.read_text())
            except ValueError:
                broken.append(str(path))
        elif path.name == "result.json":
            for line in path.read_text().splitlines():
                try:
                    json.loads(line)
                except ValueError:
                    broken.append(str(path))
                    break
    return broken


def test_a_full_disk_stops_the_search_cleanly_and_resume_finishes_it(
    small_disk: Path, tiny_images: Path, tmp_path: Path
) -> None:
    space = cnn_space(tmp_path, tiny_images)
    storage = small_disk / "results"
    filler = fill(small_disk, leave_mib=24)
    filler_hash = sha(filler)
    env = {"SKINSEARCH_MIN_FREE_MIB": "20"}
    code, out = run_cli("run", str(space), "--storage", str(storage), "--cpus", "2", env=env)
    assert code == 1, out
    assert "Traceback" not in out
    errors = [line for line in out.splitlines() if line.startswith("Error: ")]
    assert len(errors) == 1, out
    assert errors[0].startswith(f"Error: the search stopped itself: {storage} has ")
    assert "MiB free, less than the 20 MiB it keeps in reserve" in errors[0]
    assert errors[0].endswith(
        "finished trials are kept, unfinished ones are marked FAILED in MLflow; free some "
        "space, then run the same command with --resume to carry it on"
    )
    assert sha(filler) == filler_hash  # the user's file, untouched
    assert cut_short_files(storage) == []
    runs = mlflow_runs(storage)
    assert runs and all(r.info.status != "RUNNING" for r in runs)
    parent = next(r for r in runs if "mlflow.parentRunId" not in r.data.tags)
    assert parent.info.status == "FAILED"
    unfinished = [r for r in runs if r.data.tags.get("skinsearch.end") == "storage_failed"]
    assert unfinished and all(r.info.status == "FAILED" for r in unfinished)

    filler.unlink()  # the user frees space
    code, out = run_cli(
        "run", str(space), "--storage", str(storage), "--cpus", "2", "--resume", env=env
    )
    assert code == 0, out
    assert "4 trials: 4 completed" in out, out
    runs = mlflow_runs(storage)
    children = [r for r in runs if "mlflow.parentRunId" in r.data.tags]
    assert len(children) == 4  # one run per trial, resumed in place
    assert all(r.info.status == "FINISHED" for r in runs)
    assert cut_short_files(storage) == []


def test_writes_that_fail_stop_the_search_in_one_line(
    small_disk: Path, tiny_images: Path, tmp_path: Path
) -> None:
    # no reserve: the disk really fills, and the failed writes themselves stop the search
    space = cnn_space(tmp_path, tiny_images)
    storage = small_disk / "results"
    filler = fill(small_disk, leave_mib=4)
    filler_hash = sha(filler)
    env = {"SKINSEARCH_MIN_FREE_MIB": "0"}
    code, out = run_cli("run", str(space), "--storage", str(storage), "--cpus", "2", env=env)
    assert code == 1, out
    assert "Traceback" not in out
    errors = [line for line in out.splitlines() if line.startswith("Error: ")]
    assert len(errors) == 1 and errors[0].startswith("Error: the search stopped itself: "), out
    assert str(storage) in errors[0]
    assert sha(filler) == filler_hash
    filler.unlink()
    # MLflow could not be told everything on a full disk: sync-mlflow ends what was left open
    code, out = run_cli("sync-mlflow", "--storage", str(storage))
    assert code == 0, out
    assert all(r.info.status != "RUNNING" for r in mlflow_runs(storage))


# -- SIGTERM, as a scheduler or `docker stop` sends it ----------------------------------------


def test_sigterm_stops_a_search_like_ctrl_c(tiny_images: Path, tmp_path: Path) -> None:
    space = tmp_path / "long.yaml"
    space.write_text(
        f"name: long\nmodel: mlp\ndata: {{path: {tiny_images}}}\n"
        "train: {max_epochs: 5000, patience: 5000}\nscheduler: none\n"
        "params:\n  input_size: 16\n  hidden_sizes: [16]\n  lr: {grid: [0.001, 0.002]}\n"
    )
    storage = tmp_path / "r"
    proc = spawn_skinsearch("run", str(space), "--storage", str(storage), "--cpus", "2")
    assert proc.stdout is not None
    output = read_until(proc, lambda text: "  epoch " in text)  # a trial is training
    proc.send_signal(signal.SIGTERM)  # to the skinsearch process alone, as `kill PID` does
    output.append(proc.stdout.read())
    code = proc.wait(timeout=120)
    text = "".join(output)
    assert code == 143, text
    assert "Traceback" not in text and "Aborted" not in text
    assert "2 trials: 2 interrupted" in text  # the summary is printed
    assert "Interrupted (SIGTERM): finished trials are kept above" in text
    runs = mlflow_runs(storage)
    assert all(r.info.status != "RUNNING" for r in runs)
    parent = next(r for r in runs if "mlflow.parentRunId" not in r.data.tags)
    assert parent.info.status == "KILLED"
    assert {r.data.tags.get("skinsearch.end") for r in runs if r != parent} == {"interrupted"}


# -- every trial errored --------------------------------------------------------------------------


def test_a_search_whose_every_trial_errored_exits_1(tiny_images: Path, tmp_path: Path) -> None:
    space = tmp_path / "diverge.yaml"
    space.write_text(
        f"name: diverge\nmodel: mlp\ndata: {{path: {tiny_images}}}\nscheduler: none\n"
        "params:\n  input_size: 16\n  hidden_sizes: [16]\n  optimizer: sgd\n  momentum: 0.0\n"
        "  lr: 1.0e+30\n"
    )
    result = CliRunner().invoke(main, ["run", str(space), "--storage", str(tmp_path / "r")])
    assert result.exit_code == 1, result.output
    assert "1 trials: 1 errored" in result.output
    assert result.output.strip().splitlines()[-1] == (
        "Error: no trial of search diverge produced a result: all 1 errored (the reasons are "
        "above); fix the cause and run again"
    )


# -- simultaneous first runs on one new storage --------------------------------------------------


@pytest.mark.parametrize("count", [2, 3])
def test_simultaneous_first_runs_on_a_new_storage_all_finish(
    count: int, tiny_images: Path, tmp_path: Path
) -> None:
    space = tmp_path / "same.yaml"
    space.write_text(
        f"name: same\nmodel: mlp\ndata: {{path: {tiny_images}}}\ntrain: {{max_epochs: 2}}\n"
        "scheduler: none\nparams:\n  input_size: 16\n  hidden_sizes: [16]\n"
    )
    storage = tmp_path / "new"  # does not exist yet: every run creates and migrates mlflow.db
    procs = [
        spawn_skinsearch("run", str(space), "--storage", str(storage), "--cpus", "1")
        for _ in range(count)
    ]
    outputs = [p.communicate(timeout=400)[0] for p in procs]
    for proc, out in zip(procs, outputs, strict=True):
        assert proc.returncode == 0, out
        assert "Traceback" not in out
    names = ["same"] + [f"same-{n}" for n in range(2, count + 1)]
    assert sorted(p.name for p in storage.iterdir() if (p / "search.yaml").exists()) == names
    for name in names:
        saved = yaml.safe_load((storage / name / "search.yaml").read_text())
        assert saved["search"] == name and saved["trials"] == 1
    runs = mlflow_runs(storage)
    parents = sorted(r.info.run_name for r in runs if "mlflow.parentRunId" not in r.data.tags)
    assert parents == names
    assert len(runs) == 2 * count  # a parent and one trial each: none lost, none twice
    assert all(r.info.status == "FINISHED" for r in runs)


# -- class names MLflow would refuse ------------------------------------------------------------


def test_class_names_with_brackets_and_symbols_keep_every_metric(
    tiny_images: Path, tmp_path: Path
) -> None:
    data = tmp_path / "data"
    names = {
        "blue_grey": "nevus (benign)",
        "ragged_dark": "mel+bcc & 'other'",
        "small_pink": "névus",
    }
    for split in ("train", "val"):
        for old, new in names.items():
            shutil.copytree(tiny_images / split / old, data / split / new)
    space = tmp_path / "names.yaml"
    space.write_text(
        f"name: names\nmodel: mlp\ndata: {{path: {data}}}\ntrain: {{max_epochs: 2, metric: "
        "val_recall_nevus_benign}\nscheduler: none\nparams:\n  input_size: 16\n"
        "  hidden_sizes: [16]\n  lr: {grid: [0.001, 0.003]}\n"
    )
    storage = tmp_path / "r"
    result = cli(["run", str(space), "--storage", str(storage)])
    assert "tracking call(s) failed" not in result.output
    client = storage_client(storage)
    trials = [r for r in mlflow_runs(storage) if "mlflow.parentRunId" in r.data.tags]
    assert len(trials) == 2
    for run in trials:
        for key in ("val_recall_nevus_benign", "val_recall_mel_bcc_other", "val_recall_névus"):
            history = client.get_metric_history(run.info.run_id, key)
            assert [m.step for m in history] == [1, 2], key
    result = cli(["sync-mlflow", "--storage", str(storage)])
