"""Shared fixtures: small real image folders, search-space files, and paths to shipped data."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from skinsearch.data.synthetic import CLASSES, render

ROOT = Path(__file__).resolve().parents[1]
SEARCH_SPACES = ROOT / "search_spaces"
ISIC8 = ROOT.parent / "shared" / "data" / "isic8_clean"


def write_image_folder(
    root: Path, classes: list[str], train: int, val: int, size: int = 40
) -> Path:
    """Write ``train/<class>`` and ``val/<class>`` folders of rendered lesion PNGs."""
    for label, name in enumerate(classes):
        look = CLASSES[name]
        for split, count in (("train", train), ("val", val)):
            folder = root / split / name
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(count):
                rng = np.random.default_rng([label, i, split == "val"])
                Image.fromarray(render(look, rng, size)).save(folder / f"{name}_{i}.png")
    return root


@pytest.fixture(scope="session")
def tiny_images(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Three classes, 24 train and 8 val images each, 40x40 PNG."""
    classes = ["blue_grey", "ragged_dark", "small_pink"]
    return write_image_folder(tmp_path_factory.mktemp("tiny"), classes, train=24, val=8)


@pytest.fixture(autouse=True, scope="session")
def _isolated_cache(tmp_path_factory: pytest.TempPathFactory) -> None:
    # the built-in data set is generated into a per-session cache, never the user's
    import os

    os.environ["SKINSEARCH_CACHE"] = str(tmp_path_factory.mktemp("cache"))


@pytest.fixture
def bundle(tmp_path: Path) -> Path:
    """A real, valid bundle of a small MLP (3 classes, 16 px)."""
    import json

    import torch
    import yaml

    from skinsearch.config.hparams import HParams
    from skinsearch.models import build_model

    hp = HParams(hidden_sizes=[16], input_size=16, seed=0)
    model = build_model("mlp", hp, 16, 3)
    folder = tmp_path / "bundle"
    folder.mkdir()
    torch.save(model.state_dict(), folder / "model_state.pt")
    config = {"model": "mlp", "hparams": hp.model_dump(mode="json"), "class_names": list("abc")}
    (folder / "config.yaml").write_text(yaml.safe_dump(config))
    (folder / "classes.json").write_text(json.dumps(list("abc")))
    prep = {"resize": [16, 16], "mean": [0.5] * 3, "std": [0.25] * 3}
    (folder / "preprocessing.json").write_text(json.dumps(prep))
    return folder


def spawn_skinsearch(*args: str, output: bool = True) -> subprocess.Popen[str]:
    """``python -m skinsearch ARGS`` in its own process group (so a test can Ctrl-C or kill it
    and everything it started), with its output on a pipe unless ``output`` is False."""
    return subprocess.Popen(
        [sys.executable, "-m", "skinsearch", *args],
        stdout=subprocess.PIPE if output else subprocess.DEVNULL,
        stderr=subprocess.STDOUT if output else subprocess.DEVNULL,
        text=True,
        env=dict(os.environ, PYTHONUNBUFFERED="1"),
        start_new_session=True,
    )


def read_until(
    proc: subprocess.Popen[str], done: Callable[[str], bool], timeout_s: float = 120
) -> list[str]:
    """The lines ``proc`` prints until ``done(all of them so far)`` or ``timeout_s`` pass."""
    assert proc.stdout is not None
    output: list[str] = []
    deadline = time.monotonic() + timeout_s
    for line in proc.stdout:
        output.append(line)
        if done("".join(output)) or time.monotonic() > deadline:
            break
    return output


def start_server(
    command: list[str], url: str, log_file: Path, timeout_s: float = 180
) -> subprocess.Popen[bytes]:
    """Start a server process (its own process group, output to ``log_file``) and wait until
    ``url`` answers; fail the test with the end of its log if it dies or does not answer, after
    stopping what it started (a server that answers late must not outlive the test run)."""
    with log_file.open("a") as log:
        proc = subprocess.Popen(
            command, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            with urllib.request.urlopen(url, timeout=2):
                return proc
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                if proc.poll() is None:
                    os.killpg(proc.pid, signal.SIGKILL)
                    proc.wait(timeout=30)
                pytest.fail(
                    f"{Path(command[0]).name} did not start: {log_file.read_text()[-2000:]}"
                )
            time.sleep(0.3)


# -- the command line, in-process -------------------------------------------------------------


def cli(args: list[str], code: int = 0) -> Any:
    """Run ``skinsearch ARGS`` in-process (click's ``CliRunner``); check its exit code and that
    it printed no traceback; returns the result (``.output``)."""
    from click.testing import CliRunner

    from skinsearch.cli import main

    result = CliRunner().invoke(main, args)
    assert result.exit_code == code, result.output
    assert "Traceback" not in result.output
    return result


# -- search spaces and a search's folder, as Tune and skinsearch leave it ----------------------------------------


def spec_of(text: str, model: str = "cnn") -> Any:
    """The ``SearchSpec`` of a file named ``t`` for ``model`` with ``text`` after those lines."""
    from skinsearch.config.spec import loads_spec

    return loads_spec(f"name: t\nmodel: {model}\n{text}")


def write_search(storage: Path, name: str, spec_text: str, classes: list[str]) -> Path:
    """A search folder with its ``search.yaml`` (``spec_text`` after its ``name:`` line), as
    ``skinsearch run`` writes it before its first trial."""
    from skinsearch.config.spec import loads_spec
    from skinsearch.store.searches import save_search_file
    from skinsearch.store.storage import Storage

    spec = loads_spec(f"name: {name}\n{spec_text}")
    folder = storage / name
    folder.mkdir(parents=True)
    save_search_file(folder, spec, name, classes, 2, Storage(storage), "sqlite://")
    return folder


def write_trial(
    search: Path, name: str, params: dict[str, Any], rows: list[dict[str, Any]]
) -> Path:
    """A trial folder as Tune leaves it: ``params.json`` and one ``result.json`` line per epoch."""
    import json

    folder = search / name
    folder.mkdir()
    (folder / "params.json").write_text(json.dumps(params))
    lines = [json.dumps({"trial_id": name.removeprefix("trial_"), **row}) for row in rows]
    (folder / "result.json").write_text("".join(line + "\n" for line in lines))
    return folder


# -- MLflow, as a search on a local storage leaves it ---------------------------------------------


def storage_client(storage: Path) -> Any:
    """An MLflow client on the SQLite store a search keeps under ``storage``."""
    from mlflow.tracking import MlflowClient

    return MlflowClient(tracking_uri=f"sqlite:///{storage / 'mlflow.db'}")


def mlflow_runs(storage: Path, experiment: str | None = None) -> list[Any]:
    """Every run under ``storage`` (of one experiment, when named)."""
    client = storage_client(storage)
    if experiment is None:
        ids = [e.experiment_id for e in client.search_experiments()]
    else:
        ids = [client.get_experiment_by_name(experiment).experiment_id]
    return list(client.search_runs(ids))
