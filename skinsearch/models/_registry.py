"""The model registry: a name -> builder table, and the one factory that uses it.

The table itself needs no torch: a spec is validated, and ``report`` or ``sync-mlflow`` read a
search, without loading it. Model modules import torch inside their builders for that reason.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pydantic import create_model

from skinsearch.config.hparams import HParams

if TYPE_CHECKING:
    from torch import nn

Builder = Callable[[HParams, int, int], "nn.Module"]
StateDict = Mapping[str, Any]  # parameter name -> torch.Tensor


@dataclass(frozen=True)
class Pretrained:
    """How a model starts from trained weights instead of a random init.

    Attributes:
        source: Which weights a trial's hyperparameters ask for: a short name of packaged ones
            (``"imagenet"``), a file's absolute path, or None for a random init. Trials that ask
            for the same source share one copy.
        read: The source's state dict, read and checked (on the driver, once per search).
        load: Puts a state dict from ``read`` into a freshly built model, strictly.
        mean: The per-channel normalisation (on the [0, 1] scale) the weights were trained with;
            a pretrained trial uses it in place of its data set's own statistics.
        std: Its standard deviation, the same way.
        check: Why the source cannot be read (a missing file), or None; cheap, without torch,
            for ``validate``.
    """

    source: Callable[[HParams], str | None]
    read: Callable[[str], StateDict]
    load: Callable[[nn.Module, StateDict], None]
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    check: Callable[[HParams], str | None] = lambda hp: None


@dataclass(frozen=True)
class _Entry:
    builder: Builder
    hparams: frozenset[str]  # model-specific hyperparameters, beyond the common ones
    min_input_size: Callable[[HParams], int]
    params: type[HParams]  # what a trial of it takes: HParams and the model's own fields
    input_multiple: int  # input sizes it takes are multiples of this
    requires: tuple[tuple[str, str], ...]  # (module, install hint) it cannot be built without
    pretrained: Pretrained | None


_MODELS: dict[str, _Entry] = {}


def register_model(
    name: str,
    *,
    hparams: set[str],
    own: dict[str, Any] | None = None,
    min_input_size: Callable[[HParams], int] = lambda hp: 8,
    input_multiple: int = 1,
    requires: tuple[tuple[str, str], ...] = (),
    pretrained: Pretrained | None = None,
) -> Callable[[Builder], Builder]:
    """Register ``builder(hparams, input_size, num_classes) -> nn.Module`` under ``name``.

    Args:
        name: The name search spaces use in ``model:``.
        hparams: The model-specific hyperparameters it reads from ``HParams`` (``init`` is
            applied for it).
        own: Hyperparameters only this model takes, declared here as ``pydantic.create_model``
            takes fields: ``{"freeze_epochs": (int, Field(0, ge=0))}``. A search space checks
            their values, Tune searches them, and the builder reads them from its ``hparams``
            like any other.
        min_input_size: The smallest input size the model can take for given hyperparameters.
        input_multiple: Input sizes must be multiples of this (a network with five stride-2
            stages takes multiples of 32).
        requires: ``(module, install hint)`` for each optional package the builder imports: a
            search space naming the model is refused with the hint when one is missing.
        pretrained: How it starts from trained weights, when it can.
    """

    def decorator(builder: Builder) -> Builder:
        if name in _MODELS:
            raise ValueError(f"model {name!r} is already registered")
        clash = sorted(set(own or {}) & set(HParams.model_fields))
        if clash:
            raise ValueError(f"model {name!r}: {', '.join(clash)} is already an HParams field")
        params = (
            create_model(f"HParams_{name}", __base__=HParams, **(own or {})) if own else HParams
        )
        _MODELS[name] = _Entry(
            builder,
            frozenset(hparams | set(own or {})),
            min_input_size,
            params,
            input_multiple,
            requires,
            pretrained,
        )
        return builder

    return decorator


def unregister_model(name: str) -> None:
    """Remove a registered model (for tests that register one of their own)."""
    _MODELS.pop(name, None)


def hparams_class(name: str) -> type[HParams]:
    """What a trial of model ``name`` takes: ``HParams``, with the model's own fields."""
    return _entry(name).params


def known_hparams() -> set[str]:
    """Every hyperparameter some model takes: ``HParams``' fields and every model's own."""
    return set(HParams.model_fields).union(*(e.params.model_fields for e in _MODELS.values()))


def model_names() -> list[str]:
    """Registered model names, sorted."""
    return sorted(_MODELS)


def model_hparams(name: str) -> frozenset[str]:
    """The model-specific hyperparameters of a registered model."""
    return _entry(name).hparams


def min_input_size(name: str, hparams: HParams) -> int:
    """The smallest input size ``name`` accepts with these hyperparameters."""
    return _entry(name).min_input_size(hparams)


def input_size_problem(name: str, hparams: HParams, input_size: int) -> str | None:
    """What ``name`` needs of ``input_size`` with these hyperparameters (``"needs >= 16"``,
    ``"needs a multiple of 32"``), or None when it can take it."""
    entry = _entry(name)
    smallest = entry.min_input_size(hparams)
    if input_size < smallest:
        return f"needs >= {smallest}"
    if input_size % entry.input_multiple:
        return f"needs a multiple of {entry.input_multiple}"
    return None


def missing_requirement(name: str) -> str | None:
    """The install hint of the first optional package model ``name`` needs and this environment
    lacks, or None. Looks for the packages without importing them (nor torch)."""
    for module, hint in _entry(name).requires:
        if importlib.util.find_spec(module) is None:
            return hint
    return None


def weights_source(name: str, hparams: HParams) -> str | None:
    """Which trained weights a trial of ``name`` starts from (see ``Pretrained.source``)."""
    pretrained = _entry(name).pretrained
    return None if pretrained is None else pretrained.source(hparams)


def weights_problem(name: str, hparams: HParams) -> str | None:
    """Why the trained weights these hyperparameters ask for cannot be read, or None."""
    pretrained = _entry(name).pretrained
    return None if pretrained is None else pretrained.check(hparams)


def read_weights(name: str, source: str) -> StateDict:
    """The checked state dict of a weights source of model ``name``.

    Raises:
        ValueError: one line naming the source and what is wrong with it.
    """
    pretrained = _entry(name).pretrained
    if pretrained is None:
        raise ValueError(f"model {name!r} starts from no trained weights")
    return pretrained.read(source)


def input_normalisation(
    name: str, hparams: HParams
) -> tuple[tuple[float, float, float], tuple[float, float, float]] | None:
    """The (mean, std) a trial must normalise its input with, when it starts from trained
    weights; None when the data set's own statistics serve."""
    pretrained = _entry(name).pretrained
    if pretrained is None or pretrained.source(hparams) is None:
        return None
    return pretrained.mean, pretrained.std


def build_model(
    name: str,
    hparams: HParams,
    input_size: int,
    num_classes: int,
    start: StateDict | None = None,
) -> nn.Module:
    """Build a registered model with its weights initialised as ``hparams.init`` says, then
    ``start`` (from ``read_weights``) loaded into it when given. A model rebuilt to load its own
    trained state dict next (export, predict) is built without ``start``.

    Raises:
        ValueError: for an unknown name, an input size the model cannot take, or a ``start``
            that does not fit it.
    """
    entry = _entry(name)
    problem = input_size_problem(name, hparams, input_size)
    if problem:
        raise ValueError(f"model {name!r} cannot take input_size {input_size} ({problem})")
    model = entry.builder(hparams, input_size, num_classes)
    if "init" in entry.hparams:
        from skinsearch.models._init import init_weights

        init_weights(model, hparams.init)
    if start is not None:
        if entry.pretrained is None:
            raise ValueError(f"model {name!r} starts from no trained weights")
        entry.pretrained.load(model, start)
    return model


def _entry(name: str) -> _Entry:
    try:
        return _MODELS[name]
    except KeyError:
        raise ValueError(f"unknown model {name!r} (valid: {', '.join(model_names())})") from None
