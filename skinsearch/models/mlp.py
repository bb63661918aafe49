"""A multilayer perceptron on flattened pixels (the seed study's MLP)."""

from __future__ import annotations

from torch import nn

from skinsearch.config.hparams import HParams
from skinsearch.models._registry import register_model

_ACTIVATIONS: dict[str, type[nn.Module]] = {
    "relu": nn.ReLU,
    "leaky_relu": nn.LeakyReLU,
    "elu": nn.ELU,
    "gelu": nn.GELU,
    "tanh": nn.Tanh,
}


@register_model("mlp", hparams={"hidden_sizes", "batchnorm", "activation", "init"})
def build_mlp(hp: HParams, input_size: int, num_classes: int) -> nn.Module:
    """Flatten -> [Linear -> (BatchNorm) -> activation -> Dropout] per hidden size -> Linear."""
    act_layer = _ACTIVATIONS[hp.activation]
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
