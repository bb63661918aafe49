"""Ray itself: start a local instance on loopback, or join an existing cluster."""

from __future__ import annotations

import logging
import math
import os
import socket
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from skinsearch.config.spec import SearchSpec
from skinsearch.errors import SkinsearchError
from skinsearch.tune._logs import quiet_ray_start

if TYPE_CHECKING:
    from skinsearch.training.footprint import Footprint

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
        reason = _reason(exc)
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
    largest: tuple[Footprint, int] | None = None,
) -> None:
    """Start (or join) Ray and print what it has, with the dashboard's address; refuse (and
    stop Ray again) a search whose trials it cannot hold: ``largest`` is the search's largest
    trial and how many trials it runs.

    A Ray started here listens on loopback only; its dashboard on ``dashboard_host``.
    """
    import ray

    os.environ.setdefault("RAY_DEDUP_LOGS", "1")
    # a failed trial's exception is printed once, as one line, by the progress callback (its
    # traceback is in the trial's error.txt); Ray would print it again, whole
    os.environ.setdefault("RAY_IGNORE_UNHANDLED_ERRORS", "1")
    if address is not None:
        try:
            context = ray.init(
                address=address,
                logging_level=logging.WARNING,
                log_to_driver=False,
                runtime_env={"env_vars": worker_env()},
            )
        except (ConnectionError, RuntimeError, ValueError) as exc:
            first = (str(exc).strip().splitlines() or [exc.__class__.__name__])[0]
            raise SkinsearchError(f"--address {address}: cannot join ({first[:200]})") from None
    else:
        context = _start_local(cpus, gpus, dashboard_host)
    url = f"http://{context.dashboard_url}" if context.dashboard_url else ""
    resources = ray.cluster_resources()
    problem = _unschedulable(spec, resources)
    if largest is not None and not problem:
        memory, cpus = resources.get("memory", 0.0), resources.get("CPU", 1.0)
        problem = trial_memory_problem(spec, *largest, memory, cpus, "Ray")
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


#: glibc's malloc settings for the processes Ray starts (a trial's worker, on every node). By
#: default glibc maps each block over 32 MiB afresh and unmaps it when freed, and a thread other
#: than a process's main one (Tune trains in one) gets its own arena, which cannot hold a block
#: over 64 MiB at all: a backbone's activations at 160 px are such blocks, so each training step
#: faulted hundreds of MiB in anew. One arena, no mmap and no trimming keep freed memory for the
#: next step, and a worker holds its peak memory instead (measured: bench/worker_malloc.py).
WORKER_MALLOC = {
    "MALLOC_ARENA_MAX": "1",
    "MALLOC_MMAP_MAX_": "0",
    "MALLOC_TRIM_THRESHOLD_": str(16 * 2**30),
}


def worker_env() -> dict[str, str]:
    """The environment Ray's workers start with: ``WORKER_MALLOC``, where the user's own
    environment does not set the variable already (theirs is passed on instead)."""
    return {name: os.environ.get(name, value) for name, value in WORKER_MALLOC.items()}


def check_dashboard_host(host: str) -> None:
    """Fail fast, with one line, for a ``--dashboard-host`` this machine cannot listen on.

    Raises:
        SkinsearchError: naming the host and why.
    """
    try:
        with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as sock:
            sock.bind((host.strip("[]"), 0))
    except OSError as exc:
        reason = _reason(exc)
        raise SkinsearchError(
            f"--dashboard-host {host}: this machine cannot listen there ({reason}); give one "
            "of its addresses, such as 127.0.0.1 (the default) or 0.0.0.0"
        ) from None


START_TRIES = 5  # a dashboard port another Ray took between our check and Ray's bind


def _start_local(cpus: int | None, gpus: int | None, dashboard_host: str) -> Any:
    import ray

    quiet_ray_start()
    for attempt in range(START_TRIES):
        try:
            return ray.init(
                address="local",
                num_cpus=cpus,
                num_gpus=gpus,
                include_dashboard=True,
                dashboard_host=dashboard_host,
                dashboard_port=_dashboard_port(dashboard_host, 8265 if attempt == 0 else 0),
                _node_ip_address=LOOPBACK,
                logging_level=logging.WARNING,
                log_to_driver=False,
                runtime_env={"env_vars": worker_env()},
            )
        except Exception as exc:  # Ray raises plain Exception and RuntimeError here
            first = (str(exc).strip().splitlines() or [exc.__class__.__name__])[0]
            if ray.is_initialized():
                ray.shutdown()
            if ("port" in first or "dashboard" in first) and attempt + 1 < START_TRIES:
                continue  # another search's Ray took the port: try a free one
            raise SkinsearchError(f"Ray did not start ({first[:200]})") from None
    raise AssertionError("unreachable")


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


def trial_memory_problem(
    spec: SearchSpec, need: Footprint, trials: int, memory: float, cpus: float, whose: str
) -> str:
    """Why the search's largest trial (``need``) cannot fit in ``memory`` shared by the trials
    ``cpus`` run at once (``whose`` memory it is, in the message); "" when it fits."""
    # a trial that cannot fit is swapped or killed mid-search; refuse it before any trial starts
    at_once = max(1, min(trials, int(cpus // spec.resources.cpus_per_trial)))
    if not memory or need.bytes <= memory / at_once:
        return ""
    if at_once == 1:
        has, fewer = f"the {_gib(memory)} {whose} has for a trial", ""
    else:
        has = (
            f"the {_gib(memory / at_once)} {whose} has for each of the {at_once} trials run at once"
        )
        fewer = ", or raise resources.cpus_per_trial so that fewer trials share the memory"
    return (
        f"params: a trial of {need.describe(spec.model)} needs at least {_gib(need.bytes)} "
        f"({need.parameters:,} parameters: weights, gradients, optimizer state and activations), "
        f"more than {has}; use a smaller model, input_size or batch_size{fewer}"
    )


def machine_memory() -> float:
    """This machine's physical memory in bytes (0 where the system does not say)."""
    try:
        return float(os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))
    except (ValueError, OSError, AttributeError):
        return 0.0


def _gib(nbytes: float) -> str:
    return f"{nbytes / 2**30:,.1f} GiB"


def check_gpus(gpus: int | None, address: str | None) -> int | None:
    """``--gpus``, checked against this machine's GPUs when Ray is started here."""
    if address is not None or gpus is None or gpus == 0:
        return gpus
    import torch

    present = torch.cuda.device_count()
    if gpus > present:
        raise SkinsearchError(
            f"--gpus {gpus}: this machine has {present} GPU(s); pass --gpus {present} or fewer"
        )
    return gpus


def _reason(exc: OSError) -> str:
    return exc.strerror or exc.__class__.__name__


def spread_runs(spec: SearchSpec, largest: tuple[Footprint, int], echo: Echo) -> SearchSpec:
    """A confirmation's resources on the Ray started here. Its runs are equally long, so a last
    round with fewer runs than the CPUs hold leaves cores idle while one run trains alone:
    3 runs on 2 CPUs run all at once on 2/3 of a CPU each, not 2 and then 1 alone, and runs
    fewer than the CPUs get more threads each. Trials on GPUs keep the file's resources, and
    so does a spread whose runs at once would not fit in memory."""
    import ray

    resources = ray.cluster_resources()
    if spec.resources.gpus_per_trial and resources.get("GPU"):
        return spec
    cpus, runs = resources.get("CPU", 1.0), largest[1]
    share = cpus_per_run(runs, cpus, spec.resources.cpus_per_trial)
    if share == spec.resources.cpus_per_trial:
        return spec
    spread = spec.model_copy(
        update={"resources": spec.resources.model_copy(update={"cpus_per_trial": share})}
    )
    if trial_memory_problem(spread, *largest, resources.get("memory", 0.0), cpus, "Ray"):
        return spec
    echo(spread_line(runs, min(runs, int(cpus // share)), share, spec.resources.cpus_per_trial))
    return spread


def spread_line(runs: int, at_once: int, share: float, asked: float) -> str:
    """What ``spread_runs`` tells the user it did."""
    if runs == 1:
        who = f"its one run on {share:.4g} CPUs"
    elif at_once == runs:
        who = f"all {runs} runs at once, {share:.4g} CPU each"
    else:
        who = f"{at_once} of the {runs} runs at once, {share:.4g} CPU each"
    return f"{who} (resources.cpus_per_trial {asked:g}), so that no core waits idle"


def cpus_per_run(runs: int, cpus: float, asked: float) -> float:
    """The CPUs each of ``runs`` equally long runs gets so that ``cpus`` finish them soonest:
    as many rounds as whole rounds of ``asked`` CPUs a run fill (at least one), their runs
    spread evenly over all the CPUs. Ray takes whole numbers above 1 CPU."""
    rounds = max(1, runs // max(1, int(cpus // asked)))
    at_once = math.ceil(runs / rounds)
    share = cpus / at_once
    return float(math.floor(share)) if share >= 1 else math.floor(share * 1e4) / 1e4
