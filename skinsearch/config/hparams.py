"""The hyperparameters of one trial: names, types, valid ranges and defaults.

``HParams`` is what a trial receives once Tune has picked a value for every searched
hyperparameter. The spec (``spec.py``) checks each value a search space can produce against the
same field definitions, so a search never starts with a value a trial would reject.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

Probability = Annotated[float, Field(ge=0.0, le=1.0)]
PositiveInt = Annotated[int, Field(ge=1)]

OPTIMIZERS = ("adam", "adamw", "sgd")
ACTIVATIONS = ("relu", "leaky_relu", "elu", "gelu", "tanh")
INITS = ("default", "he", "xavier", "uniform")


class HParams(BaseModel):
    """Every hyperparameter the common training loop and the built-in models know, with its
    default.

    The built-in models' fields (``hidden_sizes`` ... ``pooling``) are ignored by models they do
    not apply to; which model takes which is declared in ``skinsearch.models``. A model that
    needs hyperparameters of its own declares them where it is registered
    (``register_model(..., own=...)``): a trial of it gets a subclass of this with those fields
    (``models.hparams_class``).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    # optimisation
    lr: float = Field(1e-3, gt=0.0)  # learning rate
    batch_size: PositiveInt = 32
    optimizer: Literal["adam", "adamw", "sgd"] = "adam"
    momentum: float = Field(0.9, ge=0.0, lt=1.0)  # sgd only
    weight_decay: float = Field(0.0, ge=0.0)
    dropout: float = Field(0.0, ge=0.0, lt=1.0)
    schedule: Literal["constant", "cosine", "step"] = "constant"  # learning rate over epochs
    warmup_epochs: int = Field(0, ge=0)  # linear ramp of the learning rate from lr/warmup
    # decay per step of an exponential moving average of the weights, which is what is then
    # evaluated, checkpointed and exported; 0: off. It ramps up as (1 + n) / (10 + n) over
    # the first n steps (optim.build_ema), so 0.99 holds only after about 900 steps
    ema: float = Field(0.0, ge=0.0, lt=1.0)
    # input and augmentation (probabilities per image)
    input_size: int = Field(64, ge=8, le=1024)  # images are resized to input_size x input_size
    hflip: Probability = 0.0
    vflip: Probability = 0.0
    rotate90: Probability = 0.0  # a random multiple of 90 degrees (with both flips: all 8 views)
    rbcontrast: Probability = 0.0  # random brightness/contrast
    affine: Probability = 0.0  # shift-scale-rotate
    colour: Probability = 0.0  # hue, saturation, brightness and contrast jitter
    # architecture
    batchnorm: bool = False
    init: Literal["default", "he", "xavier", "uniform"] = "default"
    hidden_sizes: list[PositiveInt] = Field(default_factory=lambda: [256, 128])  # mlp
    activation: Literal["relu", "leaky_relu", "elu", "gelu", "tanh"] = "relu"  # mlp
    channels: list[PositiveInt] = Field(
        default_factory=lambda: [32, 64]
    )  # cnn, one conv block each
    kernel_size: int = Field(3, ge=1, le=15)  # cnn
    fc_size: PositiveInt = 128  # cnn
    pooling: Literal["flatten", "gap"] = "flatten"  # cnn head: flatten, or global average pool
    # reproducibility: set per trial by the search, not searched
    seed: int = 0


#: Hyperparameters every model takes.
COMMON_HPARAMS = frozenset(
    {"lr", "batch_size", "optimizer", "momentum", "weight_decay", "dropout", "input_size"}
    | {
        "schedule",
        "warmup_epochs",
        "ema",
        "hflip",
        "vflip",
        "rotate90",
        "rbcontrast",
        "affine",
        "colour",
    }
)

#: Hyperparameters that must take a discrete set of values, with the reason.
DISCRETE_ONLY = {"input_size": "images are decoded once per input size"}


def field_names() -> list[str]:
    """All hyperparameter names, in declaration order."""
    return list(HParams.model_fields)


def default_of(name: str) -> Any:
    """The default value of one hyperparameter."""
    return HParams.model_fields[name].get_default(call_default_factory=True)
