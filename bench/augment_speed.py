"""Images augmented per second: albumentations per image (the CPU path) against BatchAugment on
whole batches (the GPU path), on this machine's CPU and, when there is one, its GPU.

    python bench/augment_speed.py --size 64 --batch 32

Every transform is on with probability 1 (flips, affine, colour jitter, brightness/contrast),
the heaviest case. One thread, as a trial with one CPU has.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from skinsearch.config.hparams import HParams
from skinsearch.data.augment import augment_batch, build_augment
from skinsearch.data.batch_augment import BatchAugment

HP = HParams(hflip=1.0, vflip=1.0, affine=1.0, colour=1.0, rbcontrast=1.0)


def per_image(images: np.ndarray, batch: int, seconds: float) -> float:
    pipeline = build_augment(HP, seed=0)
    done, started = 0, time.perf_counter()
    while time.perf_counter() - started < seconds:
        augment_batch(pipeline, images[done % len(images) :][:batch])
        done += batch
    return done / (time.perf_counter() - started)


def batched(images: np.ndarray, batch: int, seconds: float, device: str) -> float:
    resident = torch.tensor(images, device=device)
    augment, generator = BatchAugment(HP), torch.Generator(device).manual_seed(0)
    rows = torch.arange(batch, device=device)
    done, started = 0, time.perf_counter()
    while time.perf_counter() - started < seconds:
        x = resident[(rows + done) % len(images)].permute(0, 3, 1, 2).float().div_(255.0)
        augment(x, generator)
        done += batch
    if device == "cuda":
        torch.cuda.synchronize()
    return done / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--seconds", type=float, default=5.0, help="per measurement")
    args = parser.parse_args()
    torch.set_num_threads(1)
    images = np.random.default_rng(0).integers(0, 256, (512, args.size, args.size, 3), np.uint8)
    print(f"{args.size} px, batch {args.batch}, every transform on; images per second:")
    base = per_image(images, args.batch, args.seconds)
    print(f"  albumentations, per image, 1 CPU thread   {base:10.0f}")
    ours = batched(images, args.batch, args.seconds, "cpu")
    print(f"  BatchAugment, per batch, 1 CPU thread     {ours:10.0f}   {ours / base:.2f}x")
    if torch.cuda.is_available():
        gpu = batched(images, args.batch, args.seconds, "cuda")
        print(f"  BatchAugment, per batch, GPU              {gpu:10.0f}   {gpu / base:.2f}x")


if __name__ == "__main__":
    main()
