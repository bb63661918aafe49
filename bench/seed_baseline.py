"""The seed study's way of training, written plainly, as the baseline skinsearch is measured against.

Each configuration is trained alone, one after another, in a plain PyTorch loop. A DataLoader
reads every JPEG file and runs the albumentations pipeline on every image in every epoch (train
and val), with ``--workers`` loader processes. The only stopping is each configuration's own
patience. Nothing is logged or checkpointed, which makes the baseline faster than the seed was.

What it shares with skinsearch, so that the two train the same models on the same pixels: the
configurations (``skinsearch.config.space``), the model builders and their seeded initialisation, the
file list and split, the RGB decode and bilinear resize (``load_image``), the normalisation
constants, the albumentations pipeline and the metric definitions. It does not use skinsearch's
``Trainer``, its decoded arrays, Ray, MLflow or TensorBoard.

    python bench/seed_baseline.py search_spaces/mlp.yaml --data ../shared/data/isic8_clean \
        --input-size 32 --epochs 10 --trials 12 --workers 2
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import bench_spec, channel_stats, slice_arguments

from skinsearch.config import space
from skinsearch.config.hparams import HParams
from skinsearch.config.spec import SearchSpec
from skinsearch.data import scan_dataset
from skinsearch.data.augment import build_augment
from skinsearch.data.decode import load_image
from skinsearch.models import build_model
from skinsearch.training.metrics import evaluate


class JpegFolder(Dataset[tuple[torch.Tensor, int]]):
    """Decodes, resizes, augments and normalises one image file per item, every time."""

    def __init__(
        self,
        items: list[tuple[Path, int]],
        size: int,
        mean: list[float],
        std: list[float],
        augment: Any,
        decodes: Any,  # multiprocessing.Value shared with the loader processes
    ) -> None:
        self.items, self.size, self.augment, self.decodes = items, size, augment, decodes
        self.mean = np.array(mean, dtype=np.float32)
        self.std = np.array(std, dtype=np.float32)

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        path, label = self.items[index]
        (image,) = load_image(path, [self.size])
        with self.decodes.get_lock():
            self.decodes.value += 1
        if self.augment is not None:
            image = self.augment(image=image)["image"]
        x = (image.astype(np.float32) / 255.0 - self.mean) / self.std
        return torch.from_numpy(x.transpose(2, 0, 1).copy()), label


class SeededBatches:
    """Batches in the order skinsearch's trainer draws them (seeded per epoch), so that the two
    sides differ in how they feed the model and not in which images meet in a batch."""

    def __init__(self, n: int, batch_size: int, seed: int) -> None:
        self.n, self.batch_size, self.seed, self.epoch = n, batch_size, seed, 0

    def __len__(self) -> int:
        return -(-self.n // self.batch_size)

    def __iter__(self) -> Any:
        self.epoch += 1
        torch.manual_seed(self.seed * 100_003 + self.epoch)  # dropout masks, as the trainer
        order = np.random.default_rng(self.seed * 100_003 + self.epoch).permutation(self.n)
        if len(order) % self.batch_size == 1:
            order = order[:-1]
        for start in range(0, len(order), self.batch_size):
            yield np.sort(order[start : start + self.batch_size]).tolist()


@dataclass
class ConfigResult:
    """One configuration's outcome."""

    config: dict[str, Any]
    epochs: int
    best: float
    best_metrics: dict[str, float]
    seconds: float
    images: int  # training images seen


def train_config(
    spec: SearchSpec,
    config: dict[str, Any],
    files: Any,
    stats: tuple[list[float], list[float]],
    workers: int,
    decodes: Any,
) -> ConfigResult:
    """Train one configuration to ``max_epochs`` or its patience, as the seed did."""
    started = time.perf_counter()
    hp = HParams.model_validate(config)
    torch.manual_seed(hp.seed)
    n_classes = len(files.class_names)
    model = build_model(spec.model, hp, hp.input_size, n_classes)
    optimizer: torch.optim.Optimizer
    if hp.optimizer == "sgd":
        optimizer = torch.optim.SGD(
            model.parameters(), lr=hp.lr, momentum=hp.momentum, weight_decay=hp.weight_decay
        )
    elif hp.optimizer == "adamw":
        optimizer = torch.optim.AdamW(model.parameters(), lr=hp.lr, weight_decay=hp.weight_decay)
    else:
        optimizer = torch.optim.Adam(model.parameters(), lr=hp.lr, weight_decay=hp.weight_decay)
    criterion = nn.CrossEntropyLoss(label_smoothing=spec.train.label_smoothing)
    mean, std = stats
    train_set = JpegFolder(
        files.train, hp.input_size, mean, std, build_augment(hp, hp.seed), decodes
    )
    val_set = JpegFolder(files.val, hp.input_size, mean, std, None, decodes)
    loader_args: dict[str, Any] = {"num_workers": workers, "persistent_workers": False}
    train_loader = DataLoader(
        train_set,
        batch_sampler=SeededBatches(len(train_set), hp.batch_size, hp.seed),
        **loader_args,
    )
    val_loader = DataLoader(val_set, batch_size=256, **loader_args)
    metric, sign = spec.train.metric, 1.0 if spec.train.resolved_mode == "max" else -1.0
    best, best_metrics, bad, images, epochs = -np.inf, {}, 0, 0, 0
    for epoch in range(1, spec.train.max_epochs + 1):
        epochs = epoch
        model.train()
        for x, y in train_loader:
            loss = criterion(model(x), y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            images += len(y)
        model.eval()
        probs, labels = [], []
        with torch.inference_mode():
            for x, y in val_loader:
                probs.append(torch.softmax(model(x), 1).numpy())
                labels.append(y.numpy())
        evaluation = evaluate(np.concatenate(labels), np.concatenate(probs), files.class_names)
        metrics = evaluation.metrics("val_")
        score = sign * metrics[metric]
        if score > best:
            best, best_metrics, bad = score, metrics, 0
        else:
            bad += 1
        if spec.train.patience is not None and bad >= spec.train.patience:
            break
    return ConfigResult(
        config, epochs, sign * best, best_metrics, time.perf_counter() - started, images
    )


def run_baseline(
    spec: SearchSpec, configs: list[dict[str, Any]], workers: int, echo: Any = print
) -> dict[str, Any]:
    """Train every configuration one after another; return the figures the benchmark prints."""
    files = scan_dataset(Path(spec.data.path), spec.data.val_fraction, spec.search.seed)
    stats = channel_stats(files, space.input_sizes(spec)[0])  # constants the seed hard-coded
    started = time.perf_counter()
    decodes = multiprocessing.get_context().Value("q", 0)
    torch.set_num_threads(max(1, torch.get_num_threads()))
    results = []
    for i, config in enumerate(configs, 1):
        result = train_config(spec, config, files, stats, workers, decodes)
        results.append(result)
        echo(
            f"  baseline {i}/{len(configs)}: {result.epochs} epochs, "
            f"{spec.train.metric}={result.best:.4f}, {result.seconds:.1f} s"
        )
    wall = time.perf_counter() - started
    best = max(results, key=lambda r: r.best if spec.train.resolved_mode == "max" else -r.best)
    return {
        "wall_s": wall,
        "trial_epochs": sum(r.epochs for r in results),
        "train_images": sum(r.images for r in results),
        "decodes": decodes.value,
        "best": best.best,
        "best_metrics": best.best_metrics,
        "best_config": best.config,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    slice_arguments(parser)
    parser.add_argument("--workers", type=int, default=0)
    args = parser.parse_args()
    spec, configs = bench_spec(args.space, args.data, args.input_size, args.epochs, args.trials)
    figures = run_baseline(spec, configs, args.workers)
    print(json.dumps({k: v for k, v in figures.items() if k != "best_config"}, indent=1))


if __name__ == "__main__":
    main()
