"""Weight initialisation schemes for linear and conv layers (biases start at zero)."""

from __future__ import annotations

from torch import nn


def init_weights(model: nn.Module, scheme: str) -> None:
    """Re-initialise every ``nn.Linear`` and ``nn.Conv2d`` of ``model`` in place.

    Args:
        model: The network.
        scheme: ``default`` (PyTorch's own), ``he`` (Kaiming normal, fan-in, ReLU gain),
            ``xavier`` (Glorot uniform) or ``uniform`` (U(-0.05, 0.05)).
    """
    if scheme == "default":
        return
    if scheme not in ("he", "xavier", "uniform"):
        raise ValueError(f"unknown init {scheme!r} (valid: default, he, xavier, uniform)")
    for module in model.modules():
        if not isinstance(module, nn.Linear | nn.Conv2d):
            continue
        if scheme == "he":
            nn.init.kaiming_normal_(module.weight, nonlinearity="relu")
        elif scheme == "xavier":
            nn.init.xavier_uniform_(module.weight)
        else:
            nn.init.uniform_(module.weight, -0.05, 0.05)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
