"""Wall time of a confirmation's equally long runs on a few CPUs: in rounds of the file's
``resources.cpus_per_trial`` (the last round partial, as Ray schedules them) against spread over
the CPUs as skinsearch now does (``cpus_per_run``), the baseline in the same run.

    python bench/confirm_rounds.py                          # 3 runs on 2 CPUs, Lite0 at 128 px
    python bench/confirm_rounds.py --runs 9 --model cnn --size 64 --steps 40

As many worker processes as the schedule runs at once stand for Ray's reused trial actors: each
takes the next run when it is free, as a pending trial waits for free CPUs. A run builds the
model (with the packaged ImageNet weights where it has them) and trains ``--steps`` steps of a
batch of 32 random images with ``floor(CPUs each)`` threads, at least one, as a trial does. The
clock starts once every worker has imported torch and skinsearch's models, as actors already
running have. The process is pinned to the first ``--cpus`` cores, which its workers inherit. The two
schedules take turns ``--repeats`` times, so load from anything else falls on both alike.
"""

from __future__ import annotations

import argparse
import math
import multiprocessing
import os
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from skinsearch.tune.cluster import cpus_per_run

BATCH = 32


def train_run(model_name: str, size: int, steps: int, threads: int) -> float:
    """One run: build the model, train ``steps`` steps; its seconds of training."""
    import torch
    from _common import bench_model

    torch.set_num_threads(threads)
    model = bench_model(model_name, size)
    model.train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    x = torch.rand(BATCH, 3, size, size)
    y = torch.randint(0, 8, (BATCH,))
    started = time.perf_counter()
    for _ in range(steps):
        loss = torch.nn.functional.cross_entropy(model(x), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return time.perf_counter() - started


def _worker(args: argparse.Namespace, threads: int, todo: Any, ready: Any, done: Any) -> None:
    """A trial actor: ready once imported, then the runs from ``todo`` up to its ``None``."""
    # imported before the clock starts, as a reused actor has them
    import _common  # noqa: F401  (and skinsearch's models)
    import torch  # noqa: F401

    ready.wait()
    while todo.get() is not None:  # a blocking get: a non-blocking one fails while another reads
        try:
            done.put(train_run(args.model, args.size, args.steps, threads))
        except Exception as exc:  # the parent says what failed instead of waiting forever
            done.put(f"{exc.__class__.__name__}: {exc}")


def schedule(runs: int, cpus: int, share: float, args: argparse.Namespace) -> tuple[float, float]:
    """Wall seconds of ``runs`` runs with ``share`` CPUs each on ``cpus`` CPUs, from the moment
    every worker is ready, and a run's mean seconds of training."""
    at_once = min(runs, int(cpus // share))
    threads = max(1, math.floor(share))
    spawn = multiprocessing.get_context("spawn")
    todo, done, ready = spawn.Queue(), spawn.Queue(), spawn.Barrier(at_once + 1)
    for run in [*range(runs), *[None] * at_once]:  # then one None for each worker to stop
        todo.put(run)
    workers = [
        spawn.Process(target=_worker, args=(args, threads, todo, ready, done))
        for _ in range(at_once)
    ]
    for worker in workers:
        worker.start()
    ready.wait()
    started = time.perf_counter()
    trained = []  # each run's own seconds of training
    for _ in range(runs):
        seconds = done.get()
        if isinstance(seconds, str):
            raise SystemExit(f"a run failed: {seconds}")
        trained.append(seconds)
    wall = time.perf_counter() - started
    for worker in workers:
        worker.join()
    return wall, sum(trained) / runs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--cpus", type=int, default=2)
    parser.add_argument("--cpus-per-trial", type=float, default=1.0)
    parser.add_argument("--model", default="efficientnet_lite0")
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--steps", type=int, default=12)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    if len(os.sched_getaffinity(0)) < args.cpus:
        parser.error(f"--cpus {args.cpus}: this process may use only {os.cpu_count()} cores")
    os.sched_setaffinity(0, sorted(os.sched_getaffinity(0))[: args.cpus])

    cases = {
        "rounds (the file's resources)": args.cpus_per_trial,
        "spread (skinsearch)": cpus_per_run(args.runs, args.cpus, args.cpus_per_trial),
    }
    print(
        f"{args.runs} runs of {args.steps} steps of {args.model} at {args.size} px, "
        f"batch {BATCH}, on {args.cpus} CPUs (cpus_per_trial {args.cpus_per_trial:g})"
    )
    walls: dict[str, list[float]] = {name: [] for name in cases}
    per_run: dict[str, list[float]] = {name: [] for name in cases}
    for _ in range(args.repeats):
        for name, share in cases.items():
            wall, run = schedule(args.runs, args.cpus, share, args)
            walls[name].append(wall)
            per_run[name].append(run)
    base = min(walls["rounds (the file's resources)"])
    print(
        "| schedule | CPUs each | at once | threads each | rounds | wall s (best; each) "
        "| a run's training s (mean) | x rounds |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for name, share in cases.items():
        at_once = min(args.runs, int(args.cpus // share))
        best = min(walls[name])
        print(
            f"| {name} | {share:.4g} | {at_once} | {max(1, math.floor(share))} | "
            f"{math.ceil(args.runs / at_once)} | {best:.1f} "
            f"({', '.join(f'{w:.1f}' for w in walls[name])}) | "
            f"{sum(per_run[name]) / len(per_run[name]):.1f} | {base / best:.2f} |"
        )


if __name__ == "__main__":
    main()
