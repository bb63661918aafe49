"""fp32 against bf16 autocast (``train.precision``): training images per second and the metrics
each reaches, with skinsearch's Trainer on the same data, configuration and seed.

    python bench/precision.py --data ../shared/data/isic8_clean --epochs 10

Two cases by default: the cnn_plus winner's network (4 conv blocks with BatchNorm, global
average pooling) at 64 px, and the seed's CNN (conv32-conv64-fc128) at 128 px. The two trainers
of a case take turns epoch by epoch, so load from anything else on the machine falls on both
alike. One thread, as a trial with one CPU has; on a machine with CUDA, the GPU instead.
bf16 pays on GPUs and on CPUs with AVX512-BF16 or AMX; elsewhere it is emulated and slower.

A second table times bare fp32 train steps of each case by memory layout: NCHW input, the
trainer's input (its uint8 NHWC batches permuted, so channels_last strides), and a
channels_last model as well: whether converting the model would add anything.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from skinsearch.config.hparams import HParams
from skinsearch.config.spec import TrainSpec
from skinsearch.data import decode_dataset, scan_dataset
from skinsearch.data.synthetic import synthetic_root
from skinsearch.models import build_model
from skinsearch.training.trainer import Trainer

AUGMENT = {"hflip": 0.5, "vflip": 0.5, "rbcontrast": 0.3}
CASES: dict[str, tuple[int, dict[str, Any]]] = {
    "plus64": (
        64,
        {
            "channels": [32, 64, 128, 256],
            "batchnorm": True,
            "pooling": "gap",
            "init": "he",
            "optimizer": "adamw",
            "lr": 1e-3,
            "weight_decay": 1e-3,
            "schedule": "cosine",
            "warmup_epochs": 2,
            "batch_size": 32,
            **AUGMENT,
        },
    ),
    "seed128": (128, {"channels": [32, 64], "fc_size": 128, "lr": 1e-3, "batch_size": 32}),
}
PRECISIONS = ("fp32", "bf16")


def bf16_native() -> str:
    """Whether this machine runs bf16 in hardware, in words."""
    if torch.cuda.is_available():
        return f"{torch.cuda.get_device_name()}: bf16 {torch.cuda.is_bf16_supported()}"
    native = torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported()
    return f"CPU: bf16 in hardware (AVX512-BF16/AMX) {bool(native)}"


def compare(data: Any, size: int, hp: dict[str, Any], epochs: int) -> dict[str, dict[str, float]]:
    """Train the case once per precision, taking turns by epoch: seconds, best metrics."""
    train = {p: TrainSpec(max_epochs=epochs, patience=None, precision=p) for p in PRECISIONS}
    trainers = {
        p: Trainer("cnn", HParams(input_size=size, seed=0, **hp), train[p], data)
        for p in PRECISIONS
    }
    figures = {p: {"seconds": 0.0, "val_acc": 0.0, "val_balanced_acc": 0.0} for p in PRECISIONS}
    for _ in range(epochs):
        for p, trainer in trainers.items():
            started = time.perf_counter()
            metrics = trainer.fit_epoch().metrics
            figures[p]["seconds"] += time.perf_counter() - started
            for m in ("val_acc", "val_balanced_acc"):
                figures[p][m] = max(figures[p][m], metrics[m])
            figures[p]["train_loss"] = metrics["train_loss"]
    return figures


def layout_rates(size: int, hp: dict[str, Any], steps: int = 20) -> dict[str, float]:
    """Images per second of bare fp32 train steps (batch 32) by memory layout."""
    rates = {}
    for layout in ("NCHW input", "trainer's input", "+ channels_last model"):
        torch.manual_seed(0)
        model = build_model("cnn", HParams(input_size=size, **hp), size, 8)
        x = torch.rand(32, size, size, 3).permute(0, 3, 1, 2)  # as the trainer's batches
        if layout == "NCHW input":
            x = x.contiguous()
        elif layout == "+ channels_last model":
            model = model.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
        y = torch.randint(0, 8, (32,))
        optimizer = torch.optim.Adam(model.parameters())
        for step in range(steps + 3):
            if step == 3:  # after warm-up
                started = time.perf_counter()
            loss = torch.nn.functional.cross_entropy(model(x), y)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        rates[layout] = 32 * steps / (time.perf_counter() - started)
    return rates


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, help="a data folder (default: the built-in set)")
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--cases", nargs="+", choices=sorted(CASES), default=list(CASES))
    args = parser.parse_args()
    torch.set_num_threads(1)
    files = scan_dataset(args.data or synthetic_root())
    print(f"data: {files.root} ({len(files.train)} train / {len(files.val)} val); {bf16_native()}")
    print(f"{args.epochs} epochs per precision, taking turns; img/s: train images per second of")
    print("epoch time (the epoch's evaluation on val included)")
    header = f"{'case':<9} {'precision':<9} {'img/s':>7} {'x fp32':>7} {'best val_acc':>13} "
    print(header + f"{'best val_bal_acc':>17} {'last train_loss':>16}")
    for name in args.cases:
        size, hp = CASES[name]
        data = decode_dataset(files, [size])[size]
        figures = compare(data, size, hp, args.epochs)
        images = args.epochs * len(data.y_train)
        for p in PRECISIONS:
            f = figures[p]
            rate, ratio = images / f["seconds"], figures["fp32"]["seconds"] / f["seconds"]
            print(
                f"{name:<9} {p:<9} {rate:>7.0f} {ratio:>7.2f} {f['val_acc']:>13.4f} "
                f"{f['val_balanced_acc']:>17.4f} {f['train_loss']:>16.4f}"
            )
    print("\nfp32 train steps by memory layout (batch 32), images/s:")
    for name in args.cases:
        size, hp = CASES[name]
        rates = layout_rates(size, hp)
        base = rates["NCHW input"]
        print(
            f"{name:<9} " + "   ".join(f"{k} {v:.0f} ({v / base:.2f}x)" for k, v in rates.items())
        )


if __name__ == "__main__":
    main()
