"""The model registry: a name -> builder table, and the one factory that uses it.

The table itself needs no torch: a spec is validated, and ``report`` or ``sync-mlflow`` read a
search, without loading it. Model modules import torch inside their builders for that reason.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pydantic import create_model

from skinsearch.config.hparams import HParams

if TYPE_CHECKING:
    from torch import nn

Builder = Callable[[HParams, int, int], "nn.Module"]


@dataclass(frozen=True)
class _Entry:
    builder: Builder
    hparams: frozenset[str]  # model-specific hyperparameters, beyond the common ones
    min_input_size: Callable[[HParams], int]
    params: type[HParams]  # what a trial of it takes: HParams and the model's own fields


_MODELS: dict[str, _Entry] = {}


def register_model(
    name: str,
    *,
    hparams: set[str],
    own: dict[str, Any] | None = None,
    min_input_size: Callable[[HParams], int] = lambda hp: 8,
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
        _MODELS[name] = _Entry(builder, frozenset(hparams | set(own or {})), min_input_size, params)
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


def build_model(name: str, hparams: HParams, input_size: int, num_classes: int) -> nn.Module:
    """Build a registered model with its weights initialised as ``hparams.init`` says.

    Raises:
        ValueError: for an unknown name or an input size the model cannot take.
    """
    entry = _entry(name)
    smallest = entry.min_input_size(hparams)
    if input_size < smallest:
        raise ValueError(f"model {name!r} needs input_size >= {smallest}, got {input_size}")
    model = entry.builder(hparams, input_size, num_classes)
    if "init" in entry.hparams:
        from skinsearch.models._init import init_weights

        init_weights(model, hparams.init)
    return model


def _entry(name: str) -> _Entry:
    try:
        return _MODELS[name]
    except KeyError:
        raise ValueError(f"unknown model {name!r} (valid: {', '.join(model_names())})") from None
