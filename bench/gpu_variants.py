"""Training throughput of the seed-sized CNN (conv32-conv64-fc128) by way of feeding and stepping
it, in one run: the seed's way (a DataLoader decoding JPEGs), skinsearch's resident path, and the
bare-loop variants issue 3 asks to measure (bf16 + channels_last, a CUDA-graph train step), and
the Trainer with ``train.precision: bf16``.

    python bench/gpu_variants.py --data ../shared/data/isic8_clean --size 128 --batch 16 \
        --workers 15

Prints images per second of training for each variant, each against the seed's way and against
the CUDA-graph loop (the ceiling issue 3 measures skinsearch against), and first checks that the
resident path on this device gives the CPU path's metrics for one epoch (no augmentation). A
variant that cannot run here (no CUDA) prints why instead of a figure. Runs on a CPU too, for
its own tests and with fewer variants.
"""

from __future__ import annotations

import argparse
import multiprocessing
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))

from seed_baseline import JpegFolder

from skinsearch.config.hparams import HParams
from skinsearch.config.spec import TrainSpec
from skinsearch.data import decode_dataset, scan_dataset
from skinsearch.models import build_model
from skinsearch.training.trainer import Trainer

SEED_CNN = {"channels": [32, 64], "fc_size": 128, "lr": 1e-3, "seed": 0}


def seed_way(files: Any, hp: HParams, data: Any, device: str, workers: int, steps: int) -> float:
    """A DataLoader decoding, resizing and normalising JPEGs per item, as the seed did."""
    from torch.utils.data import DataLoader

    decodes = multiprocessing.Value("i", 0)
    dataset = JpegFolder(files.train, hp.input_size, data.mean, data.std, None, decodes)
    loader = DataLoader(
        dataset,
        batch_size=hp.batch_size,
        shuffle=True,
        num_workers=workers,
        pin_memory=device == "cuda",
        persistent_workers=workers > 0,
        drop_last=True,
    )
    model, optimizer, loss_fn = _model(hp, data, device)

    def batches() -> Any:
        while True:
            yield from loader

    stream = batches()

    def step() -> None:
        x, y = next(stream)
        x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
        optimizer.zero_grad(set_to_none=True)
        loss_fn(model(x), y).backward()
        optimizer.step()

    return _rate(step, hp.batch_size, steps, device)


def resident(data: Any, hp: HParams, device: str, steps: int, precision: str = "fp32") -> float:
    """skinsearch's Trainer on this device (data resident there on a GPU), whole epochs."""
    train = TrainSpec(max_epochs=10_000, patience=None, precision=precision)
    trainer = Trainer("cnn", hp, train, data, device)
    n = len(data.y_train) // hp.batch_size * hp.batch_size
    epochs = max(1, steps * hp.batch_size // n)
    trainer.fit_epoch()  # warm-up
    _sync(device)
    started = time.perf_counter()
    for _ in range(epochs):
        trainer._train_once(np.random.default_rng(trainer.epoch))  # training only, no eval
    _sync(device)
    return epochs * n / (time.perf_counter() - started)


def bare_loop(
    data: Any, hp: HParams, device: str, steps: int, bf16: bool = False, graph: bool = False
) -> float:
    """A bare loop over resident, normalised float data: the ceiling for this model and batch."""
    if (bf16 or graph) and device != "cuda":
        raise RuntimeError("needs CUDA")
    model, optimizer, loss_fn = _model(hp, data, device, capturable=graph)
    memory = torch.channels_last if bf16 else torch.contiguous_format
    model = model.to(memory_format=memory)  # type: ignore[call-overload]
    mean = torch.tensor(data.mean, device=device).view(1, 3, 1, 1)
    std = torch.tensor(data.std, device=device).view(1, 3, 1, 1)
    x_all = torch.tensor(data.x_train, device=device).permute(0, 3, 1, 2).float().div(255)
    x_all = ((x_all - mean) / std).contiguous(memory_format=memory)
    y_all = torch.tensor(data.y_train, device=device, dtype=torch.long)
    bs, n = hp.batch_size, len(data.y_train)
    static_x, static_y = x_all[:bs].clone(), y_all[:bs].clone()

    def train_step() -> None:
        optimizer.zero_grad(set_to_none=not graph)
        with torch.autocast(device_type=device, dtype=torch.bfloat16, enabled=bf16):
            loss = loss_fn(model(static_x), static_y)
        loss.backward()
        optimizer.step()

    if graph:  # capture once after a few eager steps on a side stream, then replay
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            for _ in range(3):
                train_step()
        torch.cuda.current_stream().wait_stream(side)
        captured = torch.cuda.CUDAGraph()
        with torch.cuda.graph(captured):
            train_step()
        run = captured.replay
    else:
        run = train_step
    position = [0]

    def step() -> None:
        start = position[0] % (n - bs)
        static_x.copy_(x_all[start : start + bs])
        static_y.copy_(y_all[start : start + bs])
        position[0] += bs
        run()

    return _rate(step, bs, steps, device)


def check_resident(data: Any, hp: HParams, device: str) -> str:
    """One epoch of the resident path on this device against one of the CPU path (no
    augmentation, same seed)."""
    cpu = Trainer("cnn", hp, TrainSpec(max_epochs=1), data, "cpu", resident=False)
    here = Trainer("cnn", hp, TrainSpec(max_epochs=1), data, device, resident=True)
    a, b = cpu.fit_epoch().metrics, here.fit_epoch().metrics
    worst = max(abs(a[k] - b[k]) for k in ("train_loss", "val_loss", "val_acc"))
    verdict = "same within tolerance" if worst < 0.02 else "DIFFERENT"
    return (
        f"{device} resident={here.resident} vs CPU path, 1 epoch: train_loss "
        f"{b['train_loss']:.4f}/{a['train_loss']:.4f}, val_acc {b['val_acc']:.4f}/"
        f"{a['val_acc']:.4f}: {verdict} (largest difference {worst:.4f})"
    )


def _model(
    hp: HParams, data: Any, device: str, capturable: bool = False
) -> tuple[nn.Module, torch.optim.Optimizer, nn.Module]:
    torch.manual_seed(hp.seed)
    model = build_model("cnn", hp, data.size, len(data.class_names)).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=hp.lr, capturable=capturable)
    return model, optimizer, nn.CrossEntropyLoss()


def _rate(step: Callable[[], None], batch: int, steps: int, device: str) -> float:
    for _ in range(min(5, steps)):  # warm-up (cuDNN autotune, allocator, loader start)
        step()
    _sync(device)
    started = time.perf_counter()
    for _ in range(steps):
        step()
    _sync(device)
    return steps * batch / (time.perf_counter() - started)


def _sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--workers", type=int, default=15, help="the seed way's loader workers")
    parser.add_argument("--steps", type=int, default=300, help="timed steps per variant")
    args = parser.parse_args()
    device = "cuda" if torch.cuda.is_available() else "cpu"
    hp = HParams(input_size=args.size, batch_size=args.batch, **SEED_CNN)
    files = scan_dataset(args.data.resolve())
    data = decode_dataset(files, [args.size])[args.size]
    name = torch.cuda.get_device_name() if device == "cuda" else "CPU"
    print(f"{name}; seed-sized CNN at {args.size} px, batch {args.batch}, {args.steps} steps each")
    print(check_resident(data, hp, device))

    variants: dict[str, Callable[[], float]] = {
        f"seed way: DataLoader, {args.workers} workers": lambda: seed_way(
            files, hp, data, device, args.workers, args.steps
        ),
        "skinsearch Trainer (resident on a GPU)": lambda: resident(data, hp, device, args.steps),
        "skinsearch Trainer, precision bf16": lambda: resident(
            data, hp, device, args.steps, "bf16"
        ),
        "bare loop, resident fp32": lambda: bare_loop(data, hp, device, args.steps),
        "bare loop, bf16 + channels_last": lambda: bare_loop(
            data, hp, device, args.steps, bf16=True
        ),
        "bare loop, CUDA-graph train step": lambda: bare_loop(
            data, hp, device, args.steps, graph=True
        ),
    }
    rates: dict[str, float] = {}
    for label, measure in variants.items():
        try:
            rates[label] = measure()
        except Exception as exc:  # one variant's failure must not cost the others' figures
            print(f"  {label:42} not run: {str(exc).splitlines()[0][:100]}")
    seed = rates.get(next(iter(variants)))
    ceiling = rates.get("bare loop, CUDA-graph train step")
    print(f"\n{'variant':42} {'images/s':>10} {'x seed way':>11} {'of graph loop':>14}")
    for label, rate in rates.items():
        vs_seed = f"{rate / seed:.2f}x" if seed else "-"
        vs_ceiling = f"{100 * rate / ceiling:.0f}%" if ceiling else "-"
        print(f"{label:42} {rate:10.0f} {vs_seed:>11} {vs_ceiling:>14}")


if __name__ == "__main__":
    main()
