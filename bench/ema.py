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
stopped early keeps them.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import statistics
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from _common import bench_spec

BASELINE = 0.0  # the decay that stands for the weights as trained


def train_seed(
    space: Path,
    data: Path,
    epochs: int | None,
    seed: int,
    decays: list[float],
    progress: Path | None = None,
) -> dict[float, list[dict[str, float]]]:
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
    curves: dict[float, list[dict[str, float]]] = {BASELINE: [], **{d: [] for d in decays}}
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


def _progress(out: Path | None, seed: int) -> Path | None:
    return None if out is None else out.with_name(f"{out.stem}.seed{seed}.json")


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
    metric = spec.train.metric
    jobs = [
        (args.space, args.data, args.epochs, s, args.decays, _progress(args.out, s))
        for s in args.seeds
    ]
    with multiprocessing.get_context("spawn").Pool(len(args.seeds)) as pool:
        runs = dict(zip(args.seeds, pool.starmap(train_seed, jobs), strict=True))
    if args.out is not None:
        args.out.write_text(
            json.dumps({str(s): {str(d): c for d, c in r.items()} for s, r in runs.items()})
        )
    print(f"{args.space} on {args.data}, seeds {args.seeds}: {metric} at each run's best epoch")
    print(f"| ema decay | {' | '.join(f'seed {s} (epoch)' for s in args.seeds)} | mean ± std |")
    print(f"|---|{'---|' * len(args.seeds)}---|")
    for decay in [BASELINE, *args.decays]:
        picks = [best(runs[s][decay], metric) for s in args.seeds]
        values = [v for _, v in picks]
        spread = statistics.stdev(values) if len(values) > 1 else 0.0
        cells = " | ".join(f"{v:.3f} ({e})" for e, v in picks)
        name = "none (as trained)" if decay == BASELINE else f"{decay:g}"
        print(f"| {name} | {cells} | {statistics.mean(values):.3f} ± {spread:.3f} |")


if __name__ == "__main__":
    main()
