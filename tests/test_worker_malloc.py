"""Ray's workers start with glibc malloc settings that keep a trial's freed memory for its next
step (``WORKER_MALLOC``), or with the user's own where their environment sets them; the
benchmark behind them (bench/worker_malloc.py) runs."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pytest

from skinsearch.config.spec import loads_spec
from skinsearch.tune.cluster import WORKER_MALLOC, start_ray

BENCH = Path(__file__).resolve().parents[1] / "bench"
sys.path.insert(0, str(BENCH))

import worker_malloc  # noqa: E402

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        not Path("/proc/self/environ").exists(),
        reason="reads the environment a process started with from Linux's /proc",
    ),
]
SPEC = "name: workers\nmodel: mlp\ndata: {path: builtin:synthetic}\nparams: {input_size: 16}\n"


def _a_workers_start_environment() -> dict[str, str]:
    import ray

    def start_environment() -> dict[str, str]:  # nested: Ray ships it by value, not by module
        # what the process was started with: glibc reads its malloc settings from there, once
        raw = Path("/proc/self/environ").read_bytes().split(b"\0")
        return dict(entry.decode().partition("=")[::2] for entry in raw if entry)

    return ray.get(ray.remote(start_environment).remote())  # type: ignore[no-any-return]


def test_a_local_ray_starts_its_workers_with_the_malloc_settings(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import ray

    for name in WORKER_MALLOC:
        monkeypatch.delenv(name, raising=False)
    start_ray(None, 1, 0, loads_spec(SPEC), echo=lambda line: None)
    try:
        env = _a_workers_start_environment()
    finally:
        ray.shutdown()
    assert {name: env.get(name) for name in WORKER_MALLOC} == WORKER_MALLOC


def test_a_joined_cluster_gets_them_too_and_a_users_own_setting_wins(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import ray
    from ray.cluster_utils import Cluster

    for name in WORKER_MALLOC:
        monkeypatch.delenv(name, raising=False)
    cluster = Cluster(
        initialize_head=True, head_node_args={"num_cpus": 1, "include_dashboard": False}
    )
    try:
        # set after the cluster started, so only the search can have passed it on
        monkeypatch.setenv("MALLOC_ARENA_MAX", "4")
        start_ray(cluster.address, None, None, loads_spec(SPEC), echo=lambda line: None)
        try:
            env = _a_workers_start_environment()
        finally:
            ray.shutdown()
    finally:
        cluster.shutdown()
    assert env.get("MALLOC_ARENA_MAX") == "4"
    assert env.get("MALLOC_MMAP_MAX_") == WORKER_MALLOC["MALLOC_MMAP_MAX_"]
    assert env.get("MALLOC_TRIM_THRESHOLD_") == WORKER_MALLOC["MALLOC_TRIM_THRESHOLD_"]


def test_the_benchmark_starts_each_trial_with_its_variants_malloc(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    pytest.importorskip("efficientnet_lite_pytorch", reason="needs the pretrained extra")
    monkeypatch.setenv("MALLOC_ARENA_MAX", "8")  # the baseline leaves out any setting of its own
    assert not any(
        name.startswith("MALLOC_") for name in worker_malloc.environment("glibc default")
    )
    args = argparse.Namespace(model="efficientnet_lite0", size=128, steps=2, threads=1)
    (default,) = worker_malloc.run_round("glibc default", 1, args)
    (workers,) = worker_malloc.run_round("skinsearch workers", 1, args)
    assert default["images_s"] > 0 and workers["images_s"] > 0
    # glibc's default maps and faults in each large activation anew on every step; skinsearch's
    # settings reuse the memory the warm-up steps freed (measured four times here: 202,082 to
    # 239,542 faults against 0 to 11,671)
    assert workers["faults"] * 5 < default["faults"]
