"""A plain convolutional network: conv blocks that halve the image, then a small classifier."""

from __future__ import annotations

from typing import TYPE_CHECKING

from skinsearch.config.hparams import HParams
from skinsearch.models._registry import register_model

if TYPE_CHECKING:
    from torch import nn


def _min_input_size(hp: HParams) -> int:
    # each block halves the image; at least one pixel must be left after the last one
    return 2 ** len(hp.channels)


@register_model(
    "cnn",
    hparams={"channels", "kernel_size", "batchnorm", "fc_size", "init", "pooling"},
    min_input_size=_min_input_size,
)
def build_cnn(hp: HParams, input_size: int, num_classes: int) -> nn.Module:
    """[Conv -> (BatchNorm) -> ReLU -> MaxPool 2] per channel count -> Dropout -> FC -> ReLU
    -> Dropout -> Linear; the seed's network is ``channels: [32, 64]``, ``fc_size: 128``.

    ``pooling: gap`` averages each channel over the image before the classifier (global average
    pooling): far fewer weights than flattening, and the usual head of deeper networks
    (``channels: [32, 64, 128, 256]`` with ``batchnorm: true``)."""
    from torch import nn

    layers: list[nn.Module] = []
    in_channels = 3
    for out_channels in hp.channels:
        layers.append(
            nn.Conv2d(in_channels, out_channels, hp.kernel_size, padding=hp.kernel_size // 2)
        )
        if hp.batchnorm:
            layers.append(nn.BatchNorm2d(out_channels))
        layers += [nn.ReLU(), nn.MaxPool2d(2)]
        in_channels = out_channels
    side = input_size // 2 ** len(hp.channels)
    if hp.pooling == "gap":
        layers.append(nn.AdaptiveAvgPool2d(1))
        side = 1
    layers += [
        nn.Flatten(),
        nn.Dropout(hp.dropout),
        nn.Linear(in_channels * side * side, hp.fc_size),
        nn.ReLU(),
        nn.Dropout(hp.dropout),
        nn.Linear(hp.fc_size, num_classes),
    ]
    return nn.Sequential(*layers)
