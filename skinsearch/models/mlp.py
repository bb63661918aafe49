"""A multilayer perceptron on flattened pixels (the seed study's MLP)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from skinsearch.config.hparams import HParams
from skinsearch.models._registry import register_model

if TYPE_CHECKING:
    from torch import nn

#: ``activation`` -> the ``torch.nn`` layer class
_ACTIVATIONS = {
    "relu": "ReLU",
    "leaky_relu": "LeakyReLU",
    "elu": "ELU",
    "gelu": "GELU",
    "tanh": "Tanh",
}


@register_model("mlp", hparams={"hidden_sizes", "batchnorm", "activation", "init"})
def build_mlp(hp: HParams, input_size: int, num_classes: int) -> nn.Module:
    """Flatten -> [Linear -> (BatchNorm) -> activation -> Dropout] per hidden size -> Linear."""
    from torch import nn

    act_layer: type[nn.Module] = getattr(nn, _ACTIVATIONS[hp.activation])
    layers: list[nn.Module] = [nn.Flatten()]
    width = 3 * input_size * input_size
    for size in hp.hidden_sizes:
        layers.append(nn.Linear(width, size))
        if hp.batchnorm:
            layers.append(nn.BatchNorm1d(size))
        layers += [act_layer(), nn.Dropout(hp.dropout)]
        width = size
    layers.append(nn.Linear(width, num_classes))
    return nn.Sequential(*layers)
