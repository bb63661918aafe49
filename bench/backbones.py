"""Fine-tuning speed of the pretrained backbones: training images per second per backbone and
input size, fp32 against bf16 autocast, NCHW against channels_last, with the baseline (fp32 on the
trainer's input layout) in every row.

    python bench/backbones.py                       # Lite0/1/2 at 128, 160, 192 px, one thread
    python bench/backbones.py --models efficientnet_lite0 --sizes 128 --threads 2 --steps 20

bf16 runs at the sizes in ``--bf16-sizes`` only (default: the smallest), since on a CPU that
emulates bf16 each of its steps takes about ten of fp32's.

A step is what a trial's training epoch does per batch: forward, loss, backward and an AdamW
step over the whole network (backbone and head, as after ``freeze_epochs``), on a batch of 32 in
train mode, built by ``build_model`` with the packaged ImageNet weights. The input is laid out as
the trainer's batches are (uint8 NHWC decoded images permuted to NCHW, so channels_last
strides); "channels_last model" converts the model as well. The variants of one case take turns
step block by step block, so load from anything else on the machine falls on all alike. One
thread by default, as a trial with one CPU has. Evaluation (inference mode) is timed once per
case in fp32 and bf16 as well, since every epoch ends with it.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from _common import bench_model
from precision import bf16_native

MODELS = ("efficientnet_lite0", "efficientnet_lite1", "efficientnet_lite2")
VARIANTS = (
    ("fp32", False),
    ("bf16", False),
    ("fp32", True),
    ("bf16", True),
)
BATCH = 32


def _label(precision: str, channels_last: bool) -> str:
    return precision + (" + channels_last model" if channels_last else "")


def step_runner(name: str, size: int, precision: str, channels_last: bool) -> Any:
    """A function that runs ``n`` train steps of one variant and returns their seconds."""
    model = bench_model(name, size)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
    model.train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    images = torch.randint(0, 256, (BATCH, size, size, 3), dtype=torch.uint8)
    x = images.permute(0, 3, 1, 2).float().div(255)  # as the trainer's batches are laid out
    y = torch.randint(0, 8, (BATCH,))
    bf16 = precision == "bf16"

    def run(n: int) -> float:
        started = time.perf_counter()
        for _ in range(n):
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
                loss = torch.nn.functional.cross_entropy(model(x), y)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        return time.perf_counter() - started

    def evaluate(n: int) -> float:
        model.eval()
        started = time.perf_counter()
        with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            for _ in range(n):
                model(x)
        model.train()
        return time.perf_counter() - started

    run.evaluate = evaluate  # type: ignore[attr-defined]
    return run


def measure(
    name: str, size: int, steps: int, block: int, bf16: bool
) -> dict[str, dict[str, float]]:
    """Train images/s of each variant (after 2 warm-up steps each), taking turns by block;
    eval images/s for the NCHW variants. fp32 only unless ``bf16``."""
    variants = [v for v in VARIANTS if bf16 or v[0] == "fp32"]
    runners = {v: step_runner(name, size, *v) for v in variants}
    seconds = dict.fromkeys(variants, 0.0)
    for run in runners.values():
        run(2)
    done = 0
    while done < steps:
        n = min(block, steps - done)
        for v, run in runners.items():
            seconds[v] += run(n)
        done += n
    figures: dict[str, dict[str, float]] = {}
    for v in variants:
        figures[_label(*v)] = {"train": BATCH * steps / seconds[v]}
    for v in (v for v in variants if not v[1]):
        evaluate = runners[v].evaluate
        evaluate(1)
        figures[_label(*v)]["eval"] = BATCH * max(steps // 2, 2) / evaluate(max(steps // 2, 2))
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--models", nargs="+", choices=MODELS, default=list(MODELS))
    parser.add_argument("--sizes", nargs="+", type=int, default=[128, 160, 192])
    parser.add_argument("--steps", type=int, default=8, help="timed train steps per variant")
    parser.add_argument("--block", type=int, default=2, help="steps per turn")
    parser.add_argument("--bf16-sizes", nargs="*", type=int, help="default: the smallest size")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    bf16_sizes = {min(args.sizes)} if args.bf16_sizes is None else set(args.bf16_sizes)
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {args.threads} thread(s); {bf16_native()}")
    print(f"train: images/s of fine-tuning steps (batch {BATCH}, AdamW, whole network);")
    print("x base: against fp32 on the trainer's layout in the same run; eval: inference images/s")
    print(f"{'model':<19} {'px':>4} {'variant':<28} {'train img/s':>11} {'x base':>7} {'eval':>7}")
    for name in args.models:
        for size in args.sizes:
            figures = measure(name, size, args.steps, args.block, size in bf16_sizes)
            base = figures["fp32"]["train"]
            for label, f in figures.items():
                evaluate = f"{f['eval']:7.1f}" if "eval" in f else f"{'':>7}"
                print(
                    f"{name:<19} {size:>4} {label:<28} {f['train']:>11.1f} "
                    f"{f['train'] / base:>7.2f} {evaluate}",
                    flush=True,
                )


if __name__ == "__main__":
    main()
