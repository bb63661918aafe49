"""Tracking to a real ``mlflow server`` process (SQLite backend, local artifact store)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from skinsearch.cli import main
from tests.conftest import cli, spawn_skinsearch, start_server

pytestmark = pytest.mark.slow


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class MlflowServer:
    """A real ``mlflow server`` process on 127.0.0.1 (SQLite backend, local artifacts), which a
    test can stop and start again on the same port and store."""

    def __init__(self, folder: Path) -> None:
        self.folder, self.port = folder, free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        mlflow = Path(sys.executable).parent / "mlflow"
        self.proc = start_server(
            [
                str(mlflow),
                "server",
                "--backend-store-uri",
                f"sqlite:///{self.folder / 'mlflow.db'}",
                "--artifacts-destination",
                str(self.folder / "artifacts"),
                "--host",
                "127.0.0.1",
                "--port",
                str(self.port),
                # one worker: uvicorn's supervisor of several restarts a worker that misses its
                # 5 s health ping, so on a loaded machine (a search beside the tests) the
                # server never came up within the deadline
                "--workers",
                "1",
            ],
            f"{self.url}/health",
            self.folder / "server.log",
        )

    def stop(self, crash: bool = False) -> None:
        """Stop the server and its workers (nothing else): with ``crash``, at once (SIGKILL)."""
        if self.proc is not None and self.proc.poll() is None and crash:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=30)
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                # its workers may wait for requests in flight (a search logging mid-stop): the
                # server goes down hard, as a crashed one would
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=30)
        self.proc = None


@pytest.fixture(scope="module")
def mlflow_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    server = MlflowServer(tmp_path_factory.mktemp("mlflow-server"))
    server.start()
    try:
        yield server.url
    finally:
        server.stop()


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


def test_a_server_down_mid_search_loses_nothing_and_sync_relogs_it(
    tiny_images: Path, tmp_path: Path
) -> None:
    import json

    from mlflow.tracking import MlflowClient

    server = MlflowServer(tmp_path)
    server.start()
    space = tmp_path / "outage.yaml"
    space.write_text(
        f"name: outage\nmodel: mlp\ndata: {{path: {tiny_images}}}\n"
        "train: {max_epochs: 150, patience: 1000}\nscheduler: none\n"
        "resources: {cpus_per_trial: 1}\n"
        "params:\n  input_size: 16\n  hidden_sizes: [16]\n  lr: {grid: [0.001, 0.002, 0.003]}\n"
    )
    storage = tmp_path / "results"
    proc = spawn_skinsearch(
        "run", str(space), "--storage", str(storage), "--cpus", "2", "--mlflow-uri", server.url
    )
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            files = list(storage.glob("outage/trial_*/result.json"))
            if any(len(f.read_text().splitlines()) >= 5 for f in files):
                break
            time.sleep(0.2)
        server.stop(crash=True)  # mid-search, at once (a graceful stop would finish requests)
        output, _ = proc.communicate(timeout=300)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=60)
    assert proc.returncode == 0, output
    assert "Traceback" not in output
    assert "3 trials: 3 completed" in output
    assert "tracking call(s) failed" in output
    assert f"skinsearch sync-mlflow --storage {storage} --name outage" in output

    server.start()  # back, on the same store
    try:
        sync = cli(["sync-mlflow", "--storage", str(storage)])
        assert "synced 3 trials" in sync.output
        client = MlflowClient(tracking_uri=server.url)
        runs = client.search_runs([client.get_experiment_by_name("outage").experiment_id])
        children = [r for r in runs if "mlflow.parentRunId" in r.data.tags]
        assert len(children) == 3  # one per trial, none twice
        assert all(r.info.status == "FINISHED" for r in runs)
        for child in children:
            assert child.data.tags["skinsearch.end"] == "completed"
            steps = [m.step for m in client.get_metric_history(child.info.run_id, "val_acc")]
            assert sorted(steps) == list(range(1, 151))
            trial_dir = Path(child.data.tags["skinsearch.trial_dir"])
            rows = [json.loads(x) for x in (trial_dir / "result.json").read_text().splitlines()]
            assert len(rows) == 150
        again = CliRunner().invoke(main, ["sync-mlflow", "--storage", str(storage)])
        assert "0 runs created, 0 epochs logged, 0 runs ended" in again.output
    finally:
        server.stop()
