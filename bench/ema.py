"""What a moving average of the weights (``ema:``) does to a fine-tuned model's val scores:
one training run per seed, evaluated every epoch as trained (the baseline) and through moving
averages of several decays, all of the same run, so that the comparison is paired.

    python bench/ema.py docs/experiments/pretrained_recipe_20_epochs.yaml \\
        --data ../shared/data/isic8_clean --seeds 1002 2002 3002 --decays 0.99 0.995 0.998

Each seed trains in its own process with one thread (as a confirmation on 2 CPUs runs its 3
runs); the file's own ``ema`` is set to 0 and the averages follow the optimizer's steps. It
prints each decay's best epoch and score per seed, and their mean and std across seeds, on the
file's metric; ``--out`` keeps every epoch's figures as JSON, and while the runs train, each
seed's figures so far beside it (``OUT.seed1002.json``, rewritten every epoch), so a run
stopped early keeps them. Ctrl-C (or SIGTERM) stops every run and prints the table over the
epochs they finished, exiting 130.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import signal
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from _common import bench_spec

BASELINE = 0.0  # the decay that stands for the weights as trained
Curves = dict[float, list[dict[str, float]]]  # per decay (BASELINE too), every epoch's metrics


def train_seed(
    space: Path,
    data: Path,
    epochs: int | None,
    seed: int,
    decays: list[float],
    progress: Path | None = None,
) -> Curves:
    """Train the file's one configuration with ``seed``; each decay's metrics at every epoch,
    also written to ``progress`` (JSON, atomically) after each epoch when given."""
    import torch

    from skinsearch._files import write_atomic
    from skinsearch.data import decode_dataset, scan_dataset
    from skinsearch.models import hparams_class
    from skinsearch.training.optim import build_ema
    from skinsearch.training.trainer import Trainer

    torch.set_num_threads(1)
    spec, configs = bench_spec(space, data, None, epochs, None)
    if len(configs) != 1:
        raise SystemExit(f"{space}: give a file with one configuration, not {len(configs)}")
    hp = hparams_class(spec.model).model_validate({**configs[0], "seed": seed, "ema": 0.0})
    files = scan_dataset(spec.data.path)
    decoded = decode_dataset(files, [hp.input_size], spec.data.colour_constancy)[hp.input_size]
    trainer = Trainer(spec.model, hp, spec.train, decoded, "cpu")
    averages = {d: build_ema(trainer.model, hp.model_copy(update={"ema": d})) for d in decays}

    def step_averages(*_: Any) -> None:
        for average in averages.values():
            average.update_parameters(trainer.model)  # type: ignore[union-attr]

    trainer.optimizer.register_step_post_hook(step_averages)
    curves: Curves = {BASELINE: [], **{d: [] for d in decays}}
    while True:
        result = trainer.fit_epoch()
        curves[BASELINE].append(result.metrics)
        for decay, average in averages.items():
            loss, evaluation = trainer.evaluate_val(average.module)  # type: ignore[union-attr]
            scores = {"epoch": float(result.epoch), "val_loss": loss, **evaluation.metrics("val_")}
            curves[decay].append(scores)
        figures = ", ".join(f"{d:g} {c[-1][spec.train.metric]:.3f}" for d, c in curves.items())
        print(f"seed {seed} epoch {result.epoch}: {spec.train.metric} {figures}", flush=True)
        if progress is not None:
            write_atomic(progress, json.dumps({str(d): c for d, c in curves.items()}))
        if result.stop_reason:
            return curves


def best(curve: list[dict[str, float]], metric: str) -> tuple[int, float]:
    """The first epoch with the highest ``metric``, and that value."""
    top = max(curve, key=lambda m: m[metric])
    return int(top["epoch"]), top[metric]


def _progress(out: Path, seed: int) -> Path:
    return out.with_name(f"{out.stem}.seed{seed}.json")


def run_seeds(
    jobs: list[tuple[Any, ...]], seeds: list[int], out: Path
) -> tuple[dict[int, Curves], bool]:
    """Each seed's curves, trained in parallel, and whether Ctrl-C or SIGTERM stopped them
    (then the epochs each finished, read back from its progress file)."""
    previous = signal.signal(signal.SIGTERM, _as_ctrl_c)
    pool = multiprocessing.get_context("spawn").Pool(len(jobs), initializer=_parent_handles_ctrl_c)
    try:
        pending = pool.starmap_async(train_seed, jobs)
        while not pending.ready():  # a wait without a timeout would not see Ctrl-C
            pending.wait(0.5)
        return dict(zip(seeds, pending.get(), strict=True)), False
    except KeyboardInterrupt:
        return {s: _read_progress(_progress(out, s)) for s in seeds}, True
    finally:
        pool.terminate()  # the workers ignore SIGINT; this ends them with SIGTERM
        pool.join()
        signal.signal(signal.SIGTERM, previous)


def _as_ctrl_c(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


def _parent_handles_ctrl_c() -> None:
    # a worker interrupted mid-task would die and the pool would start a fresh one in its place
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def _read_progress(path: Path) -> Curves:
    if not path.exists():  # stopped before its first epoch ended
        return {}
    return {float(d): c for d, c in json.loads(path.read_text()).items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("space", type=Path, help="a search space with one configuration")
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--seeds", type=int, nargs="+", default=[1002, 2002, 3002])
    parser.add_argument("--decays", type=float, nargs="+", default=[0.99, 0.995, 0.998])
    parser.add_argument("--epochs", type=int, default=None, help="default: the file's")
    parser.add_argument("--out", type=Path, default=None, help="every epoch's figures, as JSON")
    args = parser.parse_args()
    spec, _ = bench_spec(args.space, args.data, None, args.epochs, None)
    with tempfile.TemporaryDirectory() as scratch:
        out = args.out or Path(scratch) / "ema.json"
        jobs = [
            (args.space, args.data, args.epochs, s, args.decays, _progress(out, s))
            for s in args.seeds
        ]
        runs, stopped = run_seeds(jobs, args.seeds, out)
    runs = {s: r for s, r in runs.items() if r}
    if args.out is not None:
        args.out.write_text(
            json.dumps({str(s): {str(d): c for d, c in r.items()} for s, r in runs.items()})
        )
    if stopped:
        reached = ", ".join(f"seed {s} epoch {len(r[BASELINE])}" for s, r in runs.items())
        print(f"stopped ({reached or 'before any epoch ended'}): the table covers those epochs")
    if runs:
        print_table(args.space, args.data, spec.train.metric, runs, [BASELINE, *args.decays])
    if stopped:
        sys.exit(130)


def print_table(
    space: Path, data: Path, metric: str, runs: dict[int, Curves], decays: list[float]
) -> None:
    """Each decay's best epoch and score per seed, and their mean and std, as a Markdown table."""
    seeds = list(runs)
    print(f"{space} on {data}, seeds {seeds}: {metric} at each run's best epoch")
    print(f"| ema decay | {' | '.join(f'seed {s} (epoch)' for s in seeds)} | mean ± std |")
    print(f"|---|{'---|' * len(seeds)}---|")
    for decay in decays:
        picks = [best(runs[s][decay], metric) for s in seeds]
        values = [v for _, v in picks]
        spread = statistics.stdev(values) if len(values) > 1 else 0.0
        cells = " | ".join(f"{v:.3f} ({e})" for e, v in picks)
        name = "none (as trained)" if decay == BASELINE else f"{decay:g}"
        print(f"| {name} | {cells} | {statistics.mean(values):.3f} ± {spread:.3f} |")


if __name__ == "__main__":
    main()
