"""The model registry: a name -> builder table, and the one factory that uses it.

The table itself needs no torch: a spec is validated, and ``report`` or ``sync-mlflow`` read a
search, without loading it. Model modules import torch inside their builders for that reason.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from skinsearch.config.hparams import HParams

if TYPE_CHECKING:
    from torch import nn

Builder = Callable[[HParams, int, int], "nn.Module"]


@dataclass(frozen=True)
class _Entry:
    builder: Builder
    hparams: frozenset[str]  # model-specific hyperparameters, beyond the common ones
    min_input_size: Callable[[HParams], int]


_MODELS: dict[str, _Entry] = {}


def register_model(
    name: str, *, hparams: set[str], min_input_size: Callable[[HParams], int] = lambda hp: 8
) -> Callable[[Builder], Builder]:
    """Register ``builder(hparams, input_size, num_classes) -> nn.Module`` under ``name``.

    Args:
        name: The name search spaces use in ``model:``.
        hparams: The model-specific hyperparameters it reads (``init`` is applied for it).
        min_input_size: The smallest input size the model can take for given hyperparameters.
    """

    def decorator(builder: Builder) -> Builder:
        if name in _MODELS:
            raise ValueError(f"model {name!r} is already registered")
        _MODELS[name] = _Entry(builder, frozenset(hparams), min_input_size)
        return builder

    return decorator


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
