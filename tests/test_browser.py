"""What users see, looked at in headless Chromium: the MLflow UI served by a real ``mlflow server``
after a search, and the Ray dashboard during one. Screenshots go to ``test-artifacts/``.

Chromium runs with ``--dump-dom`` (the page after its scripts ran) and ``--screenshot``. The Ray
dashboard wants Ray's bearer token; a browser is handed it the way a user's is (an HTTP header),
by a small forwarding proxy on 127.0.0.1 that adds it to every request.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from click.testing import CliRunner

from skinsearch.cli import main
from tests.conftest import spawn_skinsearch
from tests.test_mlflow_server import MlflowServer, free_port

CHROMIUM = next(
    (p for p in map(shutil.which, ("chromium", "chromium-browser", "google-chrome")) if p), None
)
ARTIFACTS = Path(__file__).resolve().parents[1] / "test-artifacts"

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        CHROMIUM is None, reason="Chromium is not installed (.ci/run installs Debian's chromium)"
    ),
]


def browse(url: str, screenshot: str | None = None) -> str:
    """The page's DOM after its scripts ran; optionally a screenshot in test-artifacts/."""
    assert CHROMIUM is not None
    args = [
        CHROMIUM,
        "--headless",
        "--no-sandbox",  # CI runs as root, where Chromium's sandbox cannot start
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--window-size=1600,1000",
        "--virtual-time-budget=20000",
    ]
    if screenshot:
        ARTIFACTS.mkdir(exist_ok=True)
        subprocess.run(
            [*args, f"--screenshot={ARTIFACTS / screenshot}", url],
            capture_output=True,
            timeout=120,
            check=True,
        )
    return subprocess.run(
        [*args, "--dump-dom", url], capture_output=True, text=True, timeout=120, check=True
    ).stdout


def text_of(html: str) -> str:
    """The page's text, tags dropped and whitespace collapsed."""
    return " ".join(re.sub(r"<[^>]+>", " ", html).split())


def test_the_mlflow_ui_lists_the_child_runs_with_their_metrics(
    tiny_images: Path, tmp_path: Path
) -> None:
    from mlflow.tracking import MlflowClient

    server = MlflowServer(tmp_path)
    server.start()
    try:
        space = tmp_path / "ui.yaml"
        space.write_text(
            f"name: ui\nmodel: mlp\ndata: {{path: {tiny_images}}}\ntrain: {{max_epochs: 2}}\n"
            "scheduler: none\nparams:\n  input_size: 16\n  hidden_sizes: [16]\n"
            "  lr: {grid: [0.001, 0.01]}\n"
        )
        args = ["run", str(space), "--storage", str(tmp_path / "r"), "--mlflow-uri", server.url]
        result = CliRunner().invoke(main, [*args, "--cpus", "2"])
        assert result.exit_code == 0, result.output
        client = MlflowClient(tracking_uri=server.url)
        experiment = client.get_experiment_by_name("ui").experiment_id
        runs = client.search_runs([experiment])
        (parent,) = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
        children = [r for r in runs if "mlflow.parentRunId" in r.data.tags]

        # the experiment's runs table: the parent, with its children counted under it
        page = text_of(
            browse(f"{server.url}/#/experiments/{experiment}/runs", screenshot="mlflow_runs.png")
        )
        assert parent.info.run_name in page
        assert f"{len(children) + 1} matching runs" in page
        # each child's page: its metrics, and the parent it belongs to
        for i, child in enumerate(children):
            run_page = text_of(
                browse(
                    f"{server.url}/#/experiments/{experiment}/runs/{child.info.run_id}",
                    screenshot=f"mlflow_child_run_{i}.png",
                )
            )
            assert child.info.run_name in run_page
            assert "Parent run" in run_page and parent.info.run_name in run_page
            for metric in ("val_acc", "val_balanced_acc", "val_macro_f1", "train_loss"):
                assert metric in run_page
    finally:
        server.stop()


class _TokenProxy:
    """Forwards GET requests on 127.0.0.1 to ``target`` with Ray's bearer token added."""

    def __init__(self, target: str, token: str) -> None:
        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                request = urllib.request.Request(
                    target + self.path, headers={"Authorization": f"Bearer {token}"}
                )
                try:
                    with urllib.request.urlopen(request, timeout=30) as response:
                        body, status, headers = response.read(), response.status, response.headers
                except urllib.error.HTTPError as exc:
                    body, status, headers = exc.read(), exc.code, exc.headers
                self.send_response(status)
                for key, value in headers.items():
                    if key.lower() not in ("transfer-encoding", "connection", "content-length"):
                        self.send_header(key, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def running_search(tiny_images: Path, tmp_path: Path) -> Iterator[str]:
    """A search that runs until stopped; yields its dashboard's URL once trials report."""
    space = tmp_path / "long.yaml"
    space.write_text(
        f"name: long\nmodel: mlp\ndata: {{path: {tiny_images}}}\n"
        "train: {max_epochs: 10000, patience: 10000}\nscheduler: none\n"
        "params:\n  input_size: 16\n  hidden_sizes: [16]\n  lr: {grid: [0.001, 0.002]}\n"
    )
    storage = tmp_path / "r"
    proc = spawn_skinsearch("run", str(space), "--storage", str(storage), "--cpus", "2")
    try:
        assert proc.stdout is not None
        dashboard = ""
        for line in proc.stdout:
            found = re.search(r"dashboard (http://127\.0\.0\.1:\d+)", line)
            if found:
                dashboard = found.group(1)
                break
        assert dashboard, "the search printed no dashboard address"
        deadline = time.monotonic() + 120
        while not list(storage.glob("long/trial_*/result.json")) and time.monotonic() < deadline:
            time.sleep(0.5)
        yield dashboard
    finally:
        os.killpg(proc.pid, signal.SIGINT)  # Ctrl-C: the search stops cleanly
        proc.wait(timeout=120)


def test_the_ray_dashboard_shows_the_trial_actors(running_search: str) -> None:
    token = (Path.home() / ".ray" / "auth_token").read_text().strip()
    proxy = _TokenProxy(running_search, token)
    try:
        page = browse(f"{proxy.url}/#/actors", screenshot="ray_dashboard_actors.png")
    finally:
        proxy.close()
    assert "run_trial" in page  # Tune's actor for skinsearch's trainable
    assert page.count("ALIVE") >= 2  # both trials' actors
