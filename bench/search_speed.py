"""The seed's way and skinsearch on the same configurations and data, in one run, side by side.

Prints, for each side: wall time (skinsearch's includes starting Ray, decoding and MLflow),
trial-epochs run, training images per second of wall time, image decodes, the best metric found,
and peak memory; for skinsearch also the per-trial overhead (what a trial spends outside training
and evaluation, plus the wait between one trial ending and the next starting on its slot) and the
object-store size of the decoded data. Then the ratios.

    python bench/search_speed.py search_spaces/mlp.yaml --data ../shared/data/isic8_clean \
        --input-size 32 --epochs 10 --trials 12 --workers 2
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import bench_spec, slice_arguments
from seed_baseline import run_baseline

from skinsearch.config.spec import SearchSpec
from skinsearch.data.decode import decode_count
from skinsearch.store.storage import Storage
from skinsearch.tune.tuner import RunOptions, run_search


def run_skinsearch(spec: SearchSpec, trials: int, cpus: int | None) -> dict[str, Any]:
    """One real skinsearch search (Ray, ASHA, MLflow, TensorBoard, checkpoints) in a temp folder."""
    storage = Path(tempfile.mkdtemp(prefix="skinsearch-bench-"))
    lines: list[str] = []
    decodes_before = decode_count()
    started = time.perf_counter()
    outcome = run_search(
        spec,
        RunOptions(storage=Storage(storage), name="bench", cpus=cpus, max_trials=trials),
        lines.append,
    )
    wall = time.perf_counter() - started
    rows = [_results(path) for path in sorted(outcome.experiment_dir.glob("trial_*/result.json"))]
    sign = 1.0 if spec.train.resolved_mode == "max" else -1.0
    metric = spec.train.metric
    best_trial = max(rows, key=lambda r: max(sign * x[metric] for x in r))
    best_row = max(best_trial, key=lambda x: sign * x[metric])
    n_train = _n_train(lines)
    slots = min(len(rows), int((cpus or _cpus()) // spec.resources.cpus_per_trial))
    overhead = _overhead(rows, slots)
    return {
        "wall_s": wall,
        "trial_epochs": sum(len(r) for r in rows),
        "train_images": sum(len(r) for r in rows) * n_train,
        "decodes": decode_count() - decodes_before,
        "best": best_row[metric],
        "best_metrics": {k: v for k, v in best_row.items() if k.startswith("val_")},
        "trials": len(rows),
        "slots": slots,
        **overhead,
        "peak_rss_trial_mb": max(r[-1].get("peak_rss_mb", 0.0) for r in rows),
        "object_store_line": next((ln for ln in lines if "object store" in ln), ""),
        "storage": str(storage),
    }


def _results(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _n_train(lines: list[str]) -> int:
    # "data: ROOT (8 classes, 1758 train / 113 val images; ...)"
    line = next(ln for ln in lines if ln.startswith("data: "))
    return int(line.split(" train / ")[0].rsplit(" ", 1)[1])


def _overhead(rows: list[list[dict[str, Any]]], slots: int) -> dict[str, float]:
    """Per-trial overhead: time in the trial outside ``fit_epoch`` (reporting, checkpoints,
    TensorBoard, setup) plus the gap between the slot it takes being freed and its start."""
    spans = []
    for r in rows:
        # the trial's own clock (time.time at its start, perf_counter since): Tune's
        # ``timestamp`` has whole seconds only
        start = r[0]["trial_started_at"]
        spans.append((start, start + r[-1]["time_trial_s"], r[-1]["time_fit_s"]))
    spans.sort()
    ends = sorted(end for _, end, _ in spans)
    gaps = [max(0.0, spans[k][0] - ends[k - slots]) for k in range(slots, len(spans))]
    inside = [(end - start) - fit for start, end, fit in spans]
    # the first trial on each worker also pays what a process does once (imports on first use);
    # later trials reuse the worker
    first, later = inside[:slots], inside[slots:] or inside[:slots]
    trial_time = [end - start for start, end, _ in spans]
    n = len(spans)
    per_trial = (sum(inside) + sum(gaps)) / n
    mean_trial = sum(trial_time) / n
    return {
        "trial_s_mean": mean_trial,
        "fit_s_mean": sum(fit for *_, fit in spans) / n,
        "in_trial_overhead_s_mean": sum(inside) / n,
        "in_trial_overhead_first_s_mean": sum(first) / len(first),
        "in_trial_overhead_later_s_mean": sum(later) / len(later),
        "start_gap_s_mean": sum(gaps) / max(len(gaps), 1),
        "overhead_s_per_trial": per_trial,
        "overhead_fraction": per_trial / (mean_trial + sum(gaps) / n),
    }


def _cpus() -> int:
    import os

    return os.cpu_count() or 1


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    slice_arguments(parser)
    parser.add_argument("--workers", type=int, default=2, help="baseline DataLoader workers")
    parser.add_argument("--cpus", type=int, default=None, help="CPUs Ray may use")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    parser.add_argument(
        "--skinsearch-only",
        action="store_true",
        help="skip the baseline (for profiling skinsearch; the comparison needs both)",
    )
    args = parser.parse_args()
    spec, configs = bench_spec(args.space, args.data, args.input_size, args.epochs, args.trials)
    print(
        f"{len(configs)} configurations of {args.space} at {args.input_size or 'its'} px, "
        f"{spec.train.max_epochs} epochs, data {spec.data.path}"
    )
    print(
        f"machine: {platform.processor() or platform.machine()}, {_cpus()} CPUs, torch {torch.__version__}"
    )

    baseline = None
    if not args.skinsearch_only:
        print(f"\n[1/2] seed's way: one configuration after another, {args.workers} loader workers")
        baseline = run_baseline(spec, configs, args.workers)
        baseline["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print("\n[2/2] skinsearch: Ray Tune + ASHA, MLflow, TensorBoard, checkpoints")
    ours = run_skinsearch(spec, len(configs), args.cpus)

    print()
    if baseline is not None:
        _table(spec.train.metric, baseline, ours)
    _overhead_lines(ours)
    if args.json:
        args.json.write_text(
            json.dumps({"baseline": baseline, "skinsearch": ours}, indent=1, default=str)
        )


def _table(metric: str, base: dict[str, Any], ours: dict[str, Any]) -> None:
    rows = [
        (
            "wall time (s)",
            f"{base['wall_s']:.1f}",
            f"{ours['wall_s']:.1f}",
            f"{base['wall_s'] / ours['wall_s']:.2f}x faster",
        ),
        ("trial-epochs run", base["trial_epochs"], ours["trial_epochs"], ""),
        (
            "training images / s of wall",
            f"{base['train_images'] / base['wall_s']:.0f}",
            f"{ours['train_images'] / ours['wall_s']:.0f}",
            f"{ours['train_images'] / ours['wall_s'] / (base['train_images'] / base['wall_s']):.2f}x",
        ),
        ("image decodes", base["decodes"], ours["decodes"], ""),
        (
            f"best {metric}",
            f"{base['best']:.4f}",
            f"{ours['best']:.4f}",
            f"{100 * (ours['best'] - base['best']):+.1f} points",
        ),
        (
            "  its val_balanced_acc",
            f"{base['best_metrics']['val_balanced_acc']:.4f}",
            f"{ours['best_metrics']['val_balanced_acc']:.4f}",
            "",
        ),
        (
            "peak RSS (MB)",
            f"{base['peak_rss_mb']:.0f} (process)",
            f"{ours['peak_rss_trial_mb']:.0f} (largest trial)",
            "",
        ),
    ]
    width = max(len(r[0]) for r in rows)
    print(f"{'':{width}}  {'seed way':>16}  {'skinsearch':>22}  ratio")
    for name, a, b, ratio in rows:
        print(f"{name:{width}}  {a!s:>16}  {b!s:>22}  {ratio}")


def _overhead_lines(ours: dict[str, Any]) -> None:
    print(
        f"\nskinsearch per-trial overhead: {ours['overhead_s_per_trial']:.2f} s of "
        f"{ours['trial_s_mean']:.2f} s mean trial time = {100 * ours['overhead_fraction']:.1f}% "
        f"(in trial outside training {ours['in_trial_overhead_s_mean']:.2f} s, "
        f"slot gap before start {ours['start_gap_s_mean']:.2f} s; {ours['trials']} trials on "
        f"{ours['slots']} slots)"
    )
    print(
        f"  in trial outside training: {ours['in_trial_overhead_first_s_mean']:.2f} s for the "
        f"first trial on each worker (its one-time imports), "
        f"{ours['in_trial_overhead_later_s_mean']:.2f} s for the later trials (reused workers)"
    )
    print(f"skinsearch {ours['object_store_line']}")


if __name__ == "__main__":
    main()
