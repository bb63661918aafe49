"""What both sides of the speed benchmark share: the sliced search space and the data constants."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml

from skinsearch.config import space
from skinsearch.config.spec import SearchSpec, parse_spec
from skinsearch.data.decode import _channel_stats, load_image
from skinsearch.data.folders import DatasetFiles
from skinsearch.models import build_model, hparams_class
from skinsearch.models._registry import read_weights, weights_source


def slice_arguments(parser: argparse.ArgumentParser) -> None:
    """The arguments that choose the slice of a search space both sides run."""
    parser.add_argument("space", type=Path)
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--input-size", type=int, default=None)
    parser.add_argument("--epochs", type=int, default=None)
    parser.add_argument("--trials", type=int, default=None)


def bench_spec(
    path: Path,
    data: Path,
    input_size: int | None,
    epochs: int | None,
    trials: int | None,
) -> tuple[SearchSpec, list[dict[str, Any]]]:
    """The spec at ``path`` with its data, input size and epochs replaced, and the seeded pick of
    ``trials`` of its configurations that both the baseline and skinsearch run."""
    raw = yaml.safe_load(path.read_text())
    raw["data"] = {**raw.get("data", {}), "path": str(data.resolve())}
    if input_size is not None:
        raw["params"]["input_size"] = input_size
    if epochs is not None:
        raw.setdefault("train", {})["max_epochs"] = epochs
    spec = parse_spec(raw, str(path))
    configs = space.expand(spec)
    if trials is not None:
        configs = space.pick(configs, trials, spec.search.seed)
    return spec, configs


def channel_stats(files: DatasetFiles, size: int) -> tuple[list[float], list[float]]:
    """The train set's per-channel mean and std at ``size``, as skinsearch computes them."""
    images = np.stack([load_image(path, [size])[0] for path, _ in files.train])
    return _channel_stats(images)


def bench_model(name: str, size: int, classes: int = 8) -> torch.nn.Module:
    """A registered model at ``size`` px as a trial builds it, seeded, from its packaged
    weights where it has them."""
    hp = hparams_class(name)(input_size=size, seed=0)
    torch.manual_seed(0)
    source = weights_source(name, hp)
    start = read_weights(name, source) if source is not None else None
    return build_model(name, hp, size, classes, start=start)
