"""Ray itself: start a local instance on loopback, or join an existing cluster."""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Callable

from skinsearch.errors import SkinsearchError
from skinsearch.spec import SearchSpec

Echo = Callable[[str], None]


def check_address(address: str) -> None:
    """Fail fast, with one line, when nothing listens at a Ray cluster address.

    ``ray.init`` itself retries an unreachable address for minutes.
    """
    if address == "auto":
        return
    host, _, port = address.removeprefix("ray://").rpartition(":")
    if not host or not port.isdigit():
        raise SkinsearchError(f"--address {address}: expected auto, host:port or ray://host:port")
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=5).close()
    except OSError as exc:
        reason = exc.strerror or exc.__class__.__name__
        raise SkinsearchError(
            f"--address {address}: no Ray cluster answers there ({reason}); "
            "start one with `ray start --head` or leave out --address"
        ) from None


LOOPBACK = "127.0.0.1"


def start_ray(
    address: str | None,
    cpus: int | None,
    gpus: int | None,
    spec: SearchSpec,
    echo: Echo,
    dashboard_host: str = LOOPBACK,
) -> None:
    """Start (or join) Ray and print what it has, with the dashboard's address.

    A Ray started here listens on loopback only; its dashboard on ``dashboard_host``.
    """
    import ray

    os.environ.setdefault("RAY_DEDUP_LOGS", "1")
    # a failed trial's exception is printed once, as one line, by the progress callback (its
    # traceback is in the trial's error.txt); Ray would print it again, whole
    os.environ.setdefault("RAY_IGNORE_UNHANDLED_ERRORS", "1")
    if address is not None:
        try:
            context = ray.init(address=address, logging_level=logging.WARNING, log_to_driver=False)
        except (ConnectionError, RuntimeError, ValueError) as exc:
            first = (str(exc).strip().splitlines() or [exc.__class__.__name__])[0]
            raise SkinsearchError(f"--address {address}: cannot join ({first[:200]})") from None
    else:
        context = ray.init(
            address="local",
            num_cpus=cpus,
            num_gpus=gpus,
            include_dashboard=True,
            dashboard_host=dashboard_host,
            dashboard_port=_dashboard_port(dashboard_host),
            _node_ip_address=LOOPBACK,
            logging_level=logging.WARNING,
            log_to_driver=False,
        )
    url = f"http://{context.dashboard_url}" if context.dashboard_url else ""
    resources = ray.cluster_resources()
    problem = _unschedulable(spec, resources)
    if problem:
        ray.shutdown()
        raise SkinsearchError(problem)
    echo(
        f"Ray: {resources.get('CPU', 0):g} CPUs, {resources.get('GPU', 0):g} GPUs"
        + (f"; dashboard {url} (token in ~/.ray/auth_token)" if url else "")
    )
    if address is None and dashboard_host not in (LOOPBACK, "localhost"):
        echo(
            f"warning: the Ray dashboard listens on {dashboard_host}: anyone who can reach it "
            "and has the token in ~/.ray/auth_token can see this machine's processes and run "
            "code on it; keep it on 127.0.0.1 and use an SSH tunnel unless you mean this"
        )
    if spec.resources.gpus_per_trial and not resources.get("GPU"):
        echo("no GPU in this Ray cluster: trials run on CPUs (resources.gpus_per_trial is ignored)")


def _dashboard_port(host: str, preferred: int = 8265) -> int:
    # Ray's usual port, or a free one when another Ray (another search) already holds it: Ray
    # itself would start without a dashboard
    import socket

    for port in (preferred, 0):
        with socket.socket() as sock:
            try:
                sock.bind((host, port))
            except OSError:
                continue
            return int(sock.getsockname()[1])
    return preferred


def _unschedulable(spec: SearchSpec, resources: dict[str, float]) -> str:
    # Tune waits forever for a trial bigger than the cluster; say so instead.
    cpus, gpus = resources.get("CPU", 0.0), resources.get("GPU", 0.0)
    want = spec.resources
    if want.cpus_per_trial > cpus:
        return (
            f"resources.cpus_per_trial: {want.cpus_per_trial:g} is more than the {cpus:g} CPUs "
            "Ray has; lower it, or give Ray more with --cpus"
        )
    if gpus and want.gpus_per_trial > gpus:
        return (
            f"resources.gpus_per_trial: {want.gpus_per_trial:g} is more than the {gpus:g} GPUs "
            "Ray has; lower it, or give Ray more with --gpus"
        )
    return ""
