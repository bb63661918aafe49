"""A model declares the hyperparameters only it takes (``register_model(..., own=...)``): a
search space checks them, Tune carries them, trials and bundles rebuild them, and no other
model accepts them. Adding such a model touches no other module."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import torch
from pydantic import Field
from torch import nn

from skinsearch.config import space
from skinsearch.config.hparams import HParams
from skinsearch.config.plan import SearchPlan, decode, list_hparams
from skinsearch.errors import SpecError
from skinsearch.models import (
    build_model,
    hparams_class,
    model_names,
    register_model,
    unregister_model,
)
from skinsearch.training.footprint import largest_trial
from tests.conftest import spec_of

OWN = {
    "width_mult": (float, Field(1.0, gt=0.0, le=4.0)),
    "stages": (list[int], Field(default_factory=lambda: [8, 16])),
}


@pytest.fixture
def widenet() -> Iterator[str]:
    @register_model("widenet", hparams={"init"}, own=OWN)
    def build(hp: Any, input_size: int, num_classes: int) -> nn.Module:
        widths = [max(1, round(w * hp.width_mult)) for w in hp.stages]
        layers: list[nn.Module] = [nn.Flatten()]
        features = 3 * input_size * input_size
        for width in widths:
            layers += [nn.Linear(features, width), nn.ReLU()]
            features = width
        return nn.Sequential(*layers, nn.Linear(features, num_classes))

    yield "widenet"
    unregister_model("widenet")


def test_its_own_hyperparameters_are_checked_searched_and_carried(widenet: str) -> None:
    spec = spec_of(
        "params:\n  width_mult: {uniform: [0.5, 2.0]}\n  stages: {choice: [[4], [8, 16]]}\n"
        "  input_size: 16\n",
        model=widenet,
    )
    assert {"width_mult", "stages"} <= set(space.domains(spec))
    assert "stages" in list_hparams()
    plan = SearchPlan.compile(spec)
    config = plan.tune_configs()[0]
    assert isinstance(config["stages"], str)  # through Tune as "8-16"
    hp = hparams_class(widenet).model_validate(plan.trial_config(config))
    assert isinstance(hp, HParams) and 0.5 <= hp.width_mult <= 2.0 and hp.stages in ([4], [8, 16])
    model = build_model(widenet, hp, 16, num_classes=3)
    model(torch.rand(2, 3, 16, 16)).sum().backward()
    assert largest_trial(plan, num_classes=3).parameters > 0
    assert decode({"stages": "4-8"}) == {"stages": [4, 8]}


def test_bad_values_are_located_and_other_models_refuse_them(widenet: str) -> None:
    with pytest.raises(SpecError) as error:
        spec_of("params:\n  width_mult: 9\n", model=widenet)
    assert str(error.value) == "<spec>: params.width_mult: must be <= 4, got 9"
    with pytest.raises(SpecError) as error:
        spec_of("params:\n  width_mult: 2.0\n", model="mlp")
    assert "params.width_mult: not a hyperparameter of model 'mlp'" in str(error.value)
    unregister_model(widenet)
    assert widenet not in model_names()
    with pytest.raises(SpecError, match=r"params\.width_mult: unknown hyperparameter"):
        spec_of("params:\n  width_mult: 2.0\n", model="mlp")


def test_an_own_hyperparameter_may_not_shadow_a_common_one() -> None:
    with pytest.raises(ValueError, match="lr is already an HParams field"):
        register_model("clash", hparams=set(), own={"lr": (float, 0.1)})(
            lambda hp, s, n: nn.Identity()
        )
    assert "clash" not in model_names()
