"""A trial's training step under glibc's default malloc against the settings skinsearch gives
Ray's workers (``skinsearch.tune.cluster.WORKER_MALLOC``), with the baseline in every case.

    python bench/worker_malloc.py                      # Lite0 at 160 px: 1 and 2 trials at once
    python bench/worker_malloc.py --size 128 --procs 2 --threads 1 --rounds 3

Each trial is a fresh process, started with one environment or the other (glibc reads it when a
process starts), that trains in a thread other than its main one, as Tune runs a trial: a
backbone from its packaged weights, batches of 32 in train mode, forward, loss, backward and an
AdamW step over the whole network, after 3 warm-up steps. ``--procs`` trials run at once, as a
search runs them side by side on a machine's cores; the two environments take turns, round by
round, so load from anything else falls on both alike. Each row gives a trial's mean training
images/s, the CPU time spent in the kernel, the page faults of its timed steps and its peak
memory.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import threading
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch
from backbones import BATCH, step_runner

from skinsearch.tune.cluster import WORKER_MALLOC

VARIANTS = ("glibc default", "skinsearch workers")


def environment(variant: str) -> dict[str, str]:
    """This process's environment without any malloc setting, plus skinsearch's for its variant."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_")}
    return env | (WORKER_MALLOC if variant == VARIANTS[1] else {})


def train_in_a_thread(model: str, size: int, steps: int, threads: int) -> dict[str, float]:
    """Train ``steps`` timed steps in a new thread; its images/s, kernel and user seconds,
    minor page faults, and this process's peak RSS in MiB."""
    figures: dict[str, float] = {}

    def work() -> None:
        torch.set_num_threads(threads)
        run = step_runner(model, size, "fp32", False)  # the model and step backbones.py times
        run(3)
        before = resource.getrusage(resource.RUSAGE_SELF)
        seconds = run(steps)
        after = resource.getrusage(resource.RUSAGE_SELF)
        figures.update(
            images_s=BATCH * steps / seconds,
            kernel_s=after.ru_stime - before.ru_stime,
            user_s=after.ru_utime - before.ru_utime,
            faults=float(after.ru_minflt - before.ru_minflt),
            peak_mib=after.ru_maxrss / 1024,
        )

    thread = threading.Thread(target=work)
    thread.start()
    thread.join()
    return figures


def run_round(variant: str, procs: int, args: argparse.Namespace) -> list[dict[str, float]]:
    """``procs`` trials of one variant at once; each one's figures."""
    command = [sys.executable, __file__, "--child", "--model", args.model]
    command += ["--size", str(args.size), "--steps", str(args.steps)]
    command += ["--threads", str(args.threads)]
    env = environment(variant)
    children = [
        subprocess.Popen(command, env=env, stdout=subprocess.PIPE, text=True) for _ in range(procs)
    ]
    outputs = [child.communicate()[0] for child in children]
    if any(child.returncode for child in children):
        raise SystemExit(f"a {variant} trial failed: exit {[c.returncode for c in children]}")
    return [json.loads(out.strip().splitlines()[-1]) for out in outputs]


def summarise(results: list[dict[str, float]]) -> dict[str, float]:
    """Means over every trial of every round."""
    return {key: sum(r[key] for r in results) / len(results) for key in results[0]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="efficientnet_lite0")
    parser.add_argument("--size", type=int, default=160)
    parser.add_argument("--steps", type=int, default=10, help="timed train steps per trial")
    parser.add_argument("--procs", type=int, nargs="+", default=[1, 2], help="trials at once")
    parser.add_argument("--threads", type=int, default=1, help="torch threads per trial")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(train_in_a_thread(args.model, args.size, args.steps, args.threads)))
        return
    print(f"{args.model} at {args.size} px, batch {BATCH}, {args.threads} thread(s) per trial,")
    print(f"{args.steps} timed steps per trial, {args.rounds} rounds; skinsearch: {WORKER_MALLOC}")
    header = f"{'at once':>7} {'malloc':<19} {'img/s a trial':>13} {'x default':>9}"
    print(header + f" {'kernel s':>8} {'user s':>7} {'faults':>9} {'peak MiB':>8}")
    for procs in args.procs:
        results: dict[str, list[dict[str, float]]] = {v: [] for v in VARIANTS}
        for _ in range(args.rounds):
            for variant in VARIANTS:
                results[variant] += run_round(variant, procs, args)
        figures = {v: summarise(r) for v, r in results.items()}
        base = figures[VARIANTS[0]]["images_s"]
        for variant, f in figures.items():
            print(
                f"{procs:>7} {variant:<19} {f['images_s']:>13.1f} {f['images_s'] / base:>9.2f} "
                f"{f['kernel_s']:>8.1f} {f['user_s']:>7.1f} {f['faults']:>9.0f} "
                f"{f['peak_mib']:>8.0f}",
                flush=True,
            )


if __name__ == "__main__":
    main()
