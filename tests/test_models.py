"""Every registered model: builds, runs forward and backward, takes every init scheme."""

from __future__ import annotations

import re

import pytest
import torch
from torch import nn

from skinsearch.config.hparams import INITS, HParams
from skinsearch.models import build_model, hparams_class, model_hparams, model_names


@pytest.mark.parametrize("name", model_names())
@pytest.mark.parametrize("size", [64, 96])
def test_every_model_classifies_a_batch(name: str, size: int) -> None:
    hp = hparams_class(name)(batchnorm=True, dropout=0.2)
    model = build_model(name, hp, size, num_classes=7)
    x = torch.randn(4, 3, size, size)
    logits = model(x)
    assert logits.shape == (4, 7)
    logits.sum().backward()
    assert all(p.grad is not None for p in model.parameters())


@pytest.mark.parametrize("name", [n for n in model_names() if "init" in model_hparams(n)])
@pytest.mark.parametrize("init", INITS)
def test_init_schemes_zero_biases_and_set_weights(name: str, init: str) -> None:
    torch.manual_seed(0)
    model = build_model(name, HParams(init=init), 32, num_classes=5)
    layers = [m for m in model.modules() if isinstance(m, nn.Linear | nn.Conv2d)]
    assert layers
    for layer in layers:
        if init != "default":
            assert torch.count_nonzero(layer.bias) == 0
        if init == "uniform":
            assert layer.weight.abs().max() <= 0.05
    if init == "he":
        first = layers[0].weight
        fan_in = first[0].numel()
        assert first.std().item() == pytest.approx((2 / fan_in) ** 0.5, rel=0.2)


@pytest.mark.parametrize("name", model_names())
def test_every_model_declares_its_hyperparameters(name: str) -> None:
    assert model_hparams(name) <= set(hparams_class(name).model_fields)


def test_unknown_model_lists_the_valid_ones() -> None:
    with pytest.raises(
        ValueError,
        match=r"unknown model 'resnet' \(valid: cnn, efficientnet_lite0, efficientnet_lite1, efficientnet_lite2, mlp\)",
    ):
        build_model("resnet", HParams(), 32, 2)


def test_cnn_rejects_an_input_it_cannot_downsample() -> None:
    with pytest.raises(ValueError, match=r"cannot take input_size 8 \(needs >= 16\)"):
        build_model("cnn", HParams(channels=[8, 8, 8, 8]), 8, 2)


def test_mlp_layers_follow_hidden_sizes() -> None:
    model = build_model("mlp", HParams(hidden_sizes=[64, 32], activation="tanh"), 16, 3)
    widths = [m.out_features for m in model.modules() if isinstance(m, nn.Linear)]
    assert widths == [64, 32, 3]
    assert any(isinstance(m, nn.Tanh) for m in model.modules())


def test_a_deeper_cnn_with_global_average_pooling() -> None:
    hp = HParams(channels=[8, 16, 32, 64], batchnorm=True, pooling="gap", fc_size=16)
    model = build_model("cnn", hp, 64, 8)
    assert model(torch.zeros(2, 3, 64, 64)).shape == (2, 8)
    assert sum(isinstance(m, nn.BatchNorm2d) for m in model.modules()) == 4
    assert any(isinstance(m, nn.AdaptiveAvgPool2d) for m in model.modules())
    first_fc = next(m for m in model.modules() if isinstance(m, nn.Linear))
    assert first_fc.in_features == 64  # one value per channel, whatever the input size
    assert build_model("cnn", hp, 128, 8)(torch.zeros(1, 3, 128, 128)).shape == (1, 8)


@pytest.mark.parametrize("name", model_names())
def test_tensorboard_histograms_name_each_parameter_by_its_layer(name: str) -> None:
    from skinsearch.tracking.board import histogram_names

    model = build_model(name, hparams_class(name)(input_size=64), 64, 3)
    named = histogram_names(model)
    assert len(named) == len(list(model.parameters()))  # each parameter once
    # a layer's path (when it has one) and class: 10_Linear.bias, head.1_Linear.weight
    assert all(re.fullmatch(r"([\w.]+_)?[A-Z]\w*\.(weight|bias)", n) for n, _ in named), named
