"""How much memory one trial needs, estimated from its configuration before anything runs.

Each distinct architecture of a plan is built once on PyTorch's ``meta`` device (shapes only, no
memory) and run forward on a meta batch of one image, which counts its parameters and the
activations one image leaves for the backward pass. A trial then needs, in float32:

- weights, gradients and the optimizer's state: ``(2 + states) x parameters``, where Adam and
  AdamW keep two tensors per weight and SGD with momentum one;
- activations and their gradients: ``2 x batch_size x activations per image``.

It leaves out the decoded images (shared through Ray's object store) and the framework's own
memory, so a trial needs at least this much: ``tune.cluster.trial_memory_problem`` refuses a
search whose largest trial cannot fit in this machine's memory, or in the memory Ray gives one
trial, per trial run at once.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from skinsearch.config.hparams import HParams
from skinsearch.config.plan import SearchPlan

FLOAT_BYTES = 4
#: tensors per weight an optimizer keeps (Adam: first and second moments)
OPTIMIZER_STATES = {"adam": 2, "adamw": 2, "sgd": 1}
MAX_ARCHITECTURES = 2_000  # the most distinct architectures built to find the largest
#: model hyperparameters that set weights' values or how they train, never their shapes (a
#: frozen backbone needs less, so the unfrozen epochs are the ones counted)
NOT_SHAPE = {
    "init",
    "activation",
    "pretrained",
    "freeze_epochs",
    "backbone_lr_mult",
    "l2sp",
    "drop_connect",
}


@dataclass(frozen=True)
class Footprint:
    """The estimated memory of one trial, and what it comes from."""

    bytes: int
    parameters: int
    config: dict[str, Any]  # the configuration it was estimated for

    def describe(self, model: str) -> str:
        """The configuration's shape in words: "mlp with hidden_sizes [100000] at input_size
        1024, batch_size 32"."""
        shape = [
            f"{k} {v}" for k, v in self.config.items() if k not in ("batch_size", "input_size")
        ]
        return (
            f"{model}{' with ' + ', '.join(shape) if shape else ''} at input_size "
            f"{self.config['input_size']}, batch_size {self.config['batch_size']}"
        )


def largest_trial(plan: SearchPlan, num_classes: int) -> Footprint:
    """The trial of ``plan`` that needs the most memory, and how much (see the module docstring).

    For a ``tpe`` search, every discrete value of the hyperparameters that decide the size is
    tried, and a range at its upper end.
    """
    from skinsearch.models import hparams_class, model_hparams

    fields = hparams_class(plan.spec.model)
    shape_names = [*sorted(model_hparams(plan.spec.model) - NOT_SHAPE), "input_size"]
    sized = [*shape_names, "batch_size", "optimizer", "momentum"]
    measured: dict[str, tuple[int, int]] = {}  # architecture -> parameters, activations
    seen, best = set(), None
    for config in _candidates(plan, sized):
        values = {n: v for n, v in {**plan.fixed, **config}.items() if n in sized}
        if repr(values) in seen:
            continue
        seen.add(repr(values))
        hp = fields.model_validate(values)
        shape = {n: getattr(hp, n) for n in shape_names}
        if repr(shape) not in measured:
            if len(measured) >= MAX_ARCHITECTURES:
                continue
            measured[repr(shape)] = _measure(plan.spec.model, hp, num_classes)
        params, activations = measured[repr(shape)]
        states = OPTIMIZER_STATES.get(hp.optimizer, 2)
        if hp.optimizer == "sgd" and hp.momentum == 0:
            states = 0  # plain SGD keeps no state
        total = FLOAT_BYTES * ((2 + states) * params + 2 * hp.batch_size * activations)
        if best is None or total > best.bytes:
            # the architecture's settings the file names, then the size of its input
            named = {n: shape[n] for n in shape_names if n in plan.spec.params}
            config = {**named, "input_size": hp.input_size, "batch_size": hp.batch_size}
            best = Footprint(total, params, config)
    assert best is not None, "a plan has at least one configuration"
    return best


def _candidates(plan: SearchPlan, sized: list[str]) -> Iterator[dict[str, Any]]:
    # the plan's configurations; for tpe, the corners of its space that decide the size
    if plan.configs is not None:
        yield from plan.configs
        return
    choices = []
    for name in sized:
        domain = plan.domains[name]
        # a range: its upper end (the largest batch or layer); momentum only matters as zero
        high = int(domain.high) if domain.kind == "randint" else domain.high
        choices.append(list(domain.values) if domain.is_discrete else [high])
    for values in itertools.islice(itertools.product(*choices), MAX_ARCHITECTURES * 10):
        yield dict(zip(sized, values, strict=True))


def _measure(model: str, hp: HParams, num_classes: int) -> tuple[int, int]:
    # parameters, and the elements of every layer's output for one image, on the meta device
    import torch

    from skinsearch.models import build_model

    with torch.device("meta"):
        net = build_model(model, hp, hp.input_size, num_classes)
    activations = 0

    def count(module: torch.nn.Module, inputs: Any, output: Any) -> None:
        nonlocal activations
        if isinstance(output, torch.Tensor):
            activations += output.numel()

    hooks = [m.register_forward_hook(count) for m in net.modules() if not list(m.children())]
    try:
        net(torch.empty(1, 3, hp.input_size, hp.input_size, device="meta"))
    finally:
        for hook in hooks:
            hook.remove()
    return sum(p.numel() for p in net.parameters()), activations
