"""Tracking to a real ``mlflow server`` process (SQLite backend, local artifact store)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from skinsearch.cli import main

pytestmark = pytest.mark.slow


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="module")
def mlflow_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    folder = tmp_path_factory.mktemp("mlflow-server")
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    mlflow = Path(sys.executable).parent / "mlflow"
    log = (folder / "server.log").open("w")
    proc = subprocess.Popen(
        [
            str(mlflow),
            "server",
            "--backend-store-uri",
            f"sqlite:///{folder / 'mlflow.db'}",
            "--artifacts-destination",
            str(folder / "artifacts"),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 90
        while True:
            try:
                with urllib.request.urlopen(f"{url}/health", timeout=2):
                    break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(
                        f"mlflow server did not start: {(folder / 'server.log').read_text()[-2000:]}"
                    )
                time.sleep(0.5)
        yield url
    finally:
        os.killpg(proc.pid, signal.SIGTERM)  # the server and the workers it started, nothing else
        proc.wait(timeout=30)
        log.close()


def test_a_search_tracks_to_the_server_and_best_reads_it_back(
    mlflow_server: str, tiny_images: Path, tmp_path: Path
) -> None:
    from mlflow.tracking import MlflowClient

    space = tmp_path / "served.yaml"
    space.write_text(
        f"name: served\nmodel: mlp\ndata: {{path: {tiny_images}}}\ntrain: {{max_epochs: 2}}\n"
        "scheduler: none\nparams:\n  input_size: 16\n  hidden_sizes: [16]\n  lr: {grid: [0.001, 0.01]}\n"
    )
    storage = tmp_path / "results"
    run = CliRunner().invoke(
        main,
        [
            "run",
            str(space),
            "--storage",
            str(storage),
            "--cpus",
            "2",
            "--mlflow-uri",
            mlflow_server,
        ],
    )
    assert run.exit_code == 0, run.output
    assert f"MLflow:      {mlflow_server} (experiment 'served')" in run.output
    assert not (storage / "mlflow.db").exists()

    client = MlflowClient(tracking_uri=mlflow_server)
    runs = client.search_runs([client.get_experiment_by_name("served").experiment_id])
    children = [r for r in runs if "mlflow.parentRunId" in r.data.tags]
    assert len(runs) == 3 and len(children) == 2
    assert all(r.info.status == "FINISHED" for r in runs)
    for child in children:
        assert len(client.get_metric_history(child.info.run_id, "val_acc")) == 2
        paths = {a.path for a in client.list_artifacts(child.info.run_id, "best_epoch")}
        assert "best_epoch/confusion_matrix.png" in paths

    best = CliRunner().invoke(
        main, ["best", "--storage", str(storage)]
    )  # the URI comes from search.yaml
    assert best.exit_code == 0, best.output
    assert "best of 2 trials by val_acc (max), from mlflow" in best.output


def test_an_unreachable_server_is_one_line_before_ray_starts(
    tiny_images: Path, tmp_path: Path
) -> None:
    import ray

    url = f"http://127.0.0.1:{free_port()}"
    space = tmp_path / "s.yaml"
    space.write_text(f"name: s\nmodel: mlp\ndata: {{path: {tiny_images}}}\n")
    started = time.monotonic()
    result = CliRunner().invoke(
        main, ["run", str(space), "--storage", str(tmp_path / "r"), "--mlflow-uri", url]
    )
    assert result.exit_code == 2
    last = result.output.strip().splitlines()[-1]
    assert last.startswith(f"Error: MLflow server {url} does not answer (")
    assert last.endswith("); start it or pass another --mlflow-uri")
    assert time.monotonic() - started < 30
    assert not ray.is_initialized()
