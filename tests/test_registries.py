"""Every extension point is a name table: its names are exactly those a search-space file may
write, each entry works, and an unknown name is an error that lists the valid ones."""

from __future__ import annotations

import itertools
import typing

import pytest
import torch

from skinsearch._registry import Registry
from skinsearch.config.hparams import HParams
from skinsearch.config.spec import SamplerSpec, SchedulerSpec
from skinsearch.data.augment import AUGMENTATIONS
from skinsearch.data.batch_augment import BATCH_AUGMENTATIONS
from skinsearch.training.optim import OPTIMIZERS, SCHEDULES, build_optimizer, lr_factor
from skinsearch.tune.searchers import SCHEDULERS, SEARCHERS


def options(model: type, field: str) -> set[str]:
    return set(typing.get_args(model.model_fields[field].annotation))


def test_each_table_holds_exactly_the_names_a_file_may_write() -> None:
    assert set(OPTIMIZERS) == options(HParams, "optimizer")
    assert set(SCHEDULES) == options(HParams, "schedule")
    assert set(SCHEDULERS) == options(SchedulerSpec, "type")
    assert set(SEARCHERS) == options(SamplerSpec, "sampler")


def test_the_cpu_and_batch_augmentations_are_the_same_hyperparameters_in_the_same_order() -> None:
    assert AUGMENTATIONS.names() == BATCH_AUGMENTATIONS.names()
    for name in AUGMENTATIONS:
        assert HParams.model_fields[name].annotation is float  # a probability


@pytest.mark.parametrize("name", OPTIMIZERS.names())
def test_every_optimizer_takes_a_step(name: str) -> None:
    model = torch.nn.Linear(3, 2)
    before = model.weight.detach().clone()
    optimizer = build_optimizer(model, HParams(optimizer=name, lr=0.1))  # type: ignore[arg-type]
    model(torch.ones(4, 3)).sum().backward()
    optimizer.step()
    assert not torch.equal(model.weight, before)


@pytest.mark.parametrize("name", SCHEDULES.names())
def test_every_schedule_starts_at_the_full_rate_and_never_rises(name: str) -> None:
    hp = HParams(schedule=name)  # type: ignore[arg-type]
    factors = [lr_factor(hp, epoch, 12) for epoch in range(1, 13)]
    assert factors[0] == 1.0
    assert all(later <= earlier for earlier, later in itertools.pairwise(factors))


def test_an_unknown_name_lists_the_valid_ones() -> None:
    table: Registry[int] = Registry("widget")
    table.register("a", "b")(1)
    with pytest.raises(ValueError, match=r"unknown widget 'c' \(valid: a, b\)"):
        table["c"]
    with pytest.raises(ValueError, match="already registered"):
        table.register("a")(2)
    with pytest.raises(ValueError, match="unknown optimizer 'lion'"):
        OPTIMIZERS["lion"]
